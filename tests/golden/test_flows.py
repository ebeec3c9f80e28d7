"""Flow tables: every golden scenario, packet by packet, through clew's tracer.

For each scenario the node is its standalone render plus addresses and a small routing table
(see flows.py). Packets come from the scenario's `PortPolicy` list (ClusterIP from a pod, the
node, outside and the endpoint itself; NodePort on every node IP from outside, and from a pod,
the node and localhost; externalIPs and LoadBalancer IPs from outside, inside and outside the
source ranges, a pod and the node; an unused port and protocol on each ClusterIP). What should
happen comes from `flows.Oracle`, which knows kube-proxy's semantics and the policy, never the
rules. A failure prints the scenario's whole table, failing rows marked and explained.
"""

from __future__ import annotations

import functools
from collections import Counter

import pytest
from flows import OUTSIDE, Check, Row, build_node, node_for, run, scenario_flows, snapshot_of, table
from scenario import Scenario, scenarios

from clew.netfilter.iptables_save import parse
from clew.proxy.policy import decide
from clew.trace.engine import trace
from clew.trace.node_view import NodeView
from clew.trace.packet import Packet

SCENARIOS = scenarios()

RECURSION = (
    "tracer: walk_iptables.Walker.walk recurses once per statistic rule it passes "
    "(out.extend(self.walk(..., i + 1, ...)) on the not-taken branch), so a KUBE-SVC chain with "
    "~1000 endpoints exceeds Python's recursion limit: RecursionError instead of a trace"
)
KNOWN_BUGS = {}
PARAMS = [pytest.param(s, id=s.name, marks=KNOWN_BUGS.get(s.name, ())) for s in SCENARIOS]
WORKING = [s for s in SCENARIOS if s.name not in KNOWN_BUGS]


@functools.cache
def checks_of(name: str) -> list[Check]:
    scenario = next(s for s in SCENARIOS if s.name == name)
    node, policies = node_for(scenario)
    return run(node, scenario_flows(node, policies))


@pytest.mark.parametrize("scenario", PARAMS)
def test_flow_table(scenario: Scenario) -> None:
    checks = checks_of(scenario.name)
    assert checks, f"{scenario.name}: no packets generated"
    assert all(c.ok for c in checks), table(checks, title=f"{scenario.name} ({scenario.doc.get('description', '')})")


def test_flow_tables_cover_every_kind_of_packet_and_outcome() -> None:
    """The tables are only worth something if they reach every branch of the oracle."""
    checks = [c for s in WORKING for c in checks_of(s.name)]
    assert len(checks) >= 400, len(checks)
    kinds = Counter(c.flow.kind.split(" from ")[0].split(" on ")[0].split(" ")[0] for c in checks)
    for kind in ("ClusterIP", "NodePort", "externalIP", "LB", "ClusterIP,"):
        assert kinds[kind] > 0, kinds
    senders = {c.flow.kind.split(" from ", 1)[-1] for c in checks}
    wanted = {"a pod", "the node", "outside", "localhost", "its own endpoint (hairpin)"}
    wanted |= {"outside, in loadBalancerSourceRanges", "outside, not in loadBalancerSourceRanges"}
    assert wanted <= senders, wanted - senders
    rows = [r for c in checks for r in c.flow.expected]
    assert {r.verdict for r in rows} == {"ACCEPT", "DROP", "REJECT"}
    assert any(r.masq for r in rows) and any(r.verdict == "ACCEPT" and r.dnat and not r.masq for r in rows)
    assert any(r.verdict == "ACCEPT" and not r.dnat for r in rows), "no 'no Service' packet"
    hairpins = [c for c in checks if len({r.masq for r in c.flow.expected}) == 2]
    assert hairpins, "no packet where only the DNAT back to the sender is masqueraded"
    assert any(len(c.flow.expected) >= 3 for c in checks), "no Service with three or more endpoints"


# The comparison itself must be able to fail: break a render in small ways, see rows fail.
OVERALL = next(s for s in SCENARIOS if s.name == "upstream-overall_iptables_rules_nfacct")


def _failing(old: str, new: str) -> dict[tuple[str, str, int], list[str]]:
    node, policies = node_for(OVERALL)
    text = OVERALL.render().text(standalone=True)
    assert old in text, old
    broken = build_node(
        text.replace(old, new),
        node.config,
        node_ips=node.node_ips,
        pod_net=node.pod_net,
        taken=[e.ip for p in policies for e in p.endpoints],
    )
    checks = run(broken, scenario_flows(node, policies))
    return {(c.flow.kind, c.flow.dst, c.flow.dport): c.problems for c in checks if not c.ok}


def test_a_wrong_endpoint_choice_fails() -> None:
    # svc4's first endpoint is never chosen: 10.180.0.5 gets everything
    sep = "-j KUBE-SEP-UKSFD7AGPMPPLUHC"
    bad = _failing(f"--probability 0.5000000000 {sep}", f"--probability 0.0 {sep}")
    assert bad[("ClusterIP from a pod", "172.30.0.44", 80)] == ["DNAT targets or probabilities differ"]


def test_a_missing_masquerade_fails() -> None:
    # svc3's external traffic is no longer masqueraded
    rule = (
        '-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations"'
        " -j KUBE-MARK-MASQ\n"
    )
    bad = _failing(rule, "")
    assert bad[("NodePort on 192.168.0.2 from outside", "192.168.0.2", 3003)] == ["masquerade differs"]
    assert ("ClusterIP from the node", "172.30.0.43", 80) not in bad


def test_a_missing_firewall_drop_fails() -> None:
    # without KUBE-PROXY-FIREWALL's DROP, blocked LB clients get through un-DNATed
    rule = (
        '-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C"'
        " -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP\n"
    )
    bad = _failing(rule, "")
    assert bad[("LB IP 5.6.7.8 from outside, not in loadBalancerSourceRanges", "5.6.7.8", 80)][0] == "verdicts differ"


def test_the_oracle_uses_the_policy_not_the_rules() -> None:
    """Same decisions, same rows: the oracle's expectations do not change with the render."""
    node, policies = node_for(OVERALL)
    again = decide(snapshot_of(OVERALL), OVERALL.config())
    assert [f.expected for f in scenario_flows(node, policies)] == [f.expected for f in scenario_flows(node, again)]
    first = next(f for f in scenario_flows(node, policies) if f.kind == "ClusterIP from outside")
    assert first.src == OUTSIDE and first.expected == frozenset({Row("ACCEPT", "10.180.0.1:80", 1.0, True)})


# Known bug, minimal reproduction: many endpoints exhaust Python's recursion limit.
def _many_endpoints(n: int) -> str:
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SVC-X - [0:0]"]
    lines += [f":KUBE-SEP-{i} - [0:0]" for i in range(n)]
    lines.append("-A PREROUTING -d 172.30.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-X")
    for i in range(n):
        stat = f"-m statistic --mode random --probability {1 / (n - i):.10f} " if i < n - 1 else ""
        lines.append(f"-A KUBE-SVC-X {stat}-j KUBE-SEP-{i}")
        lines.append(f"-A KUBE-SEP-{i} -p tcp -m tcp -j DNAT --to-destination 10.1.{i // 250}.{i % 250 + 1}:80")
    return "\n".join([*lines, "COMMIT", ""])


@pytest.mark.parametrize(
    "n",
    [
        500,
        1001,
    ],
)
def test_a_service_with_many_endpoints_traces(n: int) -> None:
    view = NodeView(ruleset=parse(_many_endpoints(n)))
    result = trace(view, Packet("203.0.113.9", "172.30.0.1", iif="eth0"))
    assert len(result.outcomes) == n
    assert abs(sum(o.probability for o in result.outcomes) - 1) < 1e-6
