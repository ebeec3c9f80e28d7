"""Whole renders: byte for byte against reviewed files, and rule for rule against kube-proxy.

* ``rendered/<scenario>.iptables`` is clew's full render of each scenario, reviewed like code
  and refreshed only with ``--update-golden``.
* For scenarios taken from kube-proxy's unit tests, the render must hold exactly the rules of
  kube-proxy's expected restore input: the same chains, and in every chain the same rules in
  the same order (kube-proxy itself orders Services randomly, so only in-chain order counts).
"""

from __future__ import annotations

import difflib

import pytest
from scenario import RENDERED, Scenario, differences, parse_restore, scenarios

SCENARIOS = scenarios()
UPSTREAM = [s for s in SCENARIOS if s.expected is not None]


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 15
    assert len(UPSTREAM) >= 15


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_render_matches_golden_file(scenario: Scenario, request: pytest.FixtureRequest) -> None:
    text = scenario.render().text()
    golden = RENDERED / f"{scenario.name}.iptables"
    if request.config.getoption("--update-golden"):
        RENDERED.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}; run pytest tests/golden --update-golden and review it"
    want = golden.read_text()
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), "golden", "render"))
        pytest.fail(f"render of {scenario.name} differs from {golden.name}:\n{diff}")


@pytest.mark.parametrize("scenario", UPSTREAM, ids=[s.name for s in UPSTREAM])
def test_render_holds_exactly_kube_proxys_rules(scenario: Scenario) -> None:
    assert scenario.expected is not None
    problems = differences(scenario.expected.read_text(), scenario.comparable_render())
    assert not problems, f"{scenario.name} vs kube-proxy ({scenario.doc['source']['test']}):\n" + "\n".join(problems)


def test_render_is_deterministic() -> None:
    for scenario in SCENARIOS[:5]:
        assert scenario.render().text() == scenario.render().text()


# The comparison itself must be able to fail.
BASE = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
-A KUBE-SERVICES -j KUBE-SVC-A
-A KUBE-SVC-A -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-1
-A KUBE-SVC-A -j KUBE-SEP-2
COMMIT
"""


def test_differences_ignores_order_across_chains_and_whitespace() -> None:
    moved = BASE.replace("-A KUBE-SERVICES -j KUBE-SVC-A\n", "").replace(
        "COMMIT", "-A  KUBE-SERVICES   -j KUBE-SVC-A\nCOMMIT"
    )
    assert differences(BASE, moved) == []


def test_differences_sees_order_within_a_chain() -> None:
    first = "-A KUBE-SVC-A -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-1\n"
    second = "-A KUBE-SVC-A -j KUBE-SEP-2\n"
    swapped = BASE.replace(first + second, second + first)
    assert "(same rules, different order)" in "\n".join(differences(BASE, swapped))


def test_differences_sees_missing_chain_and_changed_rule() -> None:
    changed = BASE.replace(":KUBE-SVC-A - [0:0]\n", "").replace("0.5000000000", "0.3333333333")
    found = "\n".join(differences(BASE, changed))
    assert "chain KUBE-SVC-A missing" in found and "+ -m statistic --mode random --probability 0.3333333333" in found


def test_parse_restore_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unexpected restore line"):
        parse_restore("*nat\n-I FOO\nCOMMIT\n")
