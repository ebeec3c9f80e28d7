"""The lab's control plane: what kube-controller-manager, the scheduler and the kubelet would do.

* Deployments become pods ``<name>-<i>``, placed round-robin over the nodes, each created by
  calling ``clew-cni`` as a runtime does and running the echo server on the container ports.
* Services get a cluster IP from the service range and NodePorts from 30000–32767 when they
  need them (values set in the manifest are kept).
* EndpointSlices list the pods each Service selects, ready while their echo server runs.

All of it is written as API objects into the folder the node agents watch. Each agent writes
its flannel lease to its own state dir (``node-lease.json``; agents never write the folder):
`publish_leases` merges them into the Node objects, as the API server would store their PATCHes.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clew.agent.podnet import LEASE_FILE
from clew.lab import pods as lab_pods
from clew.lab.build import alive
from clew.lab.state import LabState, Pod, save
from clew.sources.files import patch_node_annotations, write_atomic

NODE_PORTS = range(30000, 32768)


class ApplyError(Exception):
    """A manifest the lab cannot apply; names the object and field."""


def _name(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    name, ns = meta.get("name"), meta.get("namespace") or "default"
    if not isinstance(name, str) or not name:
        raise ApplyError(f"{obj.get('kind', 'object')} without metadata.name")
    return ns, name


def _container_ports(dep: dict[str, Any], key: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    for c in containers:
        for p in c.get("ports") or []:
            number = p.get("containerPort")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                raise ApplyError(f"Deployment {key}: containerPort {number!r} is not a port")
            ports[p.get("name") or str(number)] = number
    return ports or {"8080": 8080}


def _labels(dep: dict[str, Any], key: str) -> dict[str, str]:
    template = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    labels = template.get("labels") or {}
    if not isinstance(labels, dict) or not labels:
        raise ApplyError(f"Deployment {key}: spec.template.metadata.labels is required")
    return {str(k): str(v) for k, v in labels.items()}


def apply(state: LabState, root: Path, objects: Iterable[dict[str, Any]]) -> list[str]:
    """Apply Deployments and Services; returns what changed, in words."""
    said: list[str] = []
    for obj in objects:
        kind = obj.get("kind")
        ns, name = _name(obj)
        key = f"{ns}/{name}"
        if kind == "Deployment":
            state.deployments[key] = obj
        elif kind == "Service":
            state.services[key] = _allocate(state, key, obj)
        else:
            raise ApplyError(f"{kind} {key}: the lab applies Deployments and Services")
    said += _reconcile_pods(state, root)
    _write_objects(state, root)
    save(state)
    return said


def _reconcile_pods(state: LabState, root: Path) -> list[str]:
    said = []
    plan = state.plan
    for key, dep in sorted(state.deployments.items()):
        ns, name = key.split("/", 1)
        replicas = (dep.get("spec") or {}).get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise ApplyError(f"Deployment {key}: spec.replicas {replicas!r} is not a count")
        wanted = {f"{name}-{i}" for i in range(replicas)}
        have = {p.name for p in state.pods.values() if p.deployment == key}
        for pod_name in sorted(have - wanted, key=lambda n: int(n.rsplit("-", 1)[1]), reverse=True):
            pod = state.pods.pop(pod_name)
            node = plan.node(pod.node)
            lab_pods.delete(pod, node.netns, root / "nodes" / node.name)
            said.append(f"deleted pod {pod_name}")
        ports, labels = _container_ports(dep, key), _labels(dep, key)
        for pod_name in sorted(wanted - have, key=lambda n: int(n.rsplit("-", 1)[1])):
            node = plan.nodes[state.placed % len(plan.nodes)]
            state.placed += 1
            pod = Pod(pod_name, ns, key, labels, node.name, plan.pod_netns(pod_name), "", ports,
                      container_id=f"{pod_name}-{uuid.uuid4().hex[:12]}")  # fmt: skip
            state.pods[pod_name] = lab_pods.create(pod, node.netns, root / "nodes" / node.name, root / "pods")
            save(state)
            said.append(f"pod {pod_name} on {node.name} at {pod.ip}")
    return said


def publish_leases(root: Path, nodes: Iterable[str]) -> bool:
    """Merge each node agent's ``<root>/nodes/<name>/node-lease.json`` into its Node object in
    the objects folder; True if any Node changed. A missing or unreadable lease file is skipped
    (that agent has not published yet)."""
    changed = False
    for name in nodes:
        try:
            doc = json.loads((root / "nodes" / name / LEASE_FILE).read_text())
        except (OSError, ValueError):
            continue
        annotations = doc.get("annotations") if isinstance(doc, dict) and doc.get("node") == name else None
        if isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values()):
            changed |= patch_node_annotations(root / "objects", name, annotations)
    return changed


def _allocate(state: LabState, key: str, svc: dict[str, Any]) -> dict[str, Any]:
    svc = json.loads(json.dumps(svc))  # a copy we may fill in
    spec = svc.setdefault("spec", {})
    old = state.services.get(key, {}).get("spec", {})
    if not spec.get("clusterIP"):
        spec["clusterIP"] = old.get("clusterIP") or _free_cluster_ip(state)
    spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        used = {p.get("nodePort") for s in state.services.values() if s is not svc for p in s["spec"].get("ports", [])}
        old_ports = {(p.get("name"), p.get("port")): p.get("nodePort") for p in old.get("ports", [])}
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                p["nodePort"] = old_ports.get((p.get("name"), p.get("port"))) or next(
                    n for n in NODE_PORTS if n not in used
                )
                used.add(p["nodePort"])
    return svc


def _free_cluster_ip(state: LabState) -> str:
    net = ipaddress.IPv4Network(state.config.service_cidr)
    used = {s["spec"].get("clusterIP") for s in state.services.values()}
    for i in range(10, net.num_addresses - 1):
        ip = str(net[i])
        if ip not in used:
            return ip
    raise ApplyError(f"service range {net} is full")


def endpoint_slice(state: LabState, key: str, svc: dict[str, Any]) -> dict[str, Any] | None:
    ns, name = key.split("/", 1)
    selector = (svc.get("spec") or {}).get("selector")
    if not selector:
        return None
    members = [p for p in sorted(state.pods.values(), key=lambda p: p.name)
               if p.namespace == ns and all(p.labels.get(k) == v for k, v in selector.items())]  # fmt: skip
    ports = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        target = sp.get("targetPort", sp.get("port"))
        number = target if isinstance(target, int) else None
        if number is None and members:
            number = members[0].ports.get(str(target))
        if number is not None:
            ports.append({"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol", "TCP")})
    endpoints = []
    for p in members:
        ready = alive(p.pid)
        endpoints.append({
            "addresses": [p.ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": p.node,
            "targetRef": {"kind": "Pod", "namespace": ns, "name": p.name},
        })  # fmt: skip
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-lab", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def _write_objects(state: LabState, root: Path) -> None:
    objects = root / "objects"
    keep: set[Path] = set()
    for key, svc in sorted(state.services.items()):
        base = key.replace("/", "-")
        path = objects / "services" / f"{base}.json"
        _write_if_changed(path, svc)
        keep.add(path)
        sl = endpoint_slice(state, key, svc)
        if sl is not None:
            path = objects / "slices" / f"{base}.json"
            _write_if_changed(path, sl)
            keep.add(path)
    for folder in ("services", "slices"):
        for path in (objects / folder).glob("*.json") if (objects / folder).exists() else []:
            if path not in keep:
                path.unlink()


def _write_if_changed(path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)
