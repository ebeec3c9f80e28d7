"""``clew bench sync``: the agent's sync engine at scale, beside raw iptables-restore.

In a throwaway namespace, N Services × 3 endpoints (`synthetic.objects`):

* ``full_sync_s`` — a full resync over the existing rules (clew's table replace, ``full.py``);
  ``raw_full_restore_s`` — ``iptables-restore`` of the same full payload into an empty namespace.
  Target: ≤ 1.3×.
* ``change_p50_s``/``change_p99_s`` — from one Service or EndpointSlice change (alternating:
  an endpoint replaced, a Service added, a Service removed) to rules in the kernel, over
  ``changes`` changes; ``raw_partial_restore_s`` — the median ``iptables-restore --noflush`` of
  just the changed Service's chains, timed right after each change in the same namespace.
  Target: p50 ≤ 1.5×.
* ``rss_mb`` — this process's peak resident memory (it holds the engine). Target ≤ 150 MB.

The snapshots are built the way an event-driven source hands them over: one object replaced,
the rest the same objects (the engine's per-Service cache relies on identity, like a watch).
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, replace

from clew.bench.synthetic import objects
from clew.kernel import iptables, netns
from clew.model.from_kube import build_snapshot, service_from_kube, slice_from_kube
from clew.model.objects import Changes, EndpointSlice, Service, Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.iptables.render import render_port
from clew.proxy.sync import ProxySyncer


@dataclass(frozen=True)
class SyncBench:
    services: int
    mode: str
    first_full_sync_s: float
    full_sync_s: float
    raw_full_restore_s: float
    full_ratio: float
    changes: int
    change_p50_s: float
    change_p99_s: float
    raw_partial_restore_s: float
    change_ratio: float
    partial_syncs: int
    rss_mb: float  # resident memory after the syncs: the engine holding N Services' state
    peak_rss_mb: float  # including building the synthetic cluster from API dicts

    def to_json(self) -> dict[str, object]:
        return asdict(self)


CONFIG = ProxyConfig(
    node_name="node-0",
    node_ips=("192.168.50.2",),
    detect_local=DetectLocal.CLUSTER_CIDR,
    cluster_cidrs=("10.244.0.0/16",),
)


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


class _Index:
    """What an event-driven source keeps anyway: objects by key, updated per event (O(1))."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.services: dict[str, Service] = {s.key: s for s in snapshot.services}
        self.slices: dict[str, tuple[EndpointSlice, ...]] = {}
        for sl in snapshot.slices:
            self.slices[sl.service_key] = (*self.slices.get(sl.service_key, ()), sl)

    def hint(self, key: str) -> Changes:
        return Changes(frozenset({key}), False, self.services, self.slices)


def _change(snapshot: Snapshot, i: int, services: int, index: _Index) -> tuple[Snapshot, str]:
    """Change i: replace one endpoint of a slice, add a Service, or remove one — with the
    change hint a watch-based source hands over (`Changes`)."""
    kind = i % 3
    if kind == 0:
        sl = snapshot.slices[(i * 7919) % len(snapshot.slices)]
        ep = sl.endpoints[0]
        new_ep = replace(ep, address=f"10.245.{i // 250 % 250}.{i % 250 + 1}")
        new_sl = replace(sl, endpoints=(new_ep, *sl.endpoints[1:]))
        slices = tuple(new_sl if s is sl else s for s in snapshot.slices)
        index.slices[sl.service_key] = tuple(new_sl if s is sl else s for s in index.slices[sl.service_key])
        return replace(snapshot, slices=slices, changes=index.hint(sl.service_key)), sl.service_key
    if kind == 1:
        name = f"extra-{i}"
        svc = service_from_kube({"metadata": {"name": name, "namespace": "bench"},
                                 "spec": {"clusterIP": f"10.100.{i // 250}.{i % 250 + 1}",
                                          "ports": [{"name": "http", "port": 80}]}})  # fmt: skip
        sl = slice_from_kube({"metadata": {"name": f"{name}-x", "namespace": "bench",
                                           "labels": {"kubernetes.io/service-name": name}},
                              "addressType": "IPv4", "endpoints": [{"addresses": [f"10.246.{i // 250}.{i % 250 + 1}"]}],
                              "ports": [{"name": "http", "port": 8080}]})  # fmt: skip
        index.services[svc.key], index.slices[svc.key] = svc, (sl,)
        snap = replace(snapshot, services=(*snapshot.services, svc), slices=(*snapshot.slices, sl))
        return replace(snap, changes=index.hint(svc.key)), svc.key
    victim = snapshot.services[(i * 104729) % len(snapshot.services)]
    services_ = tuple(s for s in snapshot.services if s is not victim)
    slices = tuple(s for s in snapshot.slices if s.service_key != victim.key)
    index.services.pop(victim.key, None)
    index.slices.pop(victim.key, None)
    return replace(snapshot, services=services_, slices=slices, changes=index.hint(victim.key)), victim.key


def _own_chains_payload(syncer: ProxySyncer, service_key: str) -> str | None:
    """The raw partial restore: just this Service's own chains, declared and written."""
    ports = [p for p in syncer.last_policies if p.service_key == service_key]
    if not ports:
        return None
    lines = ["*nat"]
    rules: list[str] = []
    for p in ports:
        pr = render_port(p, syncer.config, False)
        lines += [f":{c} - [0:0]" for c in pr.chains]
        rules += pr.chain_rules
    return "\n".join([*lines, *rules, "COMMIT"]) + "\n"


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run(services: int = 10000, changes: int = 50) -> SyncBench:
    snapshot = build_snapshot(objects(services))
    gc.collect()
    gc.freeze()
    tag = os.getpid()
    node, empty = f"clew-bsync-{tag}", f"clew-bsync-{tag}-e"
    netns.create(node)
    netns.create(empty)
    try:
        syncer = ProxySyncer(node, CONFIG)
        first = syncer.sync(snapshot)
        if not first.ok:
            raise RuntimeError(f"first sync failed: {first.error}")
        syncer.request_full()
        full = syncer.sync(snapshot)
        assert full.ok and full.full
        payload = syncer.payload()
        raw_full = _timed(lambda p=payload: iptables.restore(empty, p, noflush=False, counters=True))
        del payload
        times, raws, partials = [], [], 0
        index = _Index(snapshot)
        for i in range(changes):
            snapshot, key = _change(snapshot, i, services, index)
            result = syncer.sync(snapshot)
            if not result.ok:
                raise RuntimeError(f"change {i} failed: {result.error}")
            times.append(result.seconds)
            partials += 0 if result.full else 1
            own = _own_chains_payload(syncer, key)
            if own is not None:
                raws.append(_timed(lambda own=own: iptables.restore(node, own, noflush=True, counters=True)))
    finally:
        netns.delete(node)
        netns.delete(empty)
        gc.unfreeze()
    p50 = statistics.median(times)
    raw_partial = statistics.median(raws) if raws else float("nan")
    return SyncBench(
        services=services,
        mode="iptables",
        first_full_sync_s=round(first.seconds, 3),
        full_sync_s=round(full.seconds, 3),
        raw_full_restore_s=round(raw_full, 3),
        full_ratio=round(full.seconds / raw_full, 2),
        changes=changes,
        change_p50_s=round(p50, 4),
        change_p99_s=round(sorted(times)[max(0, int(len(times) * 0.99) - 1)], 4),
        raw_partial_restore_s=round(raw_partial, 4),
        change_ratio=round(p50 / raw_partial, 2),
        partial_syncs=partials,
        rss_mb=_rss_mb(),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def run_isolated(services: int, changes: int) -> SyncBench:
    """`run` in a fresh process, so that each count's memory figure is its own."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "clew.bench.sync", str(services), str(changes)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench sync {services}: {proc.stderr.strip().splitlines()[-1:]}")
    return SyncBench(**json.loads(proc.stdout))


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]), int(sys.argv[2])).to_json()))
