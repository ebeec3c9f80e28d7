"""The vxlan backend: pod traffic to other nodes is encapsulated in UDP by ``flannel.<VNI>``.

How it works (flannel ``pkg/backend/vxlan``), for a remote node with subnet 10.244.2.0/24,
public IP 192.168.1.12 and VTEP MAC M2::

    route  10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink    the remote subnet's first
    neigh  10.244.2.0 lladdr M2 dev flannel.1 permanent         address is its VTEP (no ARP)
    fdb    M2 dev flannel.1 dst 192.168.1.12 self permanent     M2 lives behind that node

The device has learning off and no group/remote, so these three entries are the only way a
frame leaves: nothing is learned, nothing is flooded. The device's MAC is published in the
node's ``backend-data`` annotation; clew derives it from the node name and VNI, so a recreated
device (or a restarted agent) keeps the MAC its peers already have (flannel #1155, #1330).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from clew.podnet.annotations import Lease, normalise_mac
from clew.podnet.backends.common import remote_leases
from clew.podnet.desired import Desired, FdbEntry, Neighbour, Route, Scope, Underlay
from clew.podnet.mtu import pod_mtu
from clew.podnet.netconf import NetConf

TYPE = "vxlan"
DEVICE_PREFIX = "flannel."  # a contract: tools and runbooks look for flannel.<VNI>


def device_name(vni: int) -> str:
    """``flannel.1`` for VNI 1 (must not change: see DESIGN.md "Kernel names")."""
    return f"{DEVICE_PREFIX}{vni}"


def stable_vtep_mac(node: str, vni: int) -> str:
    """A locally administered unicast MAC derived from the node name and VNI (stable across
    restarts and device re-creation, distinct per node)."""
    digest = bytearray(hashlib.sha256(f"clew-vtep/{node}/{vni}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in digest)


@dataclass(frozen=True, slots=True)
class VxlanDeviceSpec:
    """``ip link add NAME address MAC mtu MTU type vxlan id VNI local LOCAL dev LINK dstport PORT
    nolearning`` plus ``ADDRESS`` (the node subnet's network address as a /32), up."""

    name: str
    vni: int
    local: ipaddress.IPv4Address
    link: str
    port: int
    mtu: int
    mac: str
    address: ipaddress.IPv4Interface


class VxlanBackend:
    """Pure: computes the device and the entries; :mod:`clew.podnet.setup` and
    :mod:`clew.podnet.reconcile` put them into the kernel."""

    type = TYPE

    def __init__(self, conf: NetConf) -> None:
        self.conf = conf
        self.dev = device_name(conf.vni)

    def pod_mtu(self, underlay: Underlay) -> int:
        """``Backend.MTU`` (or the underlay's MTU) minus 50."""
        return pod_mtu(self.conf.mtu or underlay.mtu, TYPE)

    def device(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, mac: str | None = None
    ) -> VxlanDeviceSpec:
        """The vxlan device this node needs; ``mac`` (e.g. from the node's own annotation)
        overrides the derived one."""
        return VxlanDeviceSpec(
            name=self.dev,
            vni=self.conf.vni,
            local=underlay.ip,
            link=underlay.dev,
            port=self.conf.port,
            mtu=self.pod_mtu(underlay),
            mac=normalise_mac(mac) if mac else stable_vtep_mac(node, self.conf.vni),
            address=ipaddress.IPv4Interface(f"{subnet.network_address}/32"),
        )

    def own_lease(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, vtep_mac: str | None = None
    ) -> Lease:
        mac = vtep_mac or self.device(node, subnet, underlay).mac
        return Lease(node, subnet, underlay.ip, TYPE, normalise_mac(mac), self.conf.vni)

    def desired(self, self_lease: Lease, leases: Sequence[Lease], underlay: Underlay) -> Desired:
        """Route, neighbour and FDB entry for every other vxlan node (level, not edge)."""
        remotes, notes = remote_leases(self_lease, leases, self.conf.network, TYPE)
        routes: set[Route] = set()
        neighbours: set[Neighbour] = set()
        fdb: set[FdbEntry] = set()
        macs: dict[str, str] = {}
        if self_lease.vtep_mac:
            macs[self_lease.vtep_mac] = self_lease.node
        for lease in remotes:
            if lease.vtep_mac is None or lease.vni not in (None, self.conf.vni):
                why = "no VTEP MAC" if lease.vtep_mac is None else f"VNI {lease.vni}, not {self.conf.vni}"
                notes.append(f'node "{lease.node}" skipped: {why}')
                continue
            if lease.vtep_mac in macs:
                notes.append(
                    f'node "{lease.node}" skipped: VTEP MAC {lease.vtep_mac} is node "{macs[lease.vtep_mac]}"\'s'
                )
                continue
            macs[lease.vtep_mac] = lease.node
            vtep = lease.subnet.network_address
            routes.add(Route(lease.subnet, self.dev, vtep, onlink=True))
            neighbours.add(Neighbour(vtep, lease.vtep_mac, self.dev))
            fdb.add(FdbEntry(lease.vtep_mac, self.dev, lease.public_ip))
        scope = Scope(route_dev=self.dev, neighbour_dev=self.dev, fdb_dev=self.dev)
        return Desired(scope, frozenset(routes), frozenset(neighbours), frozenset(fdb), tuple(notes))
