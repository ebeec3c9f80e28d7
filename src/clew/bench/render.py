"""``clew bench render``: clew's render time beside ``iptables-restore`` loading the same payload.

The restore runs in a throwaway network namespace (created and deleted here, also on failure):
``iptables-restore`` of the whole payload into the empty namespace. (Under ``--noflush`` the same
load grows quadratically on iptables-nft — 0.6 s at 1k Services, 11.6 s at 4k — which is the
agent's problem to solve, not a property of the payload.) Target: render ≤ 50% of the restore.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict, dataclass

from clew.bench.synthetic import objects
from clew.kernel import iptables, netns
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide


@dataclass(frozen=True)
class RenderBench:
    services: int
    endpoints_per_service: int
    payload_lines: int
    payload_mb: float
    parse_s: float  # API dicts → model (from_kube), best of runs
    decide_s: float  # policy
    render_s: float  # policy + render + payload text: what a full sync computes
    restore_s: float  # iptables-restore of the payload into an empty namespace
    ratio: float  # render_s / restore_s
    iptables: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _best(fn: object, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def run(services: int = 10000, endpoints: int = 3, runs: int = 3) -> RenderBench:
    objs = objects(services, endpoints)
    config = ProxyConfig(
        node_name="node-0",
        node_ips=("192.168.50.2",),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
    )
    parse_s = _best(lambda: build_snapshot(objs), runs)
    snapshot = build_snapshot(objs)
    decide_s = _best(lambda: decide(snapshot, config), runs)
    render_s = _best(lambda: render(decide(snapshot, config), config).text(), runs)
    payload = render(decide(snapshot, config), config).text()
    name = f"clew-bench-{os.getpid()}"
    netns.create(name)
    try:
        start = time.perf_counter()
        iptables.restore(name, payload, noflush=False, counters=True)
        restore_s = time.perf_counter() - start
    finally:
        netns.delete(name)
    version = ".".join(map(str, iptables.version())) + f" ({iptables.backend()})"
    return RenderBench(
        services=services,
        endpoints_per_service=endpoints,
        payload_lines=payload.count("\n"),
        payload_mb=round(len(payload) / 1e6, 2),
        parse_s=round(parse_s, 4),
        decide_s=round(decide_s, 4),
        render_s=round(render_s, 4),
        restore_s=round(restore_s, 4),
        ratio=round(render_s / restore_s, 3),
        iptables=version,
    )
