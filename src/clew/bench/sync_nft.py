"""``clew bench sync --mode nftables``: the nftables sync engine at scale, beside ``nft -f`` and
beside kube-proxy's own nftables layout — the same fields as iptables mode (`sync.SyncBench`).

In throwaway namespaces, N Services × 3 endpoints (`synthetic.objects`), driving `NftSyncer`
(a long-lived libnftables context in the node's namespace) against the real kernel:

* ``first_full_sync_s`` — the first sync into the empty node namespace; ``full_sync_s`` — a full
  resync over it (one transaction replacing clew's table); ``raw_full_restore_s`` — ``nft -f``
  of the same script into an empty namespace. Target (issue 8): full resync ≤ 1.3× that load.
* ``change_p50_s``/``change_p99_s`` — from one Service or EndpointSlice change (alternating: an
  endpoint replaced, a Service added, a Service removed, as iptables mode) to the elements in the
  kernel, the changes CHANGE_GAP_S apart. ``raw_partial_restore_s`` — the median ``nft -f`` of
  just the changed Service's ``add element`` commands, right after each change (a process start included: the price of
  not keeping a context). Targets: p99 ≤ 5 ms at 10k, ≤ 10 ms at 100k.
* ``kube_proxy_full_restore_s`` — ``nft -f`` of kube-proxy v1.33's own layout for the same
  Services (`kube_proxy_nft`) into an empty namespace, loaded once (~22–40 s at 10k: its
  per-Service ``numgen … vmap`` loads quadratically, so only up to ``KUBE_PROXY_MAX`` Services;
  above, the kube-proxy fields are null). ``kube_proxy_partial_restore_s`` — the median ``nft
  -f`` of kube-proxy's partial sync for each of the same changes (the changed Service's chains
  flushed and refilled, element diffs), in that namespace; its stale-chain deletion, a second
  transaction in kube-proxy, is applied after and not timed. Target: ≥ 30× slower than clew's.
* ``rss_mb`` — this process's resident memory after clew's syncs (the engine holding N Services),
  read before kube-proxy's table is built. Targets: ≤ 150 MB at 10k, ≤ 1 GB at 100k.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from collections.abc import Callable

from clew.bench.kube_proxy_nft import KubeProxyNft
from clew.bench.sync import CONFIG, SLOW, SyncBench, _change, _Index, _rss_mb, _timed
from clew.bench.synthetic import objects
from clew.kernel import netns
from clew.kernel.namespace import Where
from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.proxy.nftables import apply
from clew.proxy.nftables.apply import NftKernel
from clew.proxy.nftables.layout import PortNft
from clew.proxy.nftables.render import element_commands, render_port
from clew.proxy.nftables.sync import NftSyncer
from clew.proxy.policy import PortPolicy

Progress = Callable[[str], None]
KUBE_PROXY_MAX = 20000  # kube-proxy's layout loads quadratically: 22 s at 10k, 159 s at 20k
# Changes arrive this far apart, as watch events do. Without a gap, the bench's own O(N) work
# to make the next snapshot (~50 ms of CPU at 100k, which an agent's source does not do) uses up
# the process's CPU share right before each timed sync, and on a shared machine the sync then
# waits for the CPU: measured at 50k, p50 5.3 ms without a gap, 1.35 ms with 50 ms.
CHANGE_GAP_S = 0.05


def _nft_f(ns: Where, script: str, timeout: float = 120.0) -> None:
    netns.run(ns, ["nft", "-f", "-"], input=script, timeout=timeout)


def _elements_script(syncer: NftSyncer, key: str) -> str | None:
    """The raw partial load: the changed Service's elements, as ``add element`` commands."""
    ports = [render_port(p, syncer.config) for p in syncer.last_policies if p.service_key == key]
    elements = [e for p in ports if isinstance(p, PortNft) for e in p.elements]
    if not elements:
        return None
    return "\n".join(element_commands(elements)) + "\n"


def _p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def _ratio(a: float, b: float | None) -> float | None:
    return None if b is None or not b else round(a / b, 5)


def run(
    services: int = 10000,
    changes: int = 50,
    *,
    progress: Progress | None = None,
    prefix: str = "clew-bsyncn",
    kube_proxy_max: int = KUBE_PROXY_MAX,
    inside: str | None = None,
) -> SyncBench:
    """The bench. ``inside``: the namespace this process already runs in, to hold the node's
    table — where an agent runs (host network), so that its libnftables context is in-process
    (`run_inside` does this); otherwise a node namespace is made and reached through a worker."""
    step = progress or (lambda what: None)
    snapshot: Snapshot = build_snapshot(objects(services))
    gc.collect()
    gc.freeze()
    tag = os.getpid()
    node, empty, kp = inside or f"{prefix}-{tag}", f"{prefix}-{tag}-e", f"{prefix}-{tag}-k"
    where = netns.HOST if inside else node  # the syncer's view of the node's namespace
    with_kp = services <= kube_proxy_max
    for ns in (() if inside else (node,)) + (empty,) + ((kp,) if with_kp else ()):
        netns.create(ns)
    kernel: NftKernel | None = None
    try:
        step("clew: first full sync")
        kernel = apply.kernel_for(where)  # what the agent uses: its own, so that it is closed here
        syncer = NftSyncer(where, CONFIG, kernel=kernel, generation=apply.generation_for(where),
                           delete_udp_flows=apply.conntrack_for(where))  # fmt: skip
        first = syncer.sync(snapshot)
        if not first.ok:
            raise RuntimeError(f"first sync failed: {first.error}")
        step("clew: full resync over the table")
        syncer.request_full()
        full = syncer.sync(snapshot)
        if not (full.ok and full.full):
            raise RuntimeError(f"full resync failed: {full.error}")
        step("raw nft -f of the same script into an empty namespace")
        payload = syncer.payload()
        raw_full = _timed(lambda p=payload: _nft_f(empty, p, SLOW))
        del payload
        times: list[float] = []
        raws: list[float] = []
        partials = 0
        index = _Index(snapshot)
        steps: list[tuple[str, list[PortPolicy]]] = []  # the changed Service, its ports after
        for i in range(changes):
            step(f"one change at a time: {i + 1} of {changes}")
            snapshot, key = _change(snapshot, i, services, index)
            time.sleep(CHANGE_GAP_S)  # not synchronisation: the time between two events (see above)
            result = syncer.sync(snapshot)
            if not result.ok:
                raise RuntimeError(f"change {i} failed: {result.error}")
            times.append(result.seconds)
            partials += 0 if result.full else 1
            if with_kp:
                steps.append((key, [p for p in syncer.last_policies if p.service_key == key]))
            own = _elements_script(syncer, key)
            if own is not None:
                raws.append(_timed(lambda own=own: _nft_f(where, own)))
        gc.collect()
        rss = _rss_mb()
        kp_full: float | None = None
        kp_partial: float | None = None
        if with_kp:
            step("kube-proxy's layout: nft -f into an empty namespace (slow: quadratic)")
            initial = build_snapshot(objects(services))
            from clew.proxy.policy import decide

            kube = KubeProxyNft(decide(initial, CONFIG), CONFIG)
            del initial
            text = kube.full()
            kp_full = _timed(lambda t=text: _nft_f(kp, t, SLOW))
            del text
            kp_times = []
            for i, (key, after) in enumerate(steps):
                step(f"kube-proxy's partial sync: {i + 1} of {len(steps)}")
                tx, later = kube.change(key, after)
                if tx:
                    kp_times.append(_timed(lambda t=tx: _nft_f(kp, t)))
                if later:
                    _nft_f(kp, later)
            kp_partial = statistics.median(kp_times) if kp_times else None
    finally:
        if kernel is not None:
            kernel.close()
        for ns in (empty, kp) if inside else (node, empty, kp):
            netns.delete(ns)
        gc.unfreeze()
    p50 = statistics.median(times)
    raw_partial = statistics.median(raws) if raws else float("nan")
    return SyncBench(
        services=services,
        mode="nftables",
        first_full_sync_s=round(first.seconds, 3),
        full_sync_s=round(full.seconds, 3),
        raw_full_restore_s=round(raw_full, 3),
        full_ratio=round(full.seconds / raw_full, 2),
        changes=changes,
        change_p50_s=round(p50, 5),
        change_p99_s=round(_p99(times), 5),
        raw_partial_restore_s=round(raw_partial, 5),
        change_ratio=round(p50 / raw_partial, 3),
        partial_syncs=partials,
        kube_proxy_full_restore_s=None if kp_full is None else round(kp_full, 3),
        full_vs_kube_proxy=_ratio(full.seconds, kp_full),
        kube_proxy_partial_restore_s=None if kp_partial is None else round(kp_partial, 4),
        change_vs_kube_proxy=_ratio(p50, kp_partial),
        rss_mb=rss,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
