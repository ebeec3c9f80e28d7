"""``clew bench dataplane`` at a few Services: every target is reached through the node's rules
(a Service that did not DNAT would fail to connect: nothing listens on its ClusterIP), the
figures are there, and nothing is left behind."""

from __future__ import annotations

import importlib.util

import pytest

from clew.bench.dataplane import run
from clew.kernel import netns

pytestmark = pytest.mark.kernel

MODES = ["iptables", "nftables"]


@pytest.mark.parametrize("mode", MODES)
def test_bench_dataplane_connects_to_first_last_and_a_pod(mode: str) -> None:
    if mode == "nftables" and importlib.util.find_spec("clew.proxy.nftables.render") is None:
        pytest.skip("the nftables renderer is not merged yet")
    prefix = "bl-tdp"
    try:
        result = run(mode, 30, 20, prefix=prefix)
    finally:
        leftovers = netns.list_names(prefix)
        for name in leftovers:
            netns.delete(name)
    assert leftovers == []
    assert (result.first.service, result.last.service) == ("bench/svc-0", "bench/svc-9")
    assert result.first.address == "10.96.0.1:80" and result.direct.address.endswith(":8080")
    for t in (result.first, result.last, result.direct, result.no_rules):
        assert t.count == 20 and 0 < t.min_us <= t.p50_us <= t.p99_us, t
    assert result.last_vs_first > 0 and result.load_s > 0
