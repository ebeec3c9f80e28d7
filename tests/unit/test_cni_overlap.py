"""The pod subnet against the node's addresses and routes (`clew.cni.overlap.conflicts`), without root.

Inputs are shaped as ``ip -4 -j addr show`` and ``ip -4 -j route show`` print them.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from clew.cni.overlap import SubnetConflict, conflicts, parse_addresses_and_routes, refuse_conflicts

SUBNET = IPv4Network("10.244.1.0/24")


def link(name: str, *cidrs: str) -> dict[str, object]:
    addrs = [{"family": "inet", "local": c.split("/")[0], "prefixlen": int(c.split("/")[1])} for c in cidrs]
    return {"ifname": name, "addr_info": addrs}


def route(dst: str, dev: str | None = None, gateway: str | None = None, **extra: str) -> dict[str, object]:
    out: dict[str, object] = {"dst": dst, **extra}
    if dev:
        out["dev"] = dev
    if gateway:
        out["gateway"] = gateway
    return out


def test_an_ordinary_node_has_no_conflict() -> None:
    links = [
        link("lo", "127.0.0.1/8"),
        link("eth0", "192.168.0.2/24"),
        link("cni0", "10.244.1.1/24"),
        link("flannel.1", "10.244.1.0/32"),  # flannel's vxlan device: the subnet's network address
    ]
    routes = [
        route("default", "eth0", "192.168.0.1"),
        route("192.168.0.0/24", "eth0"),
        route("10.244.1.0/24", "cni0"),  # the bridge's own subnet route
        route("10.244.2.0/24", "flannel.1", "10.244.2.0"),  # another node's pods
        route("10.244.0.0/16", "flannel.1"),  # a route to the whole cluster network: larger, allowed
    ]
    assert conflicts(SUBNET, "cni0", links, routes) == []


@pytest.mark.parametrize(
    ("links", "want"),
    [
        # the node's own LAN is the pod subnet: the bridge would take the LAN gateway's address
        ([link("eth0", "10.244.1.50/24")], "address 10.244.1.50/24 on eth0"),
        ([link("eth0", "10.0.0.5/8")], "address 10.0.0.5/8 on eth0"),  # a LAN around the pod subnet
        ([link("lo", "10.244.1.200/32")], "address 10.244.1.200/32 on lo"),  # a VIP inside it
        ([link("eth1", "10.244.1.1/32")], "address 10.244.1.1/32 on eth1"),  # the gateway's own address
        ([link("eth1", "10.244.1.0/31")], "address 10.244.1.0/31 on eth1"),  # a network, not flannel's /32
    ],
)
def test_an_address_overlapping_the_subnet(links: list[dict[str, object]], want: str) -> None:
    assert conflicts(SUBNET, "cni0", links, []) == [want]


@pytest.mark.parametrize(
    ("r", "want"),
    [
        (route("10.244.1.0/24", "eth1"), "route 10.244.1.0/24 dev eth1"),  # the subnet on another link
        (route("10.244.1.128/25", gateway="192.168.0.9", dev="eth0"), "route 10.244.1.128/25 via 192.168.0.9 dev eth0"),
        (route("10.244.1.7", "tun0"), "route 10.244.1.7/32 dev tun0"),
        (route("10.244.1.0/24", type="blackhole"), "route blackhole 10.244.1.0/24"),
        (route("10.244.1.0/25", "cni0"), "route 10.244.1.0/25 dev cni0"),  # via the bridge, but not its route
    ],
)
def test_a_route_into_the_subnet(r: dict[str, object], want: str) -> None:
    assert conflicts(SUBNET, "cni0", [], [r]) == [want]


def test_the_bridges_own_address_is_not_a_conflict() -> None:
    """ensure_bridge judges the bridge's addresses itself (another address there is its error)."""
    assert conflicts(SUBNET, "cni0", [link("cni0", "10.244.1.1/24")], []) == []


def test_the_batch_output_is_two_json_arrays() -> None:
    out = (
        '[{"ifname":"eth0","addr_info":[{"family":"inet","local":"10.244.1.9","prefixlen":24}]}]\n[{"dst":"default"}]\n'
    )
    assert parse_addresses_and_routes(out) == (
        [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.244.1.9", "prefixlen": 24}]}],
        [{"dst": "default"}],
    )
    assert parse_addresses_and_routes("") == ([], [])
    with pytest.raises(
        SubnetConflict, match=r"pod subnet 10.244.1.0/24 overlaps the node's address 10.244.1.9/24 on eth0"
    ):
        refuse_conflicts(SUBNET, "cni0", "the node", out)
