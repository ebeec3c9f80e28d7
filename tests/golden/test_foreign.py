"""The tracer on rules people really have: Docker, flannel, ufw, odd matches, damaged dumps.

The rulesets in ``foreign/`` are what ``iptables-save`` (1.8.9, nf_tables) printed after their
inputs in ``foreign/source/`` were loaded into a throwaway network namespace
(``foreign/source/capture.sh``; ``truncated.iptables`` is derived from one of them and is refused
by ``iptables-restore``). The node around them is node-a of a two-node flannel cluster:

    node-a  eth0 192.168.1.11/24, cni0 10.244.1.1/24 (bridge), flannel.1 10.244.1.0/32 (vxlan),
            docker0 172.17.0.1/16 (Docker's bridge, down); pod shop/api 10.244.1.5 on cni0
    node-b  192.168.1.12, pods 10.244.2.0/24 behind VTEP ae:12:34:56:78:02; pod shop/web 10.244.2.7

The failure modelled is netfilter.md §11 row 1, "NodePort/ClusterIP works only on the pod's
node: FORWARD policy DROP (Docker)", kubernetes #39658 and #58908: Docker (>= 1.13, moby PR
#28257) sets ``:FORWARD DROP``; a NodePort answers on the node that runs the pod and times out on
every other node. In #39658 (Kubernetes 1.5, Canal) kube-proxy had no FORWARD rules at all;
#58908 (1.9, Calico) shows the same symptom with KUBE-FORWARD in place. Since kube-proxy PR
#52569 (1.8/1.9), KUBE-FORWARD accepts packets carrying the masquerade mark 0x4000,
and a NodePort packet with externalTrafficPolicy Cluster *is* marked (KUBE-EXT → KUBE-MARK-MASQ),
so on the ingress node it is forwarded (test_nodeport_to_remote_endpoint_*). The mark lives in
the node's skb only: the packet that the ingress node masquerades into VXLAN arrives at the
pod's node unmarked and NEW, so KUBE-FORWARD's mark rule and its RELATED,ESTABLISHED rule pass
it by, Docker's DOCKER-USER/DOCKER-FORWARD only handle docker0, and the FORWARD policy drops it —
on the pod's node, for every client that used another node's NodePort. Hitting the pod's own
node works, because there kube-proxy DNATs and marks the packet itself. That is the situation of
these fixtures: flanneld runs with ``--iptables-forward-rules=false`` (no FLANNEL-FWD, as before
flannel PR #872), which is what flannel PR #872's FLANNEL-FWD (``flannel_fwd_accept``) fixes.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clew.netfilter.iptables_save import parse
from clew.trace.engine import trace
from clew.trace.node_view import Address, FdbEntry, Link, Neighbour, NodeView, Route
from clew.trace.packet import Hop, Outcome, Packet, TraceResult
from clew.trace.sources import from_ruleset
from clew.trace.story import format_trace

FOREIGN = Path(__file__).parent / "foreign"
NET = ipaddress.IPv4Network
CLIENT = "192.168.1.50"  # an external client on node-a's LAN
NODE_A = "192.168.1.11"
NODE_B_VTEP = "10.244.2.0"  # node-b's flannel.1 address: the source node-b masquerades NodePort hits to
WEB_POD, API_POD = "10.244.2.7", "10.244.1.5"
WEB_CLUSTER_IP = "10.96.0.50"
FORWARD_POLICY_DROP = Hop("FORWARD", "filter", "FORWARD", "policy DROP", "DROP")


def text(name: str) -> str:
    return (FOREIGN / name).read_text(encoding="utf-8")


def line_of(name: str, needle: str) -> int:
    """1-based number of the first line of fixture ``name`` that contains ``needle``."""
    return next(n for n, line in enumerate(text(name).splitlines(), 1) if needle in line)


def node_a(name: str) -> NodeView:
    """node-a with the rules of ``foreign/<name>``: addresses, routes and links as ``ip -j`` gives them.
    The parser's warnings go into the view, as `from_files` and `from_ruleset` do."""
    ruleset = parse(text(name), origin=name)
    return NodeView(
        ruleset=ruleset,
        warnings=list(ruleset.warnings),
        addresses=[
            Address("lo", "127.0.0.1", 8),
            Address("eth0", NODE_A, 24),
            Address("flannel.1", "10.244.1.0", 32),
            Address("cni0", "10.244.1.1", 24),
            Address("docker0", "172.17.0.1", 16),
        ],
        routes=[
            Route(NET("127.0.0.0/8"), type="local", dev="lo", table="local"),
            Route(NET(f"{NODE_A}/32"), type="local", dev="eth0", table="local"),
            Route(NET("10.244.1.0/32"), type="local", dev="flannel.1", table="local"),
            Route(NET("10.244.1.1/32"), type="local", dev="cni0", table="local"),
            Route(NET("172.17.0.1/32"), type="local", dev="docker0", table="local"),
            Route(NET("0.0.0.0/0"), dev="eth0", gateway="192.168.1.1"),
            Route(NET("192.168.1.0/24"), dev="eth0", prefsrc=NODE_A),
            Route(NET("10.244.1.0/24"), dev="cni0", prefsrc="10.244.1.1"),
            Route(NET("10.244.2.0/24"), dev="flannel.1", gateway=NODE_B_VTEP, onlink=True),
            Route(NET("172.17.0.0/16"), dev="docker0", prefsrc="172.17.0.1"),
        ],
        links={
            "lo": Link("lo", "loopback", mtu=65536),
            "eth0": Link("eth0", "", mac="52:54:00:12:34:11"),
            "flannel.1": Link(
                "flannel.1", "vxlan", mtu=1450, mac="ae:12:34:56:78:01", vxlan_id=1, vxlan_port=8472, vxlan_local=NODE_A
            ),
            "cni0": Link("cni0", "bridge", mtu=1450, mac="0a:58:0a:f4:01:01"),
            "veth0a1b2c3d": Link("veth0a1b2c3d", "veth", mtu=1450, master="cni0"),
            "docker0": Link("docker0", "bridge", up=False),
        },
        neighbours=[
            Neighbour(NODE_B_VTEP, "flannel.1", "ae:12:34:56:78:02", "PERMANENT"),
            Neighbour(API_POD, "cni0", "0a:58:0a:f4:01:05", "REACHABLE"),
        ],
        fdb=[
            FdbEntry("ae:12:34:56:78:02", "flannel.1", "192.168.1.12"),
            FdbEntry("0a:58:0a:f4:01:05", "veth0a1b2c3d", None),
        ],
        node_names={"192.168.1.12": "node-b"},
        name="node-a",
    )


def only(result: TraceResult) -> Outcome:
    assert len(result.outcomes) == 1, format_trace(result)
    return result.outcomes[0]


# Packets on node-a.
NODEPORT_TO_REMOTE = Packet(CLIENT, NODE_A, dport=30080, iif="eth0")  # shop/web, endpoint on node-b
NODEPORT_TO_LOCAL = Packet(CLIENT, NODE_A, dport=30081, iif="eth0")  # shop/api, endpoint here
# A client used node-b's NodePort 30081: node-b DNATed to shop/api's pod here and masqueraded the
# packet to its flannel.1 address. iif is left to the tracer (the return route is flannel.1).
VIA_NODE_B = Packet(NODE_B_VTEP, API_POD, dport=8080)
POD_TO_REMOTE_POD = Packet(API_POD, WEB_POD, dport=8080)
POD_TO_CLUSTER_IP = Packet(API_POD, WEB_CLUSTER_IP, dport=80)


# ---------------------------------------------------------------- the fixtures themselves

CAPTURED = ["docker_kube_proxy", "flannel_fwd_accept", "ufw_like", "unknown_matches"]


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_fixtures_are_iptables_save_output_the_parser_reads_cleanly(name: str) -> None:
    body = text(f"{name}.iptables")
    lines = body.splitlines()
    assert lines[0].startswith("# Generated by iptables-save v1.8.9 (nf_tables) on ")
    assert lines[-2:][0] == "COMMIT" and lines[-1].startswith("# Completed on ") and body.endswith("\n")
    ruleset = parse(body, origin=name)
    assert ruleset.warnings == []
    assert "filter" in ruleset.tables


def test_the_two_docker_fixtures_differ_only_by_flannels_forward_rules() -> None:
    def rules(name: str) -> list[str]:
        return [ln for ln in text(name).splitlines() if not ln.startswith("#")]

    dropped, accepted = rules("docker_kube_proxy.iptables"), rules("flannel_fwd_accept.iptables")
    added = [ln for ln in accepted if ln not in dropped]
    assert [ln for ln in accepted if ln not in added] == dropped
    assert added == [
        ":FLANNEL-FWD - [0:0]",
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
    ]
    # Docker's chains and policy, kube-proxy's, flannel's masquerade: all there in both.
    for needle in (":FORWARD DROP", "-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-FORWARD",
                   "-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1", "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0",
                   '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
                   "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG"):  # fmt: skip
        assert any(needle in ln for ln in dropped), needle


KERNEL_TOOLS = ("ip", "ipset", "iptables-restore", "iptables-save")
NO_KERNEL = os.geteuid() != 0 or any(shutil.which(t) is None for t in KERNEL_TOOLS)


@pytest.fixture
def netns() -> Iterator[str]:
    """A throwaway network namespace, deleted afterwards whatever happens."""
    name = f"clewf-{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in(ns: str, *cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL, reason="needs root, ip, ipset, iptables-restore and iptables-save")
@pytest.mark.parametrize("name", CAPTURED)
def test_captured_fixtures_load_and_save_back_unchanged(name: str, netns: str) -> None:
    if name == "unknown_matches":  # -m set needs the set to exist
        assert _in(netns, "ipset", "create", "blocklist", "hash:net").returncode == 0
    loaded = _in(netns, "iptables-restore", stdin=text(f"{name}.iptables"))
    assert loaded.returncode == 0, loaded.stderr
    saved = _in(netns, "iptables-save")
    assert saved.returncode == 0, saved.stderr

    def rules(body: str) -> list[str]:
        return [ln for ln in body.splitlines() if not ln.startswith("#")]

    assert rules(saved.stdout) == rules(text(f"{name}.iptables"))


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL, reason="needs root, ip, ipset, iptables-restore and iptables-save")
def test_truncated_fixture_is_refused_by_iptables_restore(netns: str) -> None:
    proc = _in(netns, "iptables-restore", "--test", stdin=text("truncated.iptables"))
    assert proc.returncode != 0


# ---------------------------------------------------------------- Docker + kube-proxy + flannel, FORWARD DROP


def test_nodeport_to_remote_endpoint_is_forwarded_by_kube_forwards_mark_rule() -> None:
    """eTP=Cluster marks the packet 0x4000; KUBE-FORWARD accepts it before the policy is reached."""
    o = only(trace(node_a("docker_kube_proxy.iptables"), NODEPORT_TO_REMOTE))
    assert (o.verdict, o.service, o.dnat) == ("ACCEPT", "shop/web:http", f"{WEB_POD}:8080")
    accepted_by = [h for h in o.hops if h.hook == "FORWARD" and h.action == "ACCEPT"]
    assert [(h.table, h.chain) for h in accepted_by] == [("filter", "KUBE-FORWARD")]
    assert "--mark 0x4000/0x4000" in accepted_by[0].rule
    assert FORWARD_POLICY_DROP not in o.hops
    # masqueraded by kube-proxy to node-a's flannel.1 address, then VXLAN to node-b
    assert (o.masquerade, o.source_seen) == (True, "10.244.1.0")
    assert o.egress is not None
    assert (o.egress.kind, o.egress.node, o.egress.remote) == ("vxlan", "node-b", "192.168.1.12")


def test_nodeport_on_the_pods_own_node_works() -> None:
    o = only(trace(node_a("docker_kube_proxy.iptables"), NODEPORT_TO_LOCAL))
    assert (o.verdict, o.service, o.dnat) == ("ACCEPT", "shop/api:http", f"{API_POD}:8080")
    assert any(h.chain == "KUBE-FORWARD" and h.action == "ACCEPT" for h in o.hops)
    assert o.egress is not None and (o.egress.kind, o.egress.dev) == ("bridge", "cni0")


def test_nodeport_via_another_node_is_dropped_on_the_pods_node_by_the_forward_policy() -> None:
    """kubernetes #39658/#58908: works on the pod's node only. The packet node-b forwarded over
    VXLAN carries no 0x4000 mark here and is NEW, so nothing in FORWARD accepts it."""
    result = trace(node_a("docker_kube_proxy.iptables"), VIA_NODE_B)
    o = only(result)
    assert result.entry.startswith(f"arrives from {NODE_B_VTEP} on flannel.1")
    assert o.verdict == "DROP"
    assert o.service is None and o.dnat is None
    assert o.hops[-1] == FORWARD_POLICY_DROP
    assert [h.hook for h in o.hops if not h.quiet] == ["routing", "FORWARD"]
    assert "to a pod on this node over bridge cni0" in next(h for h in o.hops if not h.quiet).action
    assert o.reason == "DROP by the FORWARD policy DROP in filter (FORWARD)"
    story = format_trace(result)
    assert "dropped (the client times out)" in story
    assert "filter/FORWARD" in story and "policy DROP" in story
    assert "why: DROP by the FORWARD policy DROP in filter (FORWARD)" in story
    assert result.warnings == []


@pytest.mark.parametrize(
    "packet", [POD_TO_REMOTE_POD, POD_TO_CLUSTER_IP], ids=["pod-to-remote-pod", "pod-to-clusterip-remote-endpoint"]
)
def test_unmarked_pod_traffic_is_dropped_by_the_forward_policy(packet: Packet) -> None:
    """Pod-sourced traffic is never marked (KUBE-SVC's ``! -s 10.244.0.0/16`` masquerade rule
    skips it), so without FLANNEL-FWD it dies at the policy too (flannel #609/#799/#834)."""
    result = trace(node_a("docker_kube_proxy.iptables"), packet)
    o = only(result)
    assert result.entry.startswith(f"arrives from {API_POD} on cni0")
    assert o.verdict == "DROP" and o.hops[-1] == FORWARD_POLICY_DROP
    if packet is POD_TO_CLUSTER_IP:
        assert (o.service, o.dnat) == ("shop/web:http", f"{WEB_POD}:8080")
    assert "policy DROP" in format_trace(result)


def test_the_drop_story_says_kube_forward_did_not_accept_it() -> None:
    story = format_trace(trace(node_a("docker_kube_proxy.iptables"), VIA_NODE_B))
    assert "KUBE-FORWARD" in story


# ---------------------------------------------------------------- the same node with FLANNEL-FWD


@pytest.mark.parametrize(
    "packet", [VIA_NODE_B, POD_TO_REMOTE_POD, POD_TO_CLUSTER_IP], ids=["via-node-b", "pod-to-pod", "pod-to-clusterip"]
)
def test_flannel_fwd_accepts_what_the_policy_dropped(packet: Packet) -> None:
    result = trace(node_a("flannel_fwd_accept.iptables"), packet)
    o = only(result)
    assert o.verdict == "ACCEPT"
    fwd = [h for h in o.hops if h.hook == "FORWARD"]
    assert fwd[-1].chain == "FLANNEL-FWD" and fwd[-1].action == "ACCEPT"
    assert "flanneld forward" in fwd[-1].rule
    assert FORWARD_POLICY_DROP not in o.hops
    # flannel's FLANNEL-POSTRTG returns for pod-network traffic: no masquerade
    assert not o.masquerade and o.source_seen == packet.src
    assert any(h.chain == "FLANNEL-POSTRTG" and h.action == "RETURN" for h in o.hops)
    assert o.egress is not None
    assert o.egress.kind == ("bridge" if packet is VIA_NODE_B else "vxlan")
    assert "delivered" in format_trace(result)


def test_flannel_fwd_does_not_change_the_nodeport_path_kube_forward_accepts_first() -> None:
    o = only(trace(node_a("flannel_fwd_accept.iptables"), NODEPORT_TO_REMOTE))
    fwd = [h for h in o.hops if h.hook == "FORWARD"]
    assert (fwd[-1].chain, fwd[-1].action) == ("KUBE-FORWARD", "ACCEPT")
    assert not any(h.chain == "FLANNEL-FWD" for h in o.hops)


def test_why_not_masqueraded_names_flannels_return_not_dockers_rule() -> None:
    o = only(trace(node_a("flannel_fwd_accept.iptables"), VIA_NODE_B))
    assert o.masquerade_skipped is not None
    assert "docker0" not in o.masquerade_skipped


# ---------------------------------------------------------------- ufw


def ufw_host() -> NodeView:
    return from_ruleset(FOREIGN / "ufw_like.iptables", ["192.0.2.10"])


def test_ufw_allowed_port_is_accepted_by_ufw_user_input() -> None:
    o = only(trace(ufw_host(), Packet("203.0.113.9", "192.0.2.10", dport=6443, iif="eth0")))
    assert o.verdict == "ACCEPT"
    assert (o.hops[-1].chain, o.hops[-1].action) == ("ufw-user-input", "ACCEPT")
    assert "--dport 6443" in o.hops[-1].rule
    assert [h.chain for h in o.hops if h.action.startswith("jump") and not h.quiet] == ["INPUT", "ufw-before-input"]


def test_ufw_other_port_falls_to_the_input_policy_drop() -> None:
    result = trace(ufw_host(), Packet("203.0.113.9", "192.0.2.10", dport=8080, iif="eth0"))
    o = only(result)
    assert o.verdict == "DROP"
    assert o.hops[-1] == Hop("INPUT", "filter", "INPUT", "policy DROP", "DROP")
    assert "why: DROP by the INPUT policy DROP in filter (INPUT)" in format_trace(result)
    # ufw's LOG rule is rate-limited (-m limit) and its broadcast test uses addrtype BROADCAST:
    # both assumptions are said, with the line of the rule.
    limit = line_of("ufw_like.iptables", "-A ufw-after-logging-input -m limit")
    broadcast = line_of("ufw_like.iptables", "-A ufw-after-input -m addrtype --dst-type BROADCAST")
    assert f"line {limit}: limit match in chain ufw-after-logging-input: assumed to match (a first packet)" in (
        result.warnings
    )
    # addrtype BROADCAST is modelled (a unicast destination is not broadcast): no assumption to say
    assert not any(w.startswith(f"line {broadcast}:") for w in result.warnings)


def test_ufw_limited_port_accepts_a_first_connection() -> None:
    o = only(trace(ufw_host(), Packet("203.0.113.9", "192.0.2.10", dport=22, iif="eth0")))
    assert o.verdict == "ACCEPT"
    assert o.hops[-1].chain == "ufw-user-limit-accept"


def test_ufw_rate_limit_is_not_called_client_ip_affinity() -> None:
    o = only(trace(ufw_host(), Packet("203.0.113.9", "192.0.2.10", dport=22, iif="eth0")))
    assert not any("ClientIP affinity" in note for note in o.notes), o.notes


# ---------------------------------------------------------------- matches and targets the tracer does not model


def host() -> NodeView:
    return from_ruleset(FOREIGN / "unknown_matches.iptables", ["192.0.2.10"])


UM = "unknown_matches.iptables"


def test_unknown_matches_warn_with_line_chain_and_assumed_branch_and_the_trace_goes_on() -> None:
    result = trace(host(), Packet("203.0.113.9", "192.0.2.10", dport=80, iif="eth0"))
    o = only(result)
    # the walk went past the -m string LOG rule and the unreadable ipset, into WEB-GUARD
    assert o.verdict == "ACCEPT"
    assert (o.hops[-1].chain, o.hops[-1].action) == ("WEB-GUARD", "ACCEPT")
    assert "--hashlimit-upto 50/sec" in o.hops[-1].rule
    string = line_of(UM, "-m string")
    ipset = line_of(UM, "--match-set blocklist")
    upto = line_of(UM, "--hashlimit-upto")
    assert result.warnings == [
        f"line {string}: unrecognised match -m string in chain PREROUTING: assumed to match",
        f"line {ipset}: ipset blocklist in chain INPUT cannot be read: assumed not to match",
        f"line {upto}: hashlimit match in chain WEB-GUARD: a first packet is assumed within the limit (so it matches)",
    ]
    story = format_trace(result)
    assert "Warnings (the trace made these assumptions):" in story
    assert all(f"  ! {w}" in story for w in result.warnings)


def test_owner_match_on_output_is_assumed_to_match_and_said() -> None:
    result = trace(host(), Packet("192.0.2.10", "198.51.100.7", dport=443))
    o = only(result)
    assert result.entry.startswith("is sent by a process on this node")
    assert o.verdict == "ACCEPT"
    owner = line_of(UM, "-m owner")
    assert result.warnings == [f"line {owner}: unrecognised match -m owner in chain OUTPUT: assumed to match"]
    # the assumed branch is visible: the MARK of the owner rule was applied
    assert any(h.chain == "OUTPUT" and h.table == "mangle" and h.action == "mark 0x0 → 0x21" for h in o.hops)


def test_ct_notrack_makes_the_packet_untracked_and_the_trace_goes_on() -> None:
    result = trace(host(), Packet("203.0.113.9", "192.0.2.10", proto="udp", dport=53, iif="eth0"))
    (o,) = result.outcomes
    notrack = line_of(UM, "-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack")
    assert any(h.line == notrack and h.action == "not tracked (ctstate UNTRACKED)" for h in o.hops)


def test_notracked_dns_query_is_accepted_by_the_untracked_rule() -> None:
    o = only(trace(host(), Packet("203.0.113.9", "192.0.2.10", proto="udp", dport=53, iif="eth0")))
    assert o.verdict == "ACCEPT"


def test_first_ssh_packet_is_not_above_the_hashlimit() -> None:
    o = only(trace(host(), Packet("203.0.113.9", "192.0.2.10", dport=22, iif="eth0")))
    assert o.verdict == "ACCEPT"


def test_addrtype_broadcast_does_not_match_a_unicast_forwarded_packet() -> None:
    rules = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m addrtype --dst-type BROADCAST -j DROP\nCOMMIT\n"
    view = NodeView(ruleset=parse(rules), addresses=[Address("eth0", NODE_A, 24)])
    o = only(trace(view, Packet(API_POD, WEB_POD, dport=8080, iif="cni0")))
    assert o.verdict == "ACCEPT"


def test_story_of_a_local_packet_reads_it_is_sent() -> None:
    story = format_trace(trace(host(), Packet("192.0.2.10", "198.51.100.7", dport=443)))
    assert "\nIt is sent by a process on this node from 192.0.2.10.\n" in story


# ---------------------------------------------------------------- a damaged dump

TR = "truncated.iptables"


def truncated_view() -> NodeView:
    return node_a(TR)


def test_truncated_dump_warns_with_line_numbers() -> None:
    warnings = truncated_view().ruleset.warnings
    body = text(TR)
    assert not body.endswith("\n") and "COMMIT" not in body.rsplit("*nat", 1)[1]
    last = len(body.splitlines())
    nat = line_of(TR, "*nat")
    expected = [
        f"{TR}:{line_of(TR, '*broute')}: unknown table 'broute'",
        f"{TR}:{line_of(TR, 'Another app is currently holding the xtables lock')}: unknown command 'Another'",
        f"{TR}:{last}: ",  # the line cut in half
        f"{TR}:{last}: table nat (opened at line {nat}) has no COMMIT",
    ]
    assert len(warnings) == len(expected), warnings
    for want, got in zip(expected, warnings, strict=True):
        assert got.startswith(want), (want, got)


def test_truncated_dump_keeps_what_was_before_the_cut_and_the_trace_runs() -> None:
    view = truncated_view()
    nat = view.ruleset.tables["nat"]
    assert "KUBE-NODEPORTS" in nat.chains
    services = nat.chains["KUBE-SERVICES"].rules
    assert [r.comment for r in services] == ["shop/api:http cluster IP", "shop/web:http cluster IP"]
    assert view.ruleset.chain("filter", "FORWARD") is not None
    assert "broute" not in view.ruleset.tables
    # The NodePort dispatch rule was the half line: no DNAT is invented, the packet is simply
    # delivered to node-a itself, and the warnings travel with the result.
    result = trace(view, NODEPORT_TO_REMOTE)
    o = only(result)
    assert (o.verdict, o.dnat, o.service) == ("ACCEPT", None, None)
    assert o.egress is not None and o.egress.kind == "local"
    assert result.warnings == view.ruleset.warnings
    assert "has no COMMIT" in format_trace(result)
    # the filter table is intact: the unmarked pod packet still meets the FORWARD policy
    assert only(trace(view, POD_TO_REMOTE_POD)).hops[-1] == FORWARD_POLICY_DROP


def test_truncated_dump_through_from_ruleset_prefixes_the_path() -> None:
    view = from_ruleset(FOREIGN / TR, [NODE_A])
    assert any(w.startswith(f"{FOREIGN / TR}:") and "unknown table 'broute'" in w for w in view.warnings)


# ---------------------------------------------------------------- the command line


def clew(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clew", "trace", "-v", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_traces_a_foreign_ruleset() -> None:
    ruleset = str(FOREIGN / "docker_kube_proxy.iptables")
    base = ["--ruleset", ruleset, "--local-ip", NODE_A]
    nodeport = clew(*base, "--src", CLIENT, "--dst", NODE_A, "--dport", "30080", "--iif", "eth0")
    assert nodeport.returncode == 0, nodeport.stderr
    assert "Service shop/web:http → 10.244.2.7:8080: delivered" in nodeport.stdout
    assert "filter/KUBE-FORWARD" in nodeport.stdout and "--mark 0x4000/0x4000" in nodeport.stdout
    dropped = clew(*base, "--src", NODE_B_VTEP, "--dst", API_POD, "--dport", "8080", "--iif", "flannel.1")
    assert dropped.returncode == 0, dropped.stderr
    assert "It arrives on flannel.1." in dropped.stdout
    assert "filter/FORWARD" in dropped.stdout and "policy DROP" in dropped.stdout
    assert "why: DROP by the FORWARD policy DROP in filter (FORWARD)" in dropped.stdout
    accepted = clew(
        "--ruleset", str(FOREIGN / "flannel_fwd_accept.iptables"), "--local-ip", NODE_A,
        "--src", NODE_B_VTEP, "--dst", API_POD, "--dport", "8080", "--iif", "flannel.1",
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert "filter/FLANNEL-FWD" in accepted.stdout and "delivered" in accepted.stdout


def test_cli_non_ipv4_source_is_one_line_and_exit_2() -> None:
    proc = clew(
        "--ruleset", str(FOREIGN / "docker_kube_proxy.iptables"), "--local-ip", NODE_A,
        "--src", "fd00::1", "--dst", NODE_A, "--dport", "30080", "--iif", "eth0",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == "clew: error: --src 'fd00::1' is not an IPv4 address"


def test_the_drop_names_the_accepting_rules_it_missed_and_the_condition_that_decided_each() -> None:
    """ "Did not match" names the rule and the condition: KUBE-FORWARD's mark rule (the packet's mark
    is 0x0 here, the mark did not cross VXLAN) and its conntrack rule (the packet is NEW)."""
    o = only(trace(node_a("docker_kube_proxy.iptables"), VIA_NODE_B))
    mark = line_of(
        "docker_kube_proxy.iptables", '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark'
    )
    assert o.not_accepted_by[:2] == [
        f"filter/KUBE-FORWARD line {mark}: -m mark --mark 0x4000/0x4000 [the packet: mark 0x0] did not match",
        f"filter/KUBE-FORWARD line {mark + 1}: -m conntrack --ctstate RELATED,ESTABLISHED [the packet: ctstate NEW]"
        " did not match",
    ]
    assert "not accepted by filter/KUBE-FORWARD" in format_trace(
        trace(node_a("docker_kube_proxy.iptables"), VIA_NODE_B)
    )
