"""``clew bench podnet`` end to end, short: four paths measured (three without BIRD), everything
removed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from labkit import clew

from clew.kernel import netns

pytestmark = pytest.mark.lab
BENCH_NS = re.compile(r"^b[0-9a-f]{4}(-plain-|[hvb]-lab-)")  # b1a2b-plain-a, b1a2bv-lab-n1


def test_bench_podnet_measures_every_path_and_cleans_up() -> None:
    before = set(netns.list_names())
    proc = clew("bench", "podnet", "--seconds", "0.3", "--pings", "50", "--rounds", "1", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    results = {r["path"]: r for r in doc["results"]}
    with_bgp = shutil.which("bird") is not None
    assert list(results) == ["plain", "host-gw", "vxlan", *(["bgp"] if with_bgp else [])]
    assert [results[p]["mtu"] for p in results] == [1500, 1500, 1450, *([1500] if with_bgp else [])]
    for r in results.values():
        assert r["gbit_s"] > 0 and 0 < r["rtt_p50_us"] <= r["rtt_p99_us"], r
    assert results["plain"]["vs_plain"] == 1.0
    left = {n for n in set(netns.list_names()) - before if BENCH_NS.match(n)}
    assert not left, f"bench namespaces left behind: {left}"
    servers = [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"clew.bench.netperf" in _read(p)]
    assert not servers, f"netperf processes left behind: {servers}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile
        return b""
