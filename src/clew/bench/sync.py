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
* ``kube_proxy_full_restore_s`` — kube-proxy's own full sync for the same rules: one
  ``iptables-restore --noflush`` declaring and rewriting every chain, over the existing rules;
  ``kube_proxy_partial_restore_s`` — the median of kube-proxy's partial sync for each change
  (every shared chain such as KUBE-SERVICES rewritten in full, plus the changed Service's
  chains), each restored right after clew's sync, in a namespace that holds kube-proxy's rules
  (`kube_proxy.KubeProxyPayloads`). ``full_vs_kube_proxy`` and ``change_vs_kube_proxy`` are
  clew's times over these: below 1, clew is faster than kube-proxy would be.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

from clew.bench.kube_proxy import KubeProxyPayloads
from clew.bench.synthetic import objects
from clew.kernel import iptables, netns
from clew.model.from_kube import build_snapshot, service_from_kube, slice_from_kube
from clew.model.objects import Changes, EndpointSlice, Service, Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.iptables.render import render_port
from clew.proxy.sync import ProxySyncer

Progress = Callable[[str], None]
SLOW = 3600.0  # s: kube-proxy's full --noflush restore at 10k Services takes ~1 min idle, minutes on a busy machine


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
    kube_proxy_full_restore_s: float | None  # None: not measured (nftables mode past 20k Services)
    full_vs_kube_proxy: float | None
    kube_proxy_partial_restore_s: float | None
    change_vs_kube_proxy: float | None
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


def _kube_rules(saved: str) -> list[str]:
    """The KUBE-* chains and their rules in iptables-save text, order-free (KUBE-SERVICES'
    order differs between clew's rule-by-rule edits and kube-proxy's rewrites, and means nothing)."""
    out = []
    for line in saved.splitlines():
        if line.startswith(":KUBE-") and not line.startswith(":KUBE-PROXY-CANARY"):
            out.append(line.split()[0])
        elif line.startswith("-A KUBE-") and not line.startswith("-A KUBE-PROXY-CANARY"):
            out.append(line)
    return sorted(out)


def run(
    services: int = 10000,
    changes: int = 50,
    *,
    verify: bool = False,
    progress: Progress | None = None,
    prefix: str = "clew-bsync",
) -> SyncBench:
    """The bench; with ``verify``, also check that clew's and kube-proxy's namespaces end up
    holding the same KUBE-* rules (the payload shapes are right, as the kernel reads them)."""
    step = progress or (lambda what: None)
    snapshot = build_snapshot(objects(services))
    gc.collect()
    gc.freeze()
    tag = os.getpid()
    node, empty = f"{prefix}-{tag}", f"{prefix}-{tag}-e"
    netns.create(node)
    netns.create(empty)
    try:
        step("clew: first full sync")
        syncer = ProxySyncer(node, CONFIG)
        first = syncer.sync(snapshot)
        if not first.ok:
            raise RuntimeError(f"first sync failed: {first.error}")
        step("clew: full resync over the rules")
        syncer.request_full()
        full = syncer.sync(snapshot)
        assert full.ok and full.full
        step("raw iptables-restore into an empty namespace")
        payload = syncer.payload()
        raw_full = _timed(lambda p=payload: iptables.restore(empty, p, noflush=False, counters=True))
        del payload
        # from here on the "empty" namespace holds kube-proxy's rules: the same, loaded its way
        # the engine's own per-port rules (a private field: sharing them keeps rss_mb the engine's)
        kube_proxy = KubeProxyPayloads(syncer._applied.values(), syncer.config)
        step("kube-proxy: full --noflush sync over the rules")
        kp_full_text = kube_proxy.full()
        kp_full = _timed(lambda p=kp_full_text: iptables.restore(empty, p, noflush=True, counters=True, timeout=SLOW))
        del kp_full_text
        times, raws, kp_partials, partials = [], [], [], 0
        index = _Index(snapshot)
        for i in range(changes):
            step(f"one change at a time: {i + 1} of {changes}")
            snapshot, key = _change(snapshot, i, services, index)
            result = syncer.sync(snapshot)
            if not result.ok:
                raise RuntimeError(f"change {i} failed: {result.error}")
            times.append(result.seconds)
            partials += 0 if result.full else 1
            own = _own_chains_payload(syncer, key)
            if own is not None:
                raws.append(_timed(lambda own=own: iptables.restore(node, own, noflush=True, counters=True)))
            kp_text = kube_proxy.change(key, syncer.last_policies)
            kp_partials.append(
                _timed(lambda p=kp_text: iptables.restore(empty, p, noflush=True, counters=True, timeout=SLOW))
            )
        if verify and _kube_rules(iptables.save(node)) != _kube_rules(iptables.save(empty)):
            raise RuntimeError("clew's and kube-proxy's namespaces hold different KUBE-* rules after the changes")
    finally:
        netns.delete(node)
        netns.delete(empty)
        gc.unfreeze()
    p50 = statistics.median(times)
    raw_partial = statistics.median(raws) if raws else float("nan")
    kp_partial = statistics.median(kp_partials)
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
        kube_proxy_full_restore_s=round(kp_full, 3),
        full_vs_kube_proxy=round(full.seconds / kp_full, 2),
        kube_proxy_partial_restore_s=round(kp_partial, 4),
        change_vs_kube_proxy=round(p50 / kp_partial, 2),
        rss_mb=_rss_mb(),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def run_isolated(services: int, changes: int, progress: Progress | None = None, mode: str = "iptables") -> SyncBench:
    """`run` (or `sync_nft.run` for ``mode`` nftables) in a fresh process, so that each count's
    memory figure is its own; its steps come back on its stderr, one line each, for ``progress``.

    nftables mode: the process runs inside a fresh node namespace, where an agent runs (the host
    network), so that its libnftables context is in-process as the agent's is."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "clew.bench.sync", str(services), str(changes), mode]
    node = f"clew-bsyncn-{os.getpid()}-n" if mode == "nftables" else None
    if node is not None:
        netns.create(node)
    try:
        if node is None:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        else:
            proc = netns.spawn(node, [*argv, node], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return _collect(proc, services, progress)
    finally:
        if node is not None:
            netns.delete(node)


def _collect(proc: subprocess.Popen[str], services: int, progress: Progress | None) -> SyncBench:
    import json

    assert proc.stderr is not None and proc.stdout is not None
    lines: list[str] = []
    for line in proc.stderr:  # the child writes one line per step; its stdout is one short JSON line
        lines.append(line.rstrip("\n"))
        if progress is not None and line.startswith(STEP):
            progress(line[len(STEP) :].strip())
    out = proc.stdout.read()
    if proc.wait() != 0:
        errors = [line for line in lines if not line.startswith(STEP)]
        raise RuntimeError(f"bench sync {services}: {(errors or ['failed'])[-1]}")
    return SyncBench(**json.loads(out))


STEP = "step: "

if __name__ == "__main__":
    import json
    import sys

    def _say(what: str) -> None:
        print(f"{STEP}{what}", file=sys.stderr, flush=True)

    count, changes_, mode_ = int(sys.argv[1]), int(sys.argv[2]), (sys.argv[3:] or ["iptables"])[0]
    if mode_ == "nftables":
        from clew.bench import sync_nft

        inside = sys.argv[4] if len(sys.argv) > 4 else None
        print(json.dumps(sync_nft.run(count, changes_, progress=_say, inside=inside).to_json()))
    else:
        print(json.dumps(run(count, changes_, progress=_say).to_json()))
