"""The tracer's JSON fixtures of clew's nftables goldens are what nft makes of the goldens.

tests/golden/test_flows_nft.py traces ``rendered/<scenario>.nft.json`` (no root needed); this
test loads each ``rendered/<scenario>.nft`` into a throwaway namespace, lists it with
``nft -j list ruleset`` and requires the stored JSON to be the same (handles aside). After a
renderer change (``pytest tests/golden --update-golden``), refresh them with
``CLEW_UPDATE_NFT_JSON=1 pytest tests/kernel/test_trace_nft_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clew.kernel import netns

pytestmark = pytest.mark.kernel

RENDERED = Path(__file__).resolve().parents[1] / "golden" / "rendered"
GOLDENS = sorted(RENDERED.glob("*.nft"))


def _plain(doc: Any) -> Any:
    """The listing without what differs between two loads (handles, nft's version line)."""
    if isinstance(doc, dict):
        return {k: _plain(v) for k, v in doc.items() if k != "handle"}
    if isinstance(doc, list):
        return [_plain(x) for x in doc if not (isinstance(x, dict) and "metainfo" in x)]
    return doc


@pytest.mark.parametrize("golden", GOLDENS, ids=[g.stem for g in GOLDENS])
def test_json_fixture_is_nfts_listing_of_the_golden(nft_ns: str, golden: Path) -> None:
    netns.run(nft_ns, ["nft", "flush", "ruleset"])
    netns.run(nft_ns, ["nft", "-f", "-"], input=golden.read_text())
    listed = netns.run(nft_ns, ["nft", "-j", "list", "ruleset"]).stdout
    fixture = golden.with_name(golden.name + ".json")
    if os.environ.get("CLEW_UPDATE_NFT_JSON") == "1":
        fixture.write_text(json.dumps(json.loads(listed), separators=(",", ":")))
    assert fixture.exists(), f"no {fixture.name}: run CLEW_UPDATE_NFT_JSON=1 pytest {__file__}"
    assert _plain(json.loads(fixture.read_text())) == _plain(json.loads(listed)), (
        f"{fixture.name} is stale: run CLEW_UPDATE_NFT_JSON=1 pytest {__file__}"
    )
