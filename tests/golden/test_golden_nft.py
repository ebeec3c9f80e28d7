"""nftables-mode renders of every golden scenario, byte for byte against reviewed files.

``rendered/<scenario>.nft`` is the ``nft -f`` script clew loads for the scenario's objects
(the same ones as ``rendered/<scenario>.iptables``), refreshed only with ``--update-golden``
and reviewed like code. That each one loads into a kernel is tests/kernel/test_nft_render_loads.py.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from nft_scenario import SUFFIX, golden_nft, render_nft
from scenario import RENDERED, Scenario, scenarios

from clew.proxy.nftables.render import script

SCENARIOS = scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_nft_render_matches_golden_file(scenario: Scenario, request: pytest.FixtureRequest) -> None:
    rendered = render_nft(scenario)
    assert rendered.rejected == (), f"{scenario.name}: {rendered.rejected}"
    text = script(rendered)
    golden = Path(golden_nft(scenario.name))
    if request.config.getoption("--update-golden"):
        RENDERED.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}; run pytest tests/golden --update-golden and review it"
    want = golden.read_text()
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), "golden", "render"))
        pytest.fail(f"nftables render of {scenario.name} differs from {golden.name}:\n{diff}")


def test_every_iptables_golden_has_an_nft_golden_and_no_stale_one() -> None:
    iptables = {p.stem for p in RENDERED.glob("*.iptables")}
    nft = {p.name.removesuffix(SUFFIX) for p in RENDERED.glob(f"*{SUFFIX}")}
    assert iptables == nft == {s.name for s in SCENARIOS}


def test_nft_render_is_deterministic() -> None:
    for scenario in SCENARIOS[:5]:
        assert script(render_nft(scenario)) == script(render_nft(scenario))
