"""Honest answers: what the tracer could not know is recorded per outcome, never assumed silently.

Each outcome carries ``assumptions`` (location + what was assumed); an outcome resting on one is
never told as a plain certainty. Routing facts the tracer does know (127.0.0.0/8 is local, the
reverse path for ``-m rpfilter``) are decided, not assumed.
"""

from __future__ import annotations

import ipaddress

from clew.netfilter.iptables_save import parse
from clew.trace.engine import trace
from clew.trace.node_view import Address, Link, NodeView, Route
from clew.trace.packet import Assumption, Packet
from clew.trace.story import format_trace

NET = ipaddress.IPv4Network


def rules_only(rules: str, local: tuple[str, ...] = ()) -> NodeView:
    rs = parse(rules, origin="r.txt")
    return NodeView(ruleset=rs, addresses=[Address("?", ip, 32) for ip in local], warnings=list(rs.warnings))


def routed(rules: str) -> NodeView:
    """eth0 192.168.50.2/24 (default via .1), eth1 10.0.0.2/24."""
    return NodeView(
        ruleset=parse(rules),
        addresses=[Address("lo", "127.0.0.1", 8), Address("eth0", "192.168.50.2", 24), Address("eth1", "10.0.0.2", 24)],
        routes=[
            Route(NET("192.168.50.2/32"), type="local", dev="eth0", table="local"),
            Route(NET("10.0.0.2/32"), type="local", dev="eth1", table="local"),
            Route(NET("0.0.0.0/0"), dev="eth0", gateway="192.168.50.1"),
            Route(NET("192.168.50.0/24"), dev="eth0", prefsrc="192.168.50.2"),
            Route(NET("10.0.0.0/24"), dev="eth1", prefsrc="10.0.0.2"),
        ],
        links={"lo": Link("lo", "loopback"), "eth0": Link("eth0", ""), "eth1": Link("eth1", "")},
        sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"},
    )


SET = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -m set --match-set blocklist src -j DROP
COMMIT
"""


def test_an_unreadable_ipset_is_an_assumption_of_the_outcome_with_its_location() -> None:
    r = trace(rules_only(SET, ("192.0.2.10",)), Packet("203.0.113.9", "192.0.2.10", iif="eth0"))
    (o,) = r.outcomes
    assert o.verdict == "ACCEPT" and not o.certain
    assert o.assumptions == [
        Assumption("ipset blocklist in chain INPUT cannot be read: assumed not to match", "filter", "INPUT", 0, 3)
    ]
    doc = r.to_json()["outcomes"][0]
    assert doc["certain"] is False
    assert doc["assumptions"][0]["location"] == "filter/INPUT rule 1, line 3"
    assert doc["assumptions"][0]["what"].startswith("ipset blocklist")
    story = format_trace(r)
    assert "delivered — only if the assumption below holds" in story
    assert "assumed: filter/INPUT rule 1, line 3: ipset blocklist" in story


def test_a_certain_outcome_says_nothing_about_assumptions() -> None:
    r = trace(routed("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"), Packet("192.168.50.9", "192.168.50.2"))
    (o,) = r.outcomes
    assert o.certain and r.to_json()["outcomes"][0]["assumptions"] == []
    assert "only if" not in format_trace(r) and "assumed:" not in format_trace(r)


OUT = """*filter
:FORWARD DROP [0:0]
-A FORWARD -o eth1 -j ACCEPT
COMMIT
"""


def test_output_interface_without_routes_is_an_assumption_not_a_silent_no() -> None:
    (o,) = trace(rules_only(OUT), Packet("203.0.113.9", "10.1.2.3", iif="eth0")).outcomes
    assert o.verdict == "DROP"
    assert any("-o eth1" in a.what and "output interface is unknown" in a.what for a in o.assumptions)


def test_oif_says_where_it_leaves_when_routes_are_not_given() -> None:
    (o,) = trace(rules_only(OUT), Packet("203.0.113.9", "10.1.2.3", iif="eth0", oif="eth1")).outcomes
    assert o.verdict == "ACCEPT"
    assert not any("-o eth1" in a.what for a in o.assumptions)


def test_loopback_is_always_local_even_without_addresses() -> None:
    rules = "*filter\n:INPUT DROP [0:0]\n-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT\nCOMMIT\n"
    r = trace(rules_only(rules), Packet("127.0.0.1", "127.0.0.5", iif="lo"))
    (o,) = r.outcomes
    assert o.verdict == "ACCEPT" and o.egress is not None and o.egress.kind == "local"
    assert o.certain, o.assumptions


def test_addrtype_local_without_the_nodes_addresses_is_an_assumption() -> None:
    rules = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m addrtype --dst-type LOCAL -j DROP\nCOMMIT\n"
    )
    (o,) = trace(rules_only(rules), Packet("203.0.113.9", "192.0.2.10", iif="eth0")).outcomes
    assert o.verdict == "ACCEPT"
    assert any("LOCAL" in a.what and "192.0.2.10 assumed not local" in a.what for a in o.assumptions)


RPF = """*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m rpfilter --invert -j DROP
COMMIT
"""


def test_rpfilter_is_evaluated_from_the_routes() -> None:
    # 10.0.0.9 is reached on eth1: arriving on eth1 passes, arriving on eth0 is spoofed → dropped
    good = trace(routed(RPF), Packet("10.0.0.9", "192.168.50.2", iif="eth1")).outcomes
    bad = trace(routed(RPF), Packet("10.0.0.9", "192.168.50.2", iif="eth0")).outcomes
    assert [o.verdict for o in good] == ["ACCEPT"] and good[0].certain
    assert [o.verdict for o in bad] == ["DROP"] and bad[0].certain
    assert "rpfilter" in bad[0].hops[-1].rule


def test_rpfilter_loose_accepts_any_route_back() -> None:
    rules = RPF.replace("--invert", "--loose --invert")
    (o,) = trace(routed(rules), Packet("10.0.0.9", "192.168.50.2", iif="eth0")).outcomes
    assert o.verdict == "ACCEPT"


def test_rpfilter_without_routes_is_an_assumption() -> None:
    (o,) = trace(rules_only(RPF, ("192.0.2.10",)), Packet("10.0.0.9", "192.0.2.10", iif="eth0")).outcomes
    assert o.verdict == "ACCEPT"
    assert any("rpfilter" in a.what and "routes not given" in a.what for a in o.assumptions)


def test_dnat_with_an_empty_destination_is_a_warning_naming_its_line_not_a_traceback() -> None:
    rules = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j DNAT\nCOMMIT\n"
    r = trace(rules_only(rules, ("192.0.2.10",)), Packet("203.0.113.9", "192.0.2.10", iif="eth0"))
    (o,) = r.outcomes
    assert o.verdict == "ACCEPT" and o.dnat is None
    assert any(w.startswith("line 3: DNAT without a usable --to-destination") for w in r.warnings), r.warnings
    assert any(a.line == 3 for a in o.assumptions)


def test_dnat_to_a_port_only_keeps_the_address() -> None:
    """``--to-destination :8080`` (iptables-restore takes it; Docker's DNS rules use the SNAT form)."""
    rules = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j DNAT --to-destination :8080\nCOMMIT\n"
    r = trace(rules_only(rules, ("192.0.2.10",)), Packet("203.0.113.9", "192.0.2.10", iif="eth0"))
    (o,) = r.outcomes
    assert o.dnat == "192.0.2.10:8080" and o.certain


def test_outcomes_of_equal_probability_come_in_rule_order() -> None:
    rules = """*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.9:80
-A PREROUTING -j DNAT --to-destination 10.0.0.3:80
COMMIT
"""
    r = trace(routed(rules), Packet("192.168.50.9", "192.168.50.2", iif="eth0"))
    assert [o.dnat for o in r.outcomes] == ["10.0.0.9:80", "10.0.0.3:80"]


def test_masquerade_reason_is_the_masquerade_rule_when_no_mark_decided_it() -> None:
    """A packet marked earlier (KUBE-MARK-MASQ) but masqueraded by Docker's ``-s … ! -o docker0``
    rule: the reason is Docker's rule, not the mark."""
    rules = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:MARKIT - [0:0]
-A PREROUTING -j MARKIT
-A MARKIT -j MARK --or-mark 0x4000
-A POSTROUTING -s 10.0.0.0/24 ! -o docker0 -j MASQUERADE
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
"""
    (o,) = trace(routed(rules), Packet("10.0.0.9", "192.168.50.9", iif="eth1")).outcomes
    assert o.masquerade and o.masquerade_reason == "-A POSTROUTING -s 10.0.0.0/24 ! -o docker0 -j MASQUERADE"
    (o2,) = trace(routed(rules), Packet("10.0.1.9", "192.168.50.9", iif="eth1")).outcomes
    assert o2.masquerade and o2.masquerade_reason == "-A PREROUTING -j MARKIT"


def test_short_form_is_one_line_per_outcome_in_order_and_marks_assumptions() -> None:
    from clew.trace.story import format_short

    rules = """*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m statistic --mode random --probability 0.25 -j DNAT --to-destination 10.0.0.9:80
-A PREROUTING -j DNAT --to-destination 10.0.0.3:80
COMMIT
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m set --match-set blocked dst -j DROP
COMMIT
"""
    r = trace(routed(rules), Packet("192.168.50.9", "192.168.50.2", iif="eth0"))
    lines = format_short(r).splitlines()
    assert len(lines) == 2 + len(r.outcomes) == 4
    assert lines[1].lstrip().startswith("75.0%  IF 1 assumption holds: no Service → 10.0.0.3:80: delivered")
    assert lines[2].lstrip().startswith("25.0%  IF 1 assumption holds: no Service → 10.0.0.9:80: delivered")
    assert all(len(line) <= 100 for line in lines)


def gated(rules: str = "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", **sysctls: str) -> NodeView:
    view = routed(rules)
    view.sysctls = {k.replace("__", "."): v for k, v in sysctls.items()}
    return view


def test_ip_forward_off_drops_a_forwarded_packet_and_unread_it_is_an_assumption() -> None:
    packet = Packet("192.168.50.9", "10.0.0.7", iif="eth0")
    (o,) = trace(gated(net__ipv4__ip_forward="0"), packet).outcomes
    assert o.verdict == "DROP" and "forwarding is off on eth0" in o.reason and o.certain
    (o2,) = trace(gated(), packet).outcomes  # sysctls read, but not this one
    assert o2.verdict == "ACCEPT" and any("ip_forward" in a.what for a in o2.assumptions)


def test_kernel_rp_filter_strict_drops_a_source_whose_way_back_is_another_interface() -> None:
    spoofed = Packet("10.0.0.9", "192.168.50.2", iif="eth0")  # 10.0.0.0/24 is on eth1
    (o,) = trace(gated(net__ipv4__conf__all__rp_filter="1"), spoofed).outcomes
    assert o.verdict == "DROP" and "rp_filter=1" in o.reason
    (o2,) = trace(gated(net__ipv4__conf__all__rp_filter="2"), spoofed).outcomes
    assert o2.verdict == "ACCEPT"  # loose: any way back will do
    (o3,) = trace(gated(), spoofed).outcomes
    assert o3.verdict == "ACCEPT" and any("rp_filter" in a.what for a in o3.assumptions)
    (o4,) = trace(gated(), Packet("10.0.0.9", "192.168.50.2", iif="eth1")).outcomes
    assert o4.certain  # its way back is eth1: rp_filter cannot matter, nothing assumed


def test_loopback_destination_from_outside_is_martian_unless_route_localnet() -> None:
    rules = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j DNAT --to-destination 127.0.0.1:8080\nCOMMIT\n"
    packet = Packet("192.168.50.9", "192.168.50.2", iif="eth0")
    (o,) = trace(gated(rules, net__ipv4__conf__all__route_localnet="0"), packet).outcomes
    assert o.verdict == "DROP" and "martian" in o.reason and o.certain
    (o2,) = trace(gated(rules, net__ipv4__conf__eth0__route_localnet="1"), packet).outcomes
    assert o2.verdict == "ACCEPT" and o2.dnat == "127.0.0.1:8080"
    (o3,) = trace(gated(rules), packet).outcomes
    assert o3.verdict == "DROP" and any("route_localnet" in a.what for a in o3.assumptions)


def test_a_reject_says_what_the_client_sees_from_its_reject_type() -> None:
    """A port unreachable or a TCP reset is "refused"; the prohibited / unreachable ICMP errors that
    firewalld and RHEL's iptables send are "no route to host" for the client, and the story says so."""
    from clew.trace.story import format_short, reject_with

    def rejected(target: str, proto: str = "tcp") -> str:
        rules = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p {proto} -j {target}\nCOMMIT\n"
        result = trace(rules_only(rules, ("10.0.0.2",)), Packet("10.0.0.9", "10.0.0.2", proto=proto, dport=80))
        (o,) = result.outcomes
        return f"{reject_with(o)} | {format_short(result, width=200)}"

    assert rejected("REJECT").startswith("port-unreachable | ") and "refused at once" in rejected("REJECT")
    tcp_reset = rejected("REJECT --reject-with tcp-reset")
    assert tcp_reset.startswith("tcp-reset | ") and "TCP reset" in tcp_reset
    prohibited = rejected("REJECT --reject-with icmp-host-prohibited")
    assert prohibited.startswith("host-prohibited | ") and "no route to host" in prohibited
    assert "refused" not in prohibited
