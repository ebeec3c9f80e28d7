"""Every nftables-mode golden render loads into a real kernel, and reads back.

For each ``tests/golden/rendered/*.nft``: ``nft -c -f`` accepts it, ``nft -f`` loads it into a
throwaway namespace (replacing the previous scenario's table: the script's own ``add table`` +
``delete table`` prefix; the listing holds exactly the script's chains), ``nft list table ip
clew`` prints it, and what nft prints is itself accepted again (``nft -c -f``) — so nothing in
the layout only half-works in nft 1.0.6.
Packets through these rules are tests/kernel/test_proxy_*.py's business.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clew.kernel import netns

pytestmark = pytest.mark.kernel

RENDERED = Path(__file__).resolve().parents[1] / "golden" / "rendered"
GOLDENS = sorted(RENDERED.glob("*.nft"))


def test_there_is_a_golden_per_scenario() -> None:
    assert len(GOLDENS) >= 15


@pytest.mark.parametrize("golden", GOLDENS, ids=[g.stem for g in GOLDENS])
def test_golden_checks_loads_and_reads_back(nft_ns: str, golden: Path) -> None:
    text = golden.read_text()
    checked = netns.run(nft_ns, ["nft", "-c", "-f", "-"], input=text, check=False)
    assert checked.returncode == 0, f"nft -c refused {golden.name}:\n{checked.stderr}"
    loaded = netns.run(nft_ns, ["nft", "-f", "-"], input=text, check=False)
    assert loaded.returncode == 0, f"nft -f refused {golden.name}:\n{loaded.stderr}"
    listed = netns.run(nft_ns, ["nft", "list", "table", "ip", "clew"], check=False)
    assert listed.returncode == 0, listed.stderr
    assert "chain services" in listed.stdout and "chain masquerading" in listed.stdout
    chains = sum(line.startswith("add chain ") for line in text.splitlines())
    listed_chains = sum(line.strip().startswith("chain ") for line in listed.stdout.splitlines())
    assert listed_chains == chains, "the table holds chains the script did not add (not replaced?)"
    again = netns.run(nft_ns, ["nft", "-c", "-f", "-"], input=listed.stdout, check=False)
    assert again.returncode == 0, f"nft cannot read back its own listing of {golden.name}:\n{again.stderr}"
    tables = netns.run(nft_ns, ["nft", "list", "tables"]).stdout.split("\n")
    assert [t for t in tables if t.strip()] == ["table ip clew"], "the script made a table that is not clew's"
