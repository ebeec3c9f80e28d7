"""flanneld's iptables rules, rendered as iptables-restore text (pure), exactly as flannel."""

from __future__ import annotations

import ipaddress

from clew.netfilter.iptables_save import parse
from clew.podnet import masquerade

NET = ipaddress.IPv4Network("10.244.0.0/16")
SUBNET = ipaddress.IPv4Network("10.244.1.0/24")

EXPECTED = """\
*nat
:FLANNEL-POSTRTG - [0:0]
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"""


def test_render_matches_flannel() -> None:
    assert masquerade.render(NET, SUBNET) == EXPECTED


def test_without_ipmasq_only_forward_rules() -> None:
    text = masquerade.render(NET, SUBNET, ipmasq=False)
    assert "*nat" not in text and "FLANNEL-FWD -s 10.244.0.0/16" in text


def test_jumps_are_flannels() -> None:
    assert masquerade.JUMPS == (
        ("nat", "POSTROUTING", ["-m", "comment", "--comment", "flanneld masq", "-j", "FLANNEL-POSTRTG"]),
        ("filter", "FORWARD", ["-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"]),
    )


def test_the_tracer_reads_what_we_render() -> None:
    ruleset = parse(masquerade.render(NET, SUBNET))
    assert ruleset.warnings == []
    postrtg = ruleset.chain("nat", "FLANNEL-POSTRTG")
    fwd = ruleset.chain("filter", "FLANNEL-FWD")
    assert postrtg is not None and fwd is not None
    targets = [r.target.name if r.target else None for r in postrtg.rules]
    assert targets == ["RETURN"] * 4 + ["MASQUERADE"] * 2
    assert [r.target.name if r.target else None for r in fwd.rules] == ["ACCEPT", "ACCEPT"]
