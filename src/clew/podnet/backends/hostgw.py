"""The host-gw backend: plain routes to every other node's subnet via that node's public IP.

``ip route replace 10.244.2.0/24 via 192.168.1.12 dev eth0`` per remote node, no device, no
encapsulation, no MTU cost (flannel ``pkg/backend/hostgw``). It needs every node on one L2
segment: a next hop that is not on a directly connected network of the underlay device cannot
be routed to, so the backend refuses such a lease set with an error that names the node and
points at vxlan, instead of leaving the kernel to reject the route ("Nexthop has invalid
gateway"). It owns every route inside the cluster network through the underlay device, so a
departed node's route is deleted (flannel's 10-second routeCheck only re-adds).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from clew.podnet.annotations import Lease
from clew.podnet.backends.common import remote_leases
from clew.podnet.backends.vxlan import VxlanDeviceSpec
from clew.podnet.desired import Desired, Route, Scope, Underlay
from clew.podnet.errors import BackendError
from clew.podnet.mtu import pod_mtu
from clew.podnet.netconf import NetConf

TYPE = "host-gw"


class HostGwBackend:
    type = TYPE

    def __init__(self, conf: NetConf) -> None:
        self.conf = conf

    def pod_mtu(self, underlay: Underlay) -> int:
        return pod_mtu(underlay.mtu, TYPE)

    def device(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, mac: str | None = None
    ) -> VxlanDeviceSpec | None:
        """host-gw needs no device."""
        return None

    def own_lease(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, vtep_mac: str | None = None
    ) -> Lease:
        return Lease(node, subnet, underlay.ip, TYPE)

    def desired(self, self_lease: Lease, leases: Sequence[Lease], underlay: Underlay) -> Desired:
        """One route per other host-gw node; :class:`BackendError` if any next hop is off-link
        or this node's public IP is not the underlay's address (flannel: "on a NAT")."""
        if self_lease.public_ip != underlay.ip:
            raise BackendError(
                f'host-gw: node "{self_lease.node}" publishes {self_lease.public_ip} but {underlay.dev} has '
                f"{underlay.ip} (behind NAT?); host-gw needs the real address, use the vxlan backend"
            )
        remotes, notes = remote_leases(self_lease, leases, self.conf.network, TYPE)
        unreachable = [lease for lease in remotes if not underlay.on_link(lease.public_ip)]
        if unreachable:
            reasons = "; ".join(
                f'host-gw cannot reach node "{lease.node}" at {lease.public_ip}: '
                f"not on a directly connected network of {underlay.dev}"
                for lease in unreachable
            )
            raise BackendError(f"{reasons}; use the vxlan backend")
        routes = frozenset(Route(lease.subnet, underlay.dev, lease.public_ip) for lease in remotes)
        scope = Scope(route_dev=underlay.dev, route_within=self.conf.network)
        return Desired(scope, routes, notes=tuple(notes))
