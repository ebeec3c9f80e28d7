"""The tracer's walk, routing and egress on small hand-made nodes (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from clew.netfilter.iptables_save import parse
from clew.trace.engine import trace
from clew.trace.node_view import Address, FdbEntry, Link, Neighbour, NodeView, Route
from clew.trace.packet import Packet
from clew.trace.story import format_trace

NET = ipaddress.IPv4Network


def node(rules: str) -> NodeView:
    """node-a: eth0 192.168.50.2/24 (default via .1), cni0 10.244.1.1/24, flannel.1 to node-b."""
    return NodeView(
        ruleset=parse(rules),
        addresses=[
            Address("lo", "127.0.0.1", 8),
            Address("eth0", "192.168.50.2", 24),
            Address("cni0", "10.244.1.1", 24),
            Address("flannel.1", "10.244.1.0", 32),
        ],
        routes=[
            Route(NET("127.0.0.0/8"), type="local", dev="lo", table="local"),
            Route(NET("192.168.50.2/32"), type="local", dev="eth0", table="local"),
            Route(NET("10.244.1.1/32"), type="local", dev="cni0", table="local"),
            Route(NET("0.0.0.0/0"), dev="eth0", gateway="192.168.50.1"),
            Route(NET("192.168.50.0/24"), dev="eth0", prefsrc="192.168.50.2"),
            Route(NET("10.244.1.0/24"), dev="cni0", prefsrc="10.244.1.1"),
            Route(NET("10.244.2.0/24"), dev="flannel.1", gateway="10.244.2.0", onlink=True),
        ],
        links={
            "lo": Link("lo", "loopback"),
            "eth0": Link("eth0", "veth"),
            "cni0": Link("cni0", "bridge", mtu=1450),
            "flannel.1": Link("flannel.1", "vxlan", mtu=1450, vxlan_id=1, vxlan_port=8472),
            "veth1234": Link("veth1234", "veth", master="cni0"),
        },
        neighbours=[
            Neighbour("10.244.2.0", "flannel.1", "aa:bb:cc:00:00:02", "PERMANENT"),
            Neighbour("10.244.1.5", "cni0", "aa:bb:cc:00:01:05", "REACHABLE"),
        ],
        fdb=[
            FdbEntry("aa:bb:cc:00:00:02", "flannel.1", "192.168.50.3"),
            FdbEntry("aa:bb:cc:00:01:05", "veth1234", None),
        ],
        node_names={"192.168.50.3": "node-b"},
    )


EMPTY = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def test_pod_to_remote_pod_leaves_by_vxlan_naming_the_node() -> None:
    r = trace(node(EMPTY), Packet("10.244.1.5", "10.244.2.7"))
    (o,) = r.outcomes
    assert r.entry.startswith("arrives from 10.244.1.5 on cni0")
    assert (o.verdict, o.probability, o.masquerade, o.source_seen) == ("ACCEPT", 1.0, False, "10.244.1.5")
    assert o.egress is not None and (o.egress.kind, o.egress.remote, o.egress.node) == (
        "vxlan",
        "192.168.50.3",
        "node-b",
    )
    assert "VXLAN VNI 1" in o.egress.detail and "UDP 8472" in o.egress.detail


def test_local_pod_over_the_bridge_names_the_port() -> None:
    (o,) = trace(node(EMPTY), Packet("192.168.50.100", "10.244.1.5", iif="eth0")).outcomes
    assert o.egress is not None and o.egress.kind == "bridge" and "veth1234" in o.egress.detail


def test_no_route_is_a_drop_with_the_reason() -> None:
    view = node(EMPTY)
    view.routes = [r for r in view.routes if r.dst.prefixlen != 0]
    (o,) = trace(view, Packet("10.244.1.5", "8.8.8.8")).outcomes
    assert o.verdict == "DROP" and "no route to 8.8.8.8" in o.reason


def test_local_process_without_route_fails_before_netfilter() -> None:
    view = node(EMPTY)
    view.routes = [r for r in view.routes if r.dst.prefixlen != 0]
    (o,) = trace(view, Packet("192.168.50.2", "10.96.0.1")).outcomes
    assert o.verdict == "DROP" and o.reason.startswith("connect() fails before netfilter")


def test_delivered_locally() -> None:
    r = trace(node(EMPTY), Packet("192.168.50.100", "192.168.50.2", iif="eth0"))
    (o,) = r.outcomes
    assert o.egress is not None and o.egress.kind == "local"


FORWARD_DROP = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
"""


def test_forward_policy_drop_is_named() -> None:
    (o,) = trace(node(FORWARD_DROP), Packet("192.168.50.100", "10.244.2.7", iif="eth0")).outcomes
    assert o.verdict == "DROP"
    assert o.hops[-1].rule == "policy DROP" and o.hops[-1].chain == "FORWARD"
    assert "policy DROP" in format_trace(trace(node(FORWARD_DROP), Packet("192.168.50.100", "10.244.2.7", iif="eth0")))


SPLIT = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:SVC - [0:0]
:MASQ - [0:0]
-A PREROUTING -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j SVC
-A SVC -m statistic --mode random --probability 0.25 -j DNAT --to-destination 10.244.1.5:8080
-A SVC -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.244.2.7:8080
-A SVC -j MASQ
-A SVC -j DNAT --to-destination 10.244.2.8:8080
-A MASQ -j MARK --or-mark 0x4000
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
"""


def test_statistic_branches_multiply_and_mark_drives_masquerade() -> None:
    r = trace(node(SPLIT), Packet("192.168.50.100", "10.96.0.1", iif="eth0"))
    got = {o.dnat: (round(o.probability, 6), o.masquerade) for o in r.outcomes}
    assert got == {
        "10.244.1.5:8080": (0.25, False),
        "10.244.2.7:8080": (0.375, False),
        "10.244.2.8:8080": (0.375, True),
    }
    assert sum(o.probability for o in r.outcomes) == pytest.approx(1.0)
    masq = next(o for o in r.outcomes if o.masquerade)
    assert masq.source_seen == "10.244.1.0"  # flannel.1's address: MASQUERADE picks the egress device's
    assert masq.masquerade_reason == "-A SVC -j MASQ"


AFFINITY = """*nat
:PREROUTING ACCEPT [0:0]
:SVC - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
-A PREROUTING -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j SVC
-A SVC -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-1 --mask 255.255.255.255 --rsource -j KUBE-SEP-1
-A SVC -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-2 --mask 255.255.255.255 --rsource -j KUBE-SEP-2
-A SVC -m statistic --mode random --probability 0.5 -j KUBE-SEP-1
-A SVC -j KUBE-SEP-2
-A KUBE-SEP-1 -p tcp -m recent --set --name KUBE-SEP-1 -m tcp -j DNAT --to-destination 10.244.1.5:80
-A KUBE-SEP-2 -p tcp -m recent --set --name KUBE-SEP-2 -m tcp -j DNAT --to-destination 10.244.2.7:80
COMMIT
"""


def test_affinity_first_and_returning_client() -> None:
    r = trace(node(AFFINITY), Packet("192.168.50.100", "10.96.0.1", iif="eth0"))
    assert {o.dnat for o in r.outcomes} == {"10.244.1.5:80", "10.244.2.7:80"}
    first = next(o for o in r.outcomes if o.dnat == "10.244.1.5:80")
    assert any("returning client" in n and "10.244.1.5:80 (100%)" in n for n in first.notes)
    returning = trace(
        node(AFFINITY), Packet("192.168.50.100", "10.96.0.1", iif="eth0"), recent=frozenset({"KUBE-SEP-2"})
    )
    assert [o.dnat for o in returning.outcomes] == ["10.244.2.7:80"]


def test_unknown_match_warns_and_assumes() -> None:
    rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m owner --uid-owner 0 -j DROP\nCOMMIT\n"
    r = trace(node(rules), Packet("192.168.50.100", "10.244.2.7", iif="eth0"))
    assert r.outcomes[0].verdict == "DROP"
    assert any("unrecognised match -m owner" in w and "line 4" in w for w in r.warnings)


def test_goto_returns_to_the_callers_caller() -> None:
    rules = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A FORWARD -j A
-A FORWARD -j DROP
-A A -g B
-A A -j REJECT
-A B -j RETURN
COMMIT
"""
    (o,) = trace(node(rules), Packet("192.168.50.100", "10.244.2.7", iif="eth0")).outcomes
    assert o.verdict == "DROP"  # B returns past A (goto) to FORWARD, whose next rule drops


def test_nat_is_skipped_for_established_packets() -> None:
    r = trace(node(SPLIT), Packet("192.168.50.100", "10.96.0.1", iif="eth0", ctstate="ESTABLISHED"))
    assert [o.dnat for o in r.outcomes] == [None]
    assert any("existing connection" in w for w in r.warnings)
