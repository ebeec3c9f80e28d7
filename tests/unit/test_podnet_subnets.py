"""Pod MTU per backend, a node's own subnet, and the lab's pod CIDR allocator."""

from __future__ import annotations

import ipaddress
import re

import pytest

from clew.model.objects import Node
from clew.podnet.errors import PodnetError, SubnetError
from clew.podnet.mtu import pod_mtu
from clew.podnet.subnets import allocate_pod_cidrs, node_subnet

NET = ipaddress.IPv4Network("10.244.0.0/16")


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


@pytest.mark.parametrize(
    ("underlay", "backend", "want"),
    [
        (1500, "vxlan", 1450),
        (9000, "vxlan", 8950),
        (1460, "vxlan", 1410),
        (1500, "host-gw", 1500),
        (9000, "host-gw", 9000),
    ],
    ids=lambda v: str(v),
)
def test_pod_mtu_table(underlay: int, backend: str, want: int) -> None:
    assert pod_mtu(underlay, backend) == want


def test_pod_mtu_errors() -> None:
    with pytest.raises(PodnetError, match=re.escape("unknown backend 'udp'; choose one of: vxlan, host-gw")):
        pod_mtu(1500, "udp")
    with pytest.raises(PodnetError, match=re.escape("leaves 550 for pods")):
        pod_mtu(600, "vxlan")


def test_node_subnet() -> None:
    assert node_subnet(Node("n1", pod_cidrs=("fd00::/64", "10.244.3.0/24")), NET) == net("10.244.3.0/24")
    with pytest.raises(SubnetError, match=re.escape('node "n1" pod cidr not assigned')):
        node_subnet(Node("n1"), NET)
    with pytest.raises(
        SubnetError, match=re.escape('node "n1" pod cidr 10.9.0.0/24 is not inside the cluster network 10.244.0.0/16')
    ):
        node_subnet(Node("n1", pod_cidrs=("10.9.0.0/24",)), NET)


def test_allocator_keeps_existing_and_fills_lowest_free() -> None:
    got = allocate_pod_cidrs(NET, 24, ["a", "b", "c", "d"], {"b": net("10.244.0.0/24"), "gone": net("10.244.1.0/24")})
    assert got == {
        "a": net("10.244.1.0/24"),  # "gone" released its /24
        "b": net("10.244.0.0/24"),
        "c": net("10.244.2.0/24"),
        "d": net("10.244.3.0/24"),
    }
    assert allocate_pod_cidrs(NET, 24, ["a", "b", "c", "d"], got) == got  # stable


def test_allocator_runs_out_and_rejects_bad_existing() -> None:
    small = net("10.8.0.0/28")
    assert list(allocate_pod_cidrs(small, 30, "abcd", {}).values())[-1] == net("10.8.0.12/30")
    with pytest.raises(
        SubnetError, match=re.escape('no free /30 left in 10.8.0.0/28 for node "e" (all 4 are assigned)')
    ):
        allocate_pod_cidrs(small, 30, "abcde", {})
    with pytest.raises(SubnetError, match=re.escape("is not a /24 inside")):
        allocate_pod_cidrs(NET, 24, ["a"], {"a": net("10.244.0.0/25")})
    with pytest.raises(SubnetError, match=re.escape('nodes "a" and "b" share pod cidr 10.244.0.0/24')):
        allocate_pod_cidrs(NET, 24, ["a", "b"], {"a": net("10.244.0.0/24"), "b": net("10.244.0.0/24")})
