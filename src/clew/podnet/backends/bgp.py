"""The bgp backend: native routes to every other node's subnet, announced and learned by BIRD.

No device and no encapsulation (pods keep the underlay's MTU). Unlike host-gw, a next hop need
not be on-link: the routes come from BGP, across routers (Calico's way, ``shared/reference/
bgp.md``). clew computes BIRD's configuration (:mod:`clew.podnet.bird`) from the leases — each
node's subnet and address as its Node object says — and :mod:`clew.podnet.bgp_apply` runs BIRD
with it; BIRD writes the routes (``proto bird``). The reconcile's part is only to clear what is
not BIRD's: a route inside the cluster network through the underlay device that another
backend left (host-gw's), so BIRD's route is the one the kernel uses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from clew.podnet.annotations import Lease
from clew.podnet.backends.common import remote_leases
from clew.podnet.backends.vxlan import VxlanDeviceSpec
from clew.podnet.bgpconf import BgpConf
from clew.podnet.bird import BgpNode, BirdInput
from clew.podnet.desired import Desired, Scope, Underlay
from clew.podnet.mtu import pod_mtu
from clew.podnet.netconf import NetConf

TYPE = "bgp"
ROUTE_PROTOCOL = "bird"  # what BIRD's kernel protocol writes (RTPROT_BIRD)


class BgpBackend:
    type = TYPE

    def __init__(self, conf: NetConf) -> None:
        self.conf = conf
        self.bgp = conf.bgp or BgpConf()

    def pod_mtu(self, underlay: Underlay) -> int:
        return pod_mtu(underlay.mtu, TYPE)

    def device(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, mac: str | None = None
    ) -> VxlanDeviceSpec | None:
        """bgp needs no device."""
        return None

    def own_lease(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, vtep_mac: str | None = None
    ) -> Lease:
        return Lease(node, subnet, underlay.ip, TYPE)

    def desired(self, self_lease: Lease, leases: Sequence[Lease], underlay: Underlay) -> Desired:
        """No route of clew's own: every route to another node is BIRD's (never touched); any
        other route inside the cluster network through the underlay is stale and goes."""
        _, notes = remote_leases(self_lease, leases, self.conf.network, TYPE)
        scope = Scope(route_dev=underlay.dev, route_within=self.conf.network, foreign_protocols=(ROUTE_PROTOCOL,))
        return Desired(scope, frozenset(), notes=tuple(notes))

    def bird_input(
        self, self_lease: Lease, leases: Sequence[Lease], underlay: Underlay, log_file: str | None = None
    ) -> BirdInput:
        """What BIRD's configuration is rendered from: this node and the other bgp nodes."""
        remotes, _ = remote_leases(self_lease, leases, self.conf.network, TYPE)
        me = BgpNode(self_lease.node, self_lease.public_ip, self_lease.subnet)
        others = tuple(BgpNode(lease.node, lease.public_ip, lease.subnet) for lease in remotes)
        return BirdInput(me, others, self.conf.network, self.bgp, underlay.networks, log_file)
