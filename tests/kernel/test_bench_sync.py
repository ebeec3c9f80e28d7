"""``clew bench sync`` at 50 Services: every figure is there, kube-proxy's columns included, and
the payload shapes hold in a real kernel — after the changes, the namespace that took
kube-proxy's restores holds the same KUBE-* rules as the one clew synced (``verify``)."""

from __future__ import annotations

import math

import pytest

from clew.bench.sync import run
from clew.kernel import netns

pytestmark = pytest.mark.kernel


def test_bench_sync_times_kube_proxys_payloads_beside_clews() -> None:
    prefix = "hcl-bsync"
    try:
        result = run(50, 6, verify=True, prefix=prefix)
    finally:
        leftovers = netns.list_names(prefix)
        for name in leftovers:
            netns.delete(name)
    assert leftovers == []
    doc = result.to_json()
    for field in ("kube_proxy_full_restore_s", "kube_proxy_partial_restore_s", "full_vs_kube_proxy",
                  "change_vs_kube_proxy", "full_ratio", "change_ratio"):  # fmt: skip
        value = doc[field]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (field, value)
    assert result.changes == 6 and result.partial_syncs >= 1


def test_bench_sync_nftables_mode_times_kube_proxys_layout_beside_clews() -> None:
    """The nftables bench at 50 Services: NftSyncer's figures, nft -f's, and kube-proxy's own
    layout loaded and changed (every script is accepted by the kernel, or the bench fails)."""
    from clew.bench import sync_nft

    prefix = "bl-bsyncn"
    try:
        result = sync_nft.run(50, 6, prefix=prefix)
    finally:
        leftovers = netns.list_names(prefix)
        for name in leftovers:
            netns.delete(name)
    assert leftovers == []
    doc = result.to_json()
    assert doc["mode"] == "nftables" and result.changes == 6 and result.partial_syncs == 6
    for field in ("kube_proxy_full_restore_s", "kube_proxy_partial_restore_s", "full_vs_kube_proxy",
                  "change_vs_kube_proxy", "full_ratio", "change_ratio", "change_p99_s", "rss_mb"):  # fmt: skip
        value = doc[field]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (field, value)
    assert sync_nft.run(20, 3, prefix=prefix, kube_proxy_max=10).kube_proxy_full_restore_s is None
    assert netns.list_names(prefix) == []
