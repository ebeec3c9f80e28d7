"""The trace's way out of a BGP-learned route (``proto bird``): the node that announced the pod
subnet, from BIRD's ``show route all`` in the dump (tests/unit/doctor_bgp_node: node-1 of a
4-node routed bgp lab behind a route reflector), named when the node's name is known."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from clew.trace.node_view import Route, bgp_origins_from_text, from_dump
from clew.trace.routes import classify, lookup

NODE = Path(__file__).parent / "doctor_bgp_node"


def test_bgp_origins_are_the_announcing_nodes() -> None:
    origins = bgp_origins_from_text((NODE / "bird.txt").read_text())
    assert origins == {"10.244.2.0/24": "192.168.51.3", "10.244.3.0/24": "192.168.52.2",
                       "10.244.4.0/24": "192.168.52.3"}  # fmt: skip
    ebgp = (
        "10.244.3.0/24        unicast [peer 1] * (100) [AS64512i]\n"
        "\tvia 192.168.51.1 on eth0\n\tBGP.next_hop: 192.168.51.1\n"
    )
    assert bgp_origins_from_text(ebgp) == {"10.244.3.0/24": "192.168.51.1"}  # eBGP: the peer itself


def test_a_bgp_route_leaves_towards_the_node_that_announced_it() -> None:
    view = from_dump(NODE)
    across = classify(view, "10.244.3.2", lookup(view, "10.244.3.2"))
    assert across.kind == "route" and across.via == "192.168.51.1" and across.node is None
    assert across.detail == (
        "by BGP (proto bird) to 192.168.52.2, which announced 10.244.3.0/24 through 192.168.51.1 on eth0"
    )
    view.node_names = {"192.168.52.2": "node-3", "192.168.51.3": "node-2"}
    across = classify(view, "10.244.3.2", lookup(view, "10.244.3.2"))
    assert across.node == "node-3" and across.to_json()["node"] == "node-3"
    assert "to node node-3 (192.168.52.2), which announced 10.244.3.0/24 through 192.168.51.1" in across.detail
    same = classify(view, "10.244.2.9", lookup(view, "10.244.2.9"))  # on node-1's own segment: straight to it
    assert same.detail == "by BGP (proto bird) to node node-2 (192.168.51.3), which announced 10.244.2.0/24 on eth0"


def test_without_birds_view_the_gateway_is_named() -> None:
    view = from_dump(NODE)
    view.bgp_origins = {}
    route = Route(dst=ipaddress.IPv4Network("10.244.3.0/24"), dev="eth0", gateway="192.168.51.3", protocol="bird")
    assert (
        classify(view, "10.244.3.2", route).detail
        == "by BGP (proto bird) via 192.168.51.3 on eth0, route 10.244.3.0/24"
    )
    view.node_names = {"192.168.51.3": "node-2"}
    egress = classify(view, "10.244.3.2", route)
    assert egress.node == "node-2" and "via 192.168.51.3 (node node-2) on eth0" in egress.detail
