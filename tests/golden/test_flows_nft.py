"""Flow tables in clew's nftables layout: every golden scenario, packet by packet, through the
tracer reading ``nft -j list ruleset``.

For each scenario the node is the one of test_flows.py (addresses, routes, pod bridge) with its
iptables render replaced by ``rendered/<scenario>.nft.json``: the golden nft script
(``rendered/<scenario>.nft``) loaded into a throwaway namespace and listed back by nft 1.0.6 as
JSON (tests/kernel/test_trace_nft_golden.py keeps the two in step). The packets and the expected
outcomes are test_flows.py's: `flows.Oracle` knows kube-proxy's semantics and the policy, never
the rules, so the same table must hold for either layout — except where clew's nftables layout
differs on purpose (proxy/nftables/README.md): NodePorts on 127.0.0.1 are off, as in kube-proxy's
nftables mode, so such a packet is never DNATed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from flows import Check, node_for, run, scenario_flows, table
from scenario import Scenario, scenarios

from clew.netfilter.nft_json import parse
from clew.netfilter.rules import Ruleset

RENDERED = Path(__file__).parent / "rendered"
SCENARIOS = scenarios()
LOCALHOST_NODEPORT = "NodePort on 127.0.0.1"  # off in the nftables layout (README: "Deliberate differences")


@functools.cache
def checks_of(name: str) -> list[Check]:
    scenario = next(s for s in SCENARIOS if s.name == name)
    node, policies = node_for(scenario)
    node.view.ruleset = Ruleset()
    node.view.nft = parse((RENDERED / f"{name}.nft.json").read_text(), origin=f"{name}.nft.json")
    return run(node, scenario_flows(node, policies))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_flow_table_nft(scenario: Scenario) -> None:
    checks = checks_of(scenario.name)
    assert checks, f"{scenario.name}: no packets generated"
    wrong = [c for c in checks if not c.ok and not c.flow.kind.startswith(LOCALHOST_NODEPORT)]
    assert not wrong, table(checks, title=f"{scenario.name} in clew's nftables layout")
    for c in checks:
        if c.flow.kind.startswith(LOCALHOST_NODEPORT):
            assert all(r.dnat == "" for r in c.got), table([c], title="localhost NodePorts are off")


def test_every_scenario_has_its_json() -> None:
    assert {s.name for s in SCENARIOS} <= {p.name.removesuffix(".nft.json") for p in RENDERED.glob("*.nft.json")}


def test_the_tables_are_not_vacuous() -> None:
    checks = [c for s in SCENARIOS for c in checks_of(s.name)]
    assert len(checks) >= 500, len(checks)
    verdicts = {r.verdict for c in checks for r in c.got}
    assert verdicts == {"ACCEPT", "DROP", "REJECT"}, verdicts
    assert any(r.masq for c in checks for r in c.got)
    assert any(0 < r.probability < 1 for c in checks for r in c.got)
