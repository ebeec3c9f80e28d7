"""Admission of a ``clew lab apply``: check every object and allocate Services' cluster IPs and
NodePorts, all before the lab changes anything.

`admit` returns what the lab will hold afterwards (Deployments and allocated Services) or raises
`ApplyError` with one line per refused object. Allocation is what the API server's allocators
do: a free address of the service range (from .10, as the lab always did) and a free port of
30000–32767; values given in a manifest are kept if they are in range and not taken, as the API
server does ("provided IP is already allocated"). A Service's cluster IP is immutable. The used
sets are built once per apply, so 5,000 Services are admitted in linear time.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from clew.lab import inputs
from clew.lab.inputs import ApplyError, Bad
from clew.lab.state import LabState
from clew.model import fields as model_fields
from clew.model.from_kube import Skip, service_from_kube

NODE_PORTS = range(30000, 32768)
FIRST_CLUSTER_IP = 10  # offset in the service range of the first address the lab hands out


@dataclass
class Admitted:
    """The lab's Deployments and Services once the apply is done (new dicts; the state is untouched)."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, tuple[int, dict[str, str], dict[str, int]]] = field(default_factory=dict)  # replicas, labels, ports
    changed: list[str] = field(default_factory=list)  # ns/name of the objects in this apply, in order


class _Allocator:
    """Free cluster IPs and NodePorts, given what the lab's Services hold."""

    def __init__(self, service_cidr: str, services: dict[str, dict[str, Any]]) -> None:
        self.net = ipaddress.IPv4Network(service_cidr)
        self.ips: dict[str, str] = {}  # cluster IP → ns/name
        self.ports: dict[int, str] = {}  # node port → ns/name
        self.held: dict[str, tuple[list[str], list[int]]] = {}  # ns/name → its IPs and ports
        for key, svc in services.items():
            self.hold(key, svc)
        self._next_ip = FIRST_CLUSTER_IP
        self._next_port = NODE_PORTS.start

    def hold(self, key: str, svc: dict[str, Any]) -> None:
        spec = svc.get("spec") or {}
        ips, ports = self.held.setdefault(key, ([], []))
        if spec.get("clusterIP") not in (None, "", "None"):
            self.ips[spec["clusterIP"]] = key
            ips.append(spec["clusterIP"])
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                self.ports[p["nodePort"]] = key
                ports.append(p["nodePort"])

    def release(self, key: str) -> None:
        ips, ports = self.held.pop(key, ([], []))
        for ip in ips:
            if self.ips.get(ip) == key:
                del self.ips[ip]
        for port in ports:
            if self.ports.get(port) == key:
                del self.ports[port]

    def cluster_ip(self) -> str:
        while self._next_ip < self.net.num_addresses - 1:
            ip = str(self.net[self._next_ip])
            self._next_ip += 1
            if ip not in self.ips:
                return ip
        raise Bad("spec.clusterIP", f"the service range {self.net} is full")

    def node_port(self) -> int:
        while self._next_port < NODE_PORTS.stop:
            port = self._next_port
            self._next_port += 1
            if port not in self.ports:
                return port
        raise Bad("spec.ports.nodePort", "every NodePort of 30000-32767 is allocated")


def admit(state: LabState, objects: Iterable[Any]) -> Admitted:
    """Check and allocate every object; :class:`ApplyError` lists every refused one."""
    out = Admitted(dict(state.deployments), dict(state.services))  # entries are replaced, never changed
    alloc = _Allocator(state.config.service_cidr, out.services)
    problems: list[str] = []
    for index, obj in enumerate(objects):
        label = inputs.object_label(obj, index)
        try:
            if not isinstance(obj, dict):
                raise Bad("", f"must be an object, not {type(obj).__name__}")
            kind = inputs.kind_and_version(obj)
            if kind == "Deployment":
                ns, name, replicas, pod_labels, ports = inputs.deployment(obj)
                key = f"{ns}/{name}"
                out.deployments[key] = copy.deepcopy(obj)
                out.pods[key] = (replicas, pod_labels, ports)
            else:
                ns, name = inputs.service_shape(obj)
                key = f"{ns}/{name}"
                out.services[key] = _allocate(alloc, key, obj, out.services.get(key), state.config.service_cidr)
            out.changed.append(key)
        except Bad as bad:
            problems.append(f"{label}: {str(bad).lstrip(': ')}")
    if not problems:
        problems = _check_pods(state, out)
    if problems:
        raise ApplyError(problems)
    return out


def _check_pods(state: LabState, out: Admitted) -> list[str]:
    """Pod names are unique across namespaces, and the lab runs at most so many pods."""
    problems = []
    owner: dict[str, str] = {}
    total = 0
    for key, dep in sorted(out.deployments.items()):
        replicas = out.pods[key][0] if key in out.pods else (dep.get("spec") or {}).get("replicas", 1)
        total += replicas
        name = key.split("/", 1)[1]
        if name in owner:
            problems.append(f"Deployment {key}: metadata.name: the lab names pods {name}-<i> in every namespace, "
                            f"and Deployment {owner[name]} has that name")  # fmt: skip
        owner[name] = key
    cap = inputs.MAX_PODS_PER_NODE * state.config.nodes
    if total > cap and not problems:
        limit = f"it runs at most {cap} ({inputs.MAX_PODS_PER_NODE} a node, {state.config.nodes} nodes)"
        for key in [k for k in out.changed if k in out.pods]:
            replicas = out.pods[key][0]
            problems.append(f"Deployment {key}: spec.replicas: {replicas} would make {total} pods in the lab; {limit}")
    return problems


def _allocate(
    alloc: _Allocator, key: str, obj: dict[str, Any], old: dict[str, Any] | None, service_cidr: str
) -> dict[str, Any]:
    """A copy of Service ``obj`` with its cluster IP and NodePorts, checked by the agents' model."""
    svc = copy.deepcopy(obj)
    spec = svc.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    if old is not None:
        alloc.release(key)
    given = spec.get("clusterIP") or None
    if old_spec.get("clusterIP") and given and given != old_spec["clusterIP"]:
        raise Bad("spec.clusterIP", f"field is immutable (it is {old_spec['clusterIP']})")
    if given is None:
        spec["clusterIP"] = old_spec.get("clusterIP") or alloc.cluster_ip()
    elif given != "None":
        _check_cluster_ip(alloc, given, service_cidr)
    if spec["clusterIP"] != "None":
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        old_ports = {(p.get("name"), p.get("port")): p.get("nodePort") for p in old_spec.get("ports") or []}
        own: set[tuple[int, str]] = set()  # (nodePort, protocol) of this Service's earlier ports
        for i, p in enumerate(spec.get("ports") or []):
            wanted = p.get("nodePort")
            protocol = p.get("protocol", "TCP")
            # the API server lets one Service use a NodePort for TCP and UDP alike (port 53 style)
            shared = alloc.ports.get(wanted) == key and any(n == wanted for n, _ in own)
            if wanted and shared:
                if (wanted, protocol) in own:
                    raise Bad(f"spec.ports[{i}].nodePort", f"{wanted}/{protocol}: Duplicate value")
            elif wanted:
                if wanted in alloc.ports:
                    raise Bad(f"spec.ports[{i}].nodePort", f"{wanted}: provided port is already allocated "
                                                           f"(to Service {alloc.ports[wanted]})")  # fmt: skip
            else:
                reuse = old_ports.get((p.get("name"), p.get("port")))
                p["nodePort"] = reuse if reuse and reuse not in alloc.ports else alloc.node_port()
            alloc.ports[p["nodePort"]] = key
            own.add((p["nodePort"], protocol))
    _model_check(svc)
    alloc.hold(key, svc)
    return svc


def _check_cluster_ip(alloc: _Allocator, given: str, service_cidr: str) -> None:
    try:
        ip = ipaddress.IPv4Address(given)
    except ValueError:
        raise Bad("spec.clusterIP", f"{inputs.short(given)} is not an IPv4 address") from None
    net = alloc.net
    if ip not in net or ip in (net.network_address, net.broadcast_address):
        raise Bad("spec.clusterIP", f"{given}: provided IP is not in the valid range {service_cidr}")
    if given in alloc.ips:
        raise Bad("spec.clusterIP", f"{given}: provided IP is already allocated (to Service {alloc.ips[given]})")


def _model_check(svc: dict[str, Any]) -> None:
    """What every node agent will make of the Service (`clew.model.from_kube`)."""
    try:
        service_from_kube(svc)
    except model_fields.Invalid as bad:
        raise Bad(bad.field, bad.reason) from None
    except Skip:
        pass  # valid, and no rules for it (headless, ExternalName): the agents note it too
