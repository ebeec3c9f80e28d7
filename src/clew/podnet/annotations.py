"""flannel's Node annotations: how every node publishes its lease to the others.

A contract with flannel: a flannel node and a clew node read each other's leases, and tools
(``kubectl describe node``) show them, so the keys and the JSON shape must not change
(flannel ``pkg/subnet/kube/annotations.go``, prefix ``--kube-annotation-prefix``)::

    flannel.alpha.coreos.com/kube-subnet-manager: "true"     nodes without it are ignored
    flannel.alpha.coreos.com/backend-type:        "vxlan"
    flannel.alpha.coreos.com/backend-data:        '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}'
    flannel.alpha.coreos.com/public-ip:           "192.168.1.11"

host-gw publishes ``backend-data: "null"``. A node's subnet is not an annotation: it is
``Node.spec.podCIDR``. :func:`leases` turns a node list into the lease set the backends
program; a node with bad annotations is skipped and reported, never fatal for the others.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clew.model.objects import Node
from clew.podnet.errors import LeaseError, PodnetError
from clew.podnet.subnets import node_subnet

PREFIX = "flannel.alpha.coreos.com"
KUBE_SUBNET_MANAGER = f"{PREFIX}/kube-subnet-manager"
BACKEND_TYPE = f"{PREFIX}/backend-type"
BACKEND_DATA = f"{PREFIX}/backend-data"
PUBLIC_IP = f"{PREFIX}/public-ip"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class Lease:
    """One node's share of the pod network: its subnet, tunnel endpoint and VTEP.

    ``vtep_mac`` and ``vni`` are set for vxlan leases only.
    """

    node: str
    subnet: ipaddress.IPv4Network
    public_ip: ipaddress.IPv4Address
    backend_type: str
    vtep_mac: str | None = None
    vni: int | None = None


@dataclass(frozen=True, slots=True)
class LeaseSet:
    """The leases read from a node list, and one line per node that was skipped, with why."""

    leases: tuple[Lease, ...]
    problems: tuple[str, ...] = ()


def normalise_mac(mac: str) -> str:
    """``12:C6:65:89:B4:E3`` → ``12:c6:65:89:b4:e3``; ValueError if it is not a MAC."""
    low = mac.strip().lower().replace("-", ":")
    if not _MAC.match(low):
        raise ValueError(f"{mac!r} is not a MAC address")
    return low


def lease_annotations(lease: Lease) -> dict[str, str]:
    """The annotations that publish ``lease`` (flannel's exact JSON, no spaces)."""
    data: Any = None
    if lease.backend_type == "vxlan":
        data = {"VNI": lease.vni or 1, "VtepMAC": lease.vtep_mac}
    return {
        KUBE_SUBNET_MANAGER: "true",
        BACKEND_TYPE: lease.backend_type,
        BACKEND_DATA: json.dumps(data, separators=(",", ":")),
        PUBLIC_IP: str(lease.public_ip),
    }


def lease_from_node(node: Node, network: ipaddress.IPv4Network) -> Lease | None:
    """The node's lease; None if flannel's kube subnet manager does not manage it.

    Raises :class:`LeaseError` (or :class:`~clew.podnet.errors.SubnetError`) naming the node.
    """
    ann = node.annotations
    if ann.get(KUBE_SUBNET_MANAGER) != "true":
        return None
    backend_type = ann.get(BACKEND_TYPE)
    if not backend_type:
        raise LeaseError(node.name, BACKEND_TYPE, "missing")
    public_ip = _public_ip(node.name, ann.get(PUBLIC_IP))
    subnet = node_subnet(node, network)
    vtep_mac, vni = None, None
    if backend_type == "vxlan":
        vtep_mac, vni = _vxlan_data(node.name, ann.get(BACKEND_DATA))
    return Lease(node.name, subnet, public_ip, backend_type, vtep_mac, vni)


def leases(nodes: Iterable[Node], network: ipaddress.IPv4Network) -> LeaseSet:
    """Every managed node's lease, sorted by node name; broken nodes go to ``problems``."""
    found: list[Lease] = []
    problems: list[str] = []
    for node in sorted(nodes, key=lambda n: n.name):
        try:
            lease = lease_from_node(node, network)
        except PodnetError as exc:
            problems.append(str(exc))
            continue
        if lease is not None:
            found.append(lease)
    return LeaseSet(tuple(found), tuple(problems))


def _public_ip(node: str, value: str | None) -> ipaddress.IPv4Address:
    if not value:
        raise LeaseError(node, PUBLIC_IP, "missing")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise LeaseError(node, PUBLIC_IP, f"{value!r} is not an IPv4 address") from None


def _vxlan_data(node: str, value: str | None) -> tuple[str, int]:
    try:
        data = json.loads(value or "")
    except ValueError:
        raise LeaseError(node, BACKEND_DATA, f"not JSON: {value!r}") from None
    if not isinstance(data, dict):
        raise LeaseError(node, BACKEND_DATA, f'must be {{"VNI":…,"VtepMAC":…}}, got {value!r}')
    vni = data.get("VNI", 1)
    if isinstance(vni, bool) or not isinstance(vni, int) or not 0 < vni < 1 << 24:
        raise LeaseError(node, BACKEND_DATA, f"bad VNI {vni!r}")
    try:
        mac = normalise_mac(str(data.get("VtepMAC", "")))
    except ValueError as exc:
        raise LeaseError(node, BACKEND_DATA, f"VtepMAC: {exc}") from None
    return mac, vni
