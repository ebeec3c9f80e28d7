"""The tracer on nftables rulesets (``nft -j list ruleset``), without a kernel.

Fixtures in data/nft were made by loading a ruleset into a throwaway namespace with
``nft -f`` and saving ``nft -j list ruleset`` (nft 1.0.6): ``kube_proxy_overall`` is kube-proxy's
expected ruleset of upstream ``TestOverallNFTablesRules`` (pkg/proxy/nftables/proxier_test.go),
``features`` exercises expressions. Small rulesets below are hand-written JSON of the same shapes.

The packet-flow table on kube-proxy's layout takes upstream's nftables ``packetFlowTest`` rows as
facts, transposed to the Service of the overall ruleset with the same shape (named per row).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clew.netfilter.nft_json import NftError, parse
from clew.trace.engine import trace
from clew.trace.node_view import Address, NodeView
from clew.trace.packet import Packet, TraceResult
from clew.trace.sources import SourceError, from_ruleset
from clew.trace.story import format_trace

DATA = Path(__file__).parent / "data" / "nft"
NODE_IPS = ["192.168.0.2", "192.168.1.2", "192.168.99.11", "127.0.0.1"]  # upstream's testNodeIPs
POD, EXT, BLOCKED, NODE, NODE_ALT = "10.0.0.2", "203.0.113.2", "203.0.113.130", "192.168.0.2", "192.168.1.2"


def kube_proxy() -> NodeView:
    return from_ruleset(DATA / "kube_proxy_overall.json", NODE_IPS)


def rows(result: TraceResult) -> set[tuple[str, str, float, bool]]:
    out: dict[tuple[str, str, bool], float] = {}
    for o in result.outcomes:
        key = (o.verdict, o.dnat or "", o.masquerade)
        out[key] = out.get(key, 0.0) + o.probability
    return {(v, d, round(p, 6), m) for (v, d, m), p in out.items()}


def iif(src: str) -> str | None:
    if src in NODE_IPS or src in ("1.2.3.4", "5.6.7.8"):
        return None
    return "cni0" if src.startswith("10.") else "eth0"


def expected(output: str, masq: bool = False) -> set[tuple[str, str, float, bool]]:
    if output in ("", "ACCEPT"):
        return {("ACCEPT", "", 1.0, False)}
    if output in ("DROP", "REJECT"):
        return {(output, "", 1.0, False)}
    eps = [e.strip() for e in output.split(",")]
    return {("ACCEPT", e, round(1 / len(eps), 6), masq) for e in eps}


# (row as upstream names it, upstream test, src, dst, dport, proto, output, masq)
KUBE_PROXY_FLOWS = [
    ("pod to cluster IP (svc4: two endpoints)", "TestNodePorts", POD, "172.30.0.44", 80, "tcp",
     "10.180.0.4:80, 10.180.0.5:80", False),
    ("hairpin to cluster IP (svc1)", "TestClusterIPGeneral", "10.180.0.1", "172.30.0.41", 80, "tcp",
     "10.180.0.1:80", True),
    ("svc1 does not accept svc2's ports", "TestClusterIPGeneral", "10.180.0.2", "172.30.0.41", 443, "tcp",
     "REJECT", False),
    ("TCP-only port does not match UDP traffic (svc2)", "TestClusterIPGeneral", "10.180.0.2", "172.30.0.42", 80,
     "udp", "REJECT", False),
    ("packet to unallocated cluster ip", "TestClusterIPGeneral", "10.180.0.2", "172.30.0.50", 80, "tcp",
     "DROP", False),
    ("pod to cluster IP with no endpoints (svc6)", "TestNoEndpointsReject", POD, "172.30.0.46", 80, "tcp",
     "REJECT", False),
    ("external to nodePort (svc3)", "TestNodePorts", EXT, NODE, 3003, "tcp", "10.180.0.3:80", True),
    ("node to nodePort (svc3)", "TestNodePorts", NODE, NODE, 3003, "tcp", "10.180.0.3:80", True),
    ("secondary nodeIP ignores NodePorts", "TestNodePorts", EXT, NODE_ALT, 3003, "tcp", "", False),
    ("accepted external to LB (svc5)", "TestLoadBalancer", EXT, "5.6.7.8", 80, "tcp", "10.180.0.3:80", True),
    ("blocked external to LB (svc5)", "TestLoadBalancer", BLOCKED, "5.6.7.8", 80, "tcp", "DROP", False),
    ("pod to LB (blocked by LoadBalancerSourceRanges)", "TestLoadBalancer", POD, "5.6.7.8", 80, "tcp", "DROP", False),
    ("nodePort bypasses LoadBalancerSourceRanges", "TestLoadBalancer", BLOCKED, NODE, 3002, "tcp",
     "10.180.0.3:80", True),
    ("pod to external IP hits both endpoints, unmasqueraded (svc2: all endpoints remote)",
     "TestExternalTrafficPolicyLocal", POD, "192.168.99.22", 80, "tcp", "10.180.0.2:80", False),
    ("external to external IP hits only local endpoint (none: dropped)", "TestExternalTrafficPolicyLocal", EXT,
     "192.168.99.22", 80, "tcp", "DROP", False),
    ("pod to LB IP hits both endpoints, unmasqueraded", "TestExternalTrafficPolicyLocal", POD, "1.2.3.4", 80, "tcp",
     "10.180.0.2:80", False),
    ("pod to NodePort hits both endpoints, unmasqueraded", "TestExternalTrafficPolicyLocal", POD, NODE, 3001, "tcp",
     "10.180.0.2:80", False),
    ("external to NodePort hits only local endpoint (none: dropped)", "TestExternalTrafficPolicyLocal", EXT, NODE,
     3001, "tcp", "DROP", False),
    ("node to external IP, masqueraded, short-circuited", "TestTracePacket (iptables): LOCAL, KUBE-MARK-MASQ", NODE,
     "192.168.99.22", 80, "tcp", "10.180.0.2:80", True),
    ("external to cluster IP (svc1)", "TestInternalExternalMasquerade", EXT, "172.30.0.41", 80, "tcp",
     "10.180.0.1:80", True),
    ("no match", "TestTracePacket (iptables)", POD, "10.0.0.3", 80, "tcp", "", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "test", "src", "dst", "dport", "proto", "output", "masq"),
    KUBE_PROXY_FLOWS,
    ids=[r[0] for r in KUBE_PROXY_FLOWS],
)
def test_kube_proxy_nftables_packet_flows(
    name: str, test: str, src: str, dst: str, dport: int, proto: str, output: str, masq: bool
) -> None:
    view = kube_proxy()
    result = trace(view, Packet(src, dst, proto=proto, dport=dport, iif=iif(src)))
    assert rows(result) == expected(output, masq), f"{test}: {name}\n{format_trace(result)}"


def test_kube_proxy_outcomes_name_the_service_and_masquerade_reason() -> None:
    result = trace(kube_proxy(), Packet("10.180.0.1", "172.30.0.41", dport=80, iif="cni0"))
    (o,) = result.outcomes
    assert o.service == "ns1/svc1:p80"
    assert o.masquerade_reason == "ip saddr 10.180.0.1 jump mark-for-masquerade"
    assert any(h.table == "ip kube-proxy" and h.action == "DNAT to 10.180.0.1:80" for h in o.hops)


def test_kube_proxy_affinity_returning_client() -> None:
    result = trace(kube_proxy(), Packet(POD, "172.30.0.45", dport=80, iif="cni0"))
    (o,) = result.outcomes
    assert o.affinity == ("affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80",)
    assert any("returning client" in n for n in o.notes)


# ---------------------------------------------------------------------------- hand-written JSON


def doc(*objects: dict[str, Any]) -> str:
    return json.dumps({"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, *objects]})


def table(name: str = "t") -> dict[str, Any]:
    return {"table": {"family": "ip", "name": name, "handle": 1}}


def chain(name: str, hook: str | None = None, prio: int = 0, policy: str = "accept", kind: str = "filter") -> Any:
    body: dict[str, Any] = {"family": "ip", "table": "t", "name": name, "handle": 1}
    if hook:
        body.update({"type": kind, "hook": hook, "prio": prio, "policy": policy})
    return {"chain": body}


def rule(chain_name: str, *expr: Any, comment: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"family": "ip", "table": "t", "chain": chain_name, "handle": 9, "expr": list(expr)}
    if comment:
        body["comment"] = comment
    return {"rule": body}


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def payload(proto: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": field}}


DADDR, SADDR, DPORT = payload("ip", "daddr"), payload("ip", "saddr"), payload("th", "dport")


def view_of(text: str, local: tuple[str, ...] = ("192.168.0.2",)) -> NodeView:
    return NodeView(addresses=[Address("eth0", ip, 24) for ip in local], nft=parse(text))


def forwarded(view: NodeView, dport: int = 80, proto: str = "tcp", src: str = "10.0.0.5") -> TraceResult:
    return trace(view, Packet(src, "10.1.0.9", proto=proto, dport=dport, iif="eth0"))


def test_a_forward_policy_drop_chain_is_not_delivered() -> None:
    """Issue 9's first symptom: a native forward-hook `policy drop` chain."""
    v = view_of(doc(table(), chain("fw", "forward", 0, "drop")))
    (o,) = forwarded(v).outcomes
    assert o.verdict == "DROP" and "policy" in o.reason
    ok = view_of(doc(table(), chain("fw", "forward", 0, "drop"), rule("fw", match(DPORT, 80), {"accept": None})))
    assert [x.verdict for x in forwarded(ok).outcomes] == ["ACCEPT"]
    assert [x.verdict for x in forwarded(ok, 81).outcomes] == ["DROP"]


def test_accept_in_one_base_chain_does_not_skip_the_next() -> None:
    v = view_of(
        doc(
            table(),
            chain("a", "forward", -10),
            chain("b", "forward", 10),
            rule("a", {"accept": None}),
            rule("b", match(payload("tcp", "dport"), 80), {"drop": None}),
        )
    )
    assert [o.verdict for o in forwarded(v).outcomes] == ["DROP"]
    assert [o.verdict for o in forwarded(v, proto="udp").outcomes] == ["ACCEPT"]  # tcp dport implies tcp


def test_priority_order_across_tables_and_iptables() -> None:
    """A mark set at -200 is seen by a chain at 0 in another table, whatever the listing order."""
    text = json.dumps(
        {
            "nftables": [
                table("late"),
                table("early"),
                {"chain": {"family": "ip", "table": "late", "name": "c", "type": "filter", "hook": "forward",
                           "prio": 0, "policy": "accept"}},
                {"chain": {"family": "ip", "table": "early", "name": "c", "type": "filter", "hook": "forward",
                           "prio": -200, "policy": "accept"}},
                {"rule": {"family": "ip", "table": "late", "chain": "c", "handle": 2,
                          "expr": [match({"meta": {"key": "mark"}}, 7), {"drop": None}]}},
                {"rule": {"family": "ip", "table": "early", "chain": "c", "handle": 3,
                          "expr": [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": 7}}]}},
            ]
        }
    )  # fmt: skip
    assert [o.verdict for o in forwarded(view_of(text)).outcomes] == ["DROP"]


def test_numgen_branches_and_data_map_dnat_shares_are_exact() -> None:
    m = {
        "map": {
            "family": "ip", "name": "dst-tcp-3", "table": "t", "type": ["ipv4_addr", "inet_service", "integer"],
            "map": "ipv4_addr . inet_service",
            "elem": [[{"elem": {"val": {"concat": ["10.96.0.10", 80, i]}, "comment": "default/web:http"}},
                      {"concat": [f"10.244.1.{i + 5}", 8080]}] for i in range(3)],
        }
    }  # fmt: skip
    key = {"concat": [DADDR, payload("tcp", "dport"), {"numgen": {"mode": "random", "mod": 3, "offset": 0}}]}
    v = view_of(
        doc(
            table(),
            m,
            chain("pre", "prerouting", -100, kind="nat"),
            rule("pre", {"dnat": {"family": "ip", "addr": {"map": {"key": key, "data": "@dst-tcp-3"}}}}),
        )
    )
    result = trace(v, Packet("10.0.0.5", "10.96.0.10", dport=80, iif="eth0"))
    assert rows(result) == {("ACCEPT", f"10.244.1.{i + 5}:8080", round(1 / 3, 6), False) for i in range(3)}
    assert {o.service for o in result.outcomes} == {"default/web:http"}
    miss = trace(v, Packet("10.0.0.5", "10.96.0.10", dport=81, iif="eth0"))
    assert rows(miss) == {("ACCEPT", "", 1.0, False)}  # a lookup that misses: no match, next rule


def test_numgen_compared_with_a_number_splits() -> None:
    ng = {"numgen": {"mode": "random", "mod": 4, "offset": 0}}
    v = view_of(doc(table(), chain("fw", "forward"), rule("fw", match(ng, 1, "<"), {"drop": None})))
    assert rows(forwarded(v)) == {("DROP", "", 0.25, False), ("ACCEPT", "", 0.75, False)}


def test_sets_intervals_concatenations_and_vmaps() -> None:
    allow = {
        "set": {
            "family": "ip", "name": "allow", "table": "t",
            "type": ["ipv4_addr", "inet_proto", "inet_service", "ipv4_addr"], "flags": ["interval"],
            "elem": [{"concat": ["10.1.0.9", "tcp", 80, {"prefix": {"addr": "10.0.0.0", "len": 8}}]}],
        }
    }  # fmt: skip
    ports = {"set": {"family": "ip", "name": "ports", "table": "t", "type": "inet_service", "flags": ["interval"],
                     "elem": [{"range": [8000, 8100]}, 443]}}  # fmt: skip
    key = {"concat": [DADDR, {"meta": {"key": "l4proto"}}, DPORT, SADDR]}
    vmap = {"vmap": {"key": DPORT, "data": {"set": [[53, {"jump": {"target": "dns"}}], [{"range": [9000, 9100]},
                                                                                       {"drop": None}]]}}}  # fmt: skip
    v = view_of(
        doc(
            table(),
            allow,
            ports,
            chain("fw", "forward"),
            chain("dns", None),
            rule("fw", match(DPORT, "@ports"), {"accept": None}),
            rule("fw", vmap),
            rule("fw", match(key, "@allow", "!="), {"drop": None}),
            rule("dns", match(payload("udp", "dport"), 53), {"reject": {"type": "icmp", "expr": "port-unreachable"}}),
        )
    )
    assert [o.verdict for o in forwarded(v, 8050).outcomes] == ["ACCEPT"]  # interval set
    assert [o.verdict for o in forwarded(v, 443).outcomes] == ["ACCEPT"]
    assert [o.verdict for o in forwarded(v, 9050).outcomes] == ["DROP"]  # vmap interval → drop
    assert [o.verdict for o in forwarded(v, 53, "udp").outcomes] == ["REJECT"]  # vmap jump
    assert [o.verdict for o in forwarded(v, 53, "tcp").outcomes] == ["DROP"]  # returned, then not in @allow
    assert [o.verdict for o in forwarded(v, 80).outcomes] == ["ACCEPT"]  # in @allow
    assert [o.verdict for o in forwarded(v, 80, src="11.0.0.1").outcomes] == ["DROP"]


def test_marks_ct_marks_and_goto_return() -> None:
    mark = {"meta": {"key": "mark"}}
    v = view_of(
        doc(
            table(),
            chain("fw", "forward"),
            chain("sub", None),
            chain("leaf", None),
            rule("fw", {"jump": {"target": "sub"}}),
            rule("fw", match({"&": [mark, 0x10]}, 0, "!="), {"drop": None}),
            rule("sub", {"mangle": {"key": mark, "value": {"|": [mark, 0x10]}}}),
            rule("sub", {"mangle": {"key": {"ct": {"key": "mark"}}, "value": 5}}),
            rule("sub", {"goto": {"target": "leaf"}}),
            rule("sub", {"accept": None}),  # not reached: leaf's return goes back to fw
            rule("leaf", match({"ct": {"key": "mark"}}, 5), {"return": None}),
        )
    )
    (o,) = forwarded(v).outcomes
    assert o.verdict == "DROP", format_trace(forwarded(v))


def test_nat_chains_stop_at_the_first_mapping_and_run_at_the_nat_hook() -> None:
    """Two nat chains: the first to DNAT wins, the second is not consulted; a filter chain at
    -150 still runs before them both."""
    v = view_of(
        doc(
            table(),
            chain("n1", "prerouting", -100, kind="nat"),
            chain("n2", "prerouting", -90, kind="nat"),
            chain("raw", "prerouting", -150),
            rule("raw", {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 1}}),
            rule("n1", match({"meta": {"key": "mark"}}, 1), {"dnat": {"addr": "10.2.0.1", "port": 81}}),
            rule("n2", {"dnat": {"addr": "10.3.0.1"}}),
        )
    )
    assert rows(forwarded(v)) == {("ACCEPT", "10.2.0.1:81", 1.0, False)}


def test_limits_and_unknown_expressions_are_assumptions() -> None:
    v = view_of(
        doc(
            table(),
            chain("fw", "forward"),
            rule("fw", {"limit": {"rate": 10, "per": "second"}}, {"counter": None}),
            rule("fw", match({"meta": {"key": "skuid"}}, 1000), {"drop": None}),
        )
    )
    result = forwarded(v)
    (o,) = result.outcomes
    assert o.verdict == "DROP"
    said = [(a.location, a.what) for a in o.assumptions if a.table]  # (and "routes": not given here)
    assert said[0][0] == "ip t/fw rule 1" and "not limiting" in said[0][1]
    assert said[1][0] == "ip t/fw rule 2" and "meta skuid" in said[1][1]
    assert not o.certain
    assert "only if the 3 assumptions below hold" in format_trace(result)  # never a plain certainty
    assert any("meta skuid" in w for w in result.warnings)


def test_iptables_nft_tables_are_walked_once_through_iptables() -> None:
    from clew.netfilter.iptables_save import parse as parse_ipt

    ipt = parse_ipt("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                    "-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n")  # fmt: skip
    mirror = json.dumps(
        {
            "nftables": [
                {"table": {"family": "ip", "name": "filter", "handle": 1}},
                {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter",
                           "hook": "forward", "prio": 0, "policy": "drop"}},
                {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 2,
                          "expr": [{"xt": {"type": "match", "name": "tcp"}}, {"accept": None}]}},
            ]
        }
    )  # fmt: skip
    v = NodeView(ruleset=ipt, nft=parse(mirror))
    result = forwarded(v)
    assert [o.verdict for o in result.outcomes] == ["ACCEPT"]
    assert not any("compat" in a.what for o in result.outcomes for a in o.assumptions)  # xt copy not walked
    assert [o.verdict for o in forwarded(v, 81).outcomes] == ["DROP"]


def test_features_fixture_parses_every_set_and_chain() -> None:
    rs = parse((DATA / "features.json").read_text())
    t = rs.table("ip", "t")
    assert t is not None
    assert set(t.sets) == {"dst-tcp-2", "hairpin", "allow", "ports", "aff"}
    assert t.sets["dst-tcp-2"].key_types == ("ipv4_addr", "inet_service", "integer")
    assert t.sets["aff"].dynamic
    assert {c.name for c in rs.base_chains()} == {"pre", "post", "f", "i", "fw"}
    assert sum(len(c.rules) for c in t.chains.values()) == 22
    v = NodeView(addresses=[Address("eth0", "192.168.0.2", 24)], nft=rs)
    result = trace(v, Packet("10.244.9.9", "10.96.0.10", dport=80, iif="eth0"))
    # DNATed by the data map (each slot 1/2), then the forward chain's policy drop ends it
    assert rows(result) == {("DROP", "10.244.1.5:8080", 0.5, False), ("DROP", "10.244.2.5:8080", 0.5, False)}
    assert all(o.hops[-1].rule == "policy drop" for o in result.outcomes)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{", "not valid JSON"),
        ('{"x": 1}', 'no top-level "nftables" list'),
    ],
)
def test_bad_input_is_one_line(text: str, said: str) -> None:
    with pytest.raises(NftError, match=said):
        parse(text)


def test_odd_objects_are_warnings_not_crashes(tmp_path: Path) -> None:
    text = json.dumps({"nftables": [{"chain": {"family": "ip"}}, [1], {"rule": {"family": "ip", "table": "x",
                                                                            "chain": "y", "expr": []}}]})  # fmt: skip
    rs = parse(text)
    assert len(rs.warnings) == 3
    f = tmp_path / "r.json"
    f.write_text('{"nftables": [{"table": ')
    with pytest.raises(SourceError, match="not valid JSON"):
        from_ruleset(f, [])


# ---------------------------------------------------------------------------- clew explain service


def test_explain_kube_proxy_layout_tree_shares_and_masquerade() -> None:
    from clew.trace.explain_nft import explain_service_nft

    nft = kube_proxy().nft
    assert nft is not None
    (p,) = explain_service_nft(nft, "ns4/svc4").ports
    assert {f["kind"] for f in p.frontends} == {"cluster IP", "external IP / LB IP"}
    (chain,) = p.chains
    assert [(b.endpoint, b.share) for b in chain.branches] == [("10.180.0.4:80", 0.5), ("10.180.0.5:80", 0.5)]
    assert chain.masquerade == ["ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade"]
    (svc5,) = explain_service_nft(nft, "ns5/svc5:p80").ports
    assert svc5.chains[0].affinity_seconds == 10800
    assert any(f["chain"] == "firewall-ips" for f in svc5.filters)
    assert any("203.0.113.0/25 drop" in line for line in svc5.external)
    (svc2,) = explain_service_nft(nft, "ns2/svc2").ports
    assert {(f["chain"], f["verdict"]) for f in svc2.filters} == {("no-endpoint-services", "DROP"),
                                                                  ("no-endpoint-nodeports", "DROP")}  # fmt: skip


def test_explain_clew_layout_tree_shares_and_masquerade() -> None:
    from clew.trace.explain_nft import explain_service_nft

    golden = Path(__file__).parents[1] / "golden" / "rendered" / "upstream-overall_iptables_rules_nfacct.nft.json"
    nft = parse(golden.read_text())
    (p,) = explain_service_nft(nft, "ns4/svc4:p80").ports
    assert {f["address"] for f in p.frontends} == {"172.30.0.44:80/tcp", "192.168.99.33:80/tcp"}
    for chain in p.chains:
        assert [(b.endpoint, b.share) for b in chain.branches] == [("10.180.0.4:80", 0.5), ("10.180.0.5:80", 0.5)]
    assert {m for c in p.chains for m in c.masquerade} == {
        "@cluster-masq: masqueraded unless the source is a pod (ClusterIP)",
        "@external-masq: always masqueraded (externalIP/LB IP, eTP=Cluster)",
    }
    (svc2,) = explain_service_nft(nft, "ns2/svc2").ports
    assert {(f["chain"], f["verdict"]) for f in svc2.filters} == {
        ("no-endpoint-external-drop", "DROP"),
        ("no-endpoint-nodeports-drop", "DROP"),
    }
    assert not explain_service_nft(nft, "ns9/none").ports


def test_ct_state_and_status_flags() -> None:
    """clew's "block incoming localnet connections" rule: flags with a mask and a set."""
    ct = {"ct": {"key": "status"}}
    rule_exprs = [
        match(DADDR, {"prefix": {"addr": "10.1.0.0", "len": 16}}),
        match({"ct": {"key": "state"}}, {"set": ["established", "related"]}, "!="),
        match({"&": [ct, "dnat"]}, 0),
        {"drop": None},
    ]
    v = view_of(doc(table(), chain("fw", "forward"), rule("fw", *rule_exprs)))
    result = forwarded(v)
    assert [o.verdict for o in result.outcomes] == ["DROP"] and not result.warnings, format_trace(result)
    later = trace(v, Packet("10.0.0.5", "10.1.0.9", dport=80, iif="eth0", ctstate="ESTABLISHED"))
    assert [o.verdict for o in later.outcomes] == ["ACCEPT"]


def test_fib_reverse_path_filter_from_the_routes() -> None:
    """``fib saddr . iif oif missing drop`` (rpfilter in nft): decided from the routes when given,
    an assumption when not."""
    import ipaddress

    from clew.trace.node_view import Route

    rpf = match({"fib": {"result": "oif", "flags": ["saddr", "iif"]}}, False)
    text = doc(table(), chain("pre", "prerouting", -300), rule("pre", rpf, {"drop": None}))
    v = view_of(text)
    v.routes = [
        Route(ipaddress.IPv4Network("10.0.0.0/8"), dev="eth1"),
        Route(ipaddress.IPv4Network("0.0.0.0/0"), dev="eth0", gateway="192.168.0.1"),
    ]
    assert [o.verdict for o in trace(v, Packet("10.0.0.5", "8.8.8.8", iif="eth1")).outcomes] == ["ACCEPT"]
    spoofed = trace(v, Packet("10.0.0.5", "8.8.8.8", iif="eth0")).outcomes
    assert [o.verdict for o in spoofed] == ["DROP"]  # the way back to 10.0.0.5 is eth1, not eth0
    unknown = trace(view_of(text), Packet("10.0.0.5", "8.8.8.8", iif="eth0")).outcomes
    assert any("fib" in a.what for o in unknown for a in o.assumptions)
    # without routes the reverse path is assumed valid (as for -m rpfilter): not dropped, and said so
    assert [o.verdict for o in unknown] == ["ACCEPT"]
    assert any("reverse path of 10.0.0.5 is assumed valid" in a.what for o in unknown for a in o.assumptions)
