"""The bgp backend is pure: no route of its own, BIRD's routes out of its scope, BIRD's input
from the leases (other bgp nodes only, off-link peers allowed: no host-gw error)."""

from __future__ import annotations

import ipaddress

from clew.podnet import netconf
from clew.podnet.annotations import Lease
from clew.podnet.backends import backend_for
from clew.podnet.backends.bgp import BgpBackend
from clew.podnet.bird import BgpNode, bgp_sessions
from clew.podnet.desired import Underlay

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
CONF = netconf.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "bgp"}})
UNDERLAY = Underlay("eth0", IP("192.168.51.2"), 1500, (NET("192.168.51.0/24"),))


def lease(n: int, backend: str = "bgp") -> Lease:
    return Lease(f"node-{n}", NET(f"10.244.{n}.0/24"), IP(f"192.168.{50 + n}.2"), backend)


def test_pods_keep_the_underlay_mtu_and_no_device() -> None:
    backend = backend_for(CONF)
    assert isinstance(backend, BgpBackend)
    assert backend.pod_mtu(UNDERLAY) == 1500
    assert backend.device("node-1", NET("10.244.1.0/24"), UNDERLAY) is None
    assert backend.own_lease("node-1", NET("10.244.1.0/24"), UNDERLAY) == lease(1)


def test_desired_owns_no_route_and_never_birds() -> None:
    leases = [lease(1), lease(2), lease(3)]
    got = BgpBackend(CONF).desired(lease(1), leases, UNDERLAY)  # node-2 and 3 are off-link: fine
    assert got.routes == frozenset()
    assert got.scope.owns_route(NET("10.244.2.0/24"), "eth0", "boot")  # host-gw's leftover: stale
    assert not got.scope.owns_route(NET("10.244.2.0/24"), "eth0", "bird")  # BIRD's: never touched
    assert not got.scope.owns_route(NET("0.0.0.0/0"), "eth0", "boot")  # outside the cluster network


def test_bird_input_has_the_other_bgp_nodes() -> None:
    leases = [lease(1), lease(2), lease(3, "vxlan"), Lease("node-9", NET("10.244.1.0/25"), IP("10.0.0.9"), "bgp")]
    got = BgpBackend(CONF).bird_input(lease(1), leases, UNDERLAY, "/x/bird.log")
    assert got.node == BgpNode("node-1", IP("192.168.51.2"), NET("10.244.1.0/24"))
    assert got.nodes == (BgpNode("node-2", IP("192.168.52.2"), NET("10.244.2.0/24")),)  # vxlan, overlap skipped
    assert got.onlink == (NET("192.168.51.0/24"),) and got.log_file == "/x/bird.log"


def test_bgp_sessions_from_birdc_show_protocols() -> None:
    text = (
        "Name       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     10:10:30.100  \n"
        "own_subnet Static     master4    up     10:10:30.100  \n"
        "n_peer_192_168_51_1 BGP        ---        up     10:10:30.175  Established   \n"
        "n_node_3   BGP        ---        start  10:10:31.000  Active        Socket: Connection refused\n"
    )
    assert bgp_sessions(text) == [
        {"name": "n_peer_192_168_51_1", "state": "up", "since": "10:10:30.175", "info": "Established"},
        {"name": "n_node_3", "state": "start", "since": "10:10:31.000", "info": "Active Socket: Connection refused"},
    ]
