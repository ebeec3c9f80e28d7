"""Pictures of benchmark results (``--plot``); matplotlib is an optional extra (``clew[plot]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clew.bench.dataplane import DataplaneBench
from clew.bench.sync import SyncBench


def sync_plot(results: Sequence[SyncBench], path: Path) -> None:
    """Sync time against Service count: clew's full resync and one-change sync beside raw restores
    and kube-proxy's."""
    import importlib

    importlib.import_module("matplotlib").use("Agg")  # imported by name: an optional extra, without type stubs
    plt: Any = importlib.import_module("matplotlib.pyplot")

    rows = sorted(results, key=lambda r: r.services)
    n = [r.services for r in rows]
    fig, (full, change) = plt.subplots(1, 2, figsize=(10, 4))
    full.plot(n, [r.full_sync_s for r in rows], "o-", label="clew full resync (over existing rules)")
    full.plot(n, [r.raw_full_restore_s for r in rows], "s--", label="raw load (iptables-restore / nft -f, empty netns)")
    nan = float("nan")  # kube-proxy's figures are missing past the size its nftables layout loads in
    full.plot(n, [r.kube_proxy_full_restore_s or nan for r in rows], "d-.", label="kube-proxy full sync")
    full.set(title="Full sync", xlabel="Services (× 3 endpoints)", ylabel="seconds")
    change.plot(n, [r.change_p50_s for r in rows], "o-", label="clew one change, p50")
    change.plot(n, [r.change_p99_s for r in rows], "^:", label="clew one change, p99")
    change.plot(n, [r.raw_partial_restore_s for r in rows], "s--", label="raw restore of the Service's chains")
    change.plot(n, [r.kube_proxy_partial_restore_s or nan for r in rows], "d-.", label="kube-proxy partial sync, p50")
    change.set(title="One Service or EndpointSlice change", xlabel="Services (× 3 endpoints)", ylabel="seconds")
    for ax in (full, change):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dataplane_plot(results: Sequence[DataplaneBench], path: Path) -> None:
    """connect() p50 against Service count, per mode: first and last Service, straight to a pod,
    and the no-rules floor. The file's suffix picks the format (.svg, .png)."""
    import importlib

    importlib.import_module("matplotlib").use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"iptables": "-", "nftables": "--"}
    for mode in sorted({r.mode for r in results}):
        rows = sorted((r for r in results if r.mode == mode), key=lambda r: r.services)
        n = [r.services for r in rows]
        ls = styles.get(mode, ":")
        ax.plot(n, [r.first.p50_us for r in rows], "o" + ls, label=f"{mode}: first Service")
        ax.plot(n, [r.last.p50_us for r in rows], "s" + ls, label=f"{mode}: last Service")
        ax.plot(n, [r.direct.p50_us for r in rows], "^" + ls, label=f"{mode}: straight to a pod")
    floor = sorted(results, key=lambda r: r.services)
    if floor:
        ax.plot([r.services for r in floor], [r.no_rules.p50_us for r in floor], "x:", color="grey",
                label="no rules loaded")  # fmt: skip
    ax.set(title="New connection set-up time (connect() p50)", xlabel="Services (× 3 endpoints)", ylabel="µs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
