"""``clew bench trace``: parse a 10k-Service iptables-save and trace packets through it.

Targets (issue 3): parse + first trace ≤ 1 s; another trace on the parsed view ≤ 20 ms. The
ruleset is clew's own render of N Services × 3 endpoints (the shape of a kube-proxy node),
parsed from text exactly as ``clew trace --ruleset`` does.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass

from clew.bench.synthetic import SERVICE_BASE, objects
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.netfilter.iptables_save import parse
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide
from clew.trace.engine import trace
from clew.trace.node_view import Address, NodeView
from clew.trace.packet import Packet


@dataclass(frozen=True)
class TraceBench:
    services: int
    ruleset_lines: int
    parse_s: float
    first_trace_s: float
    parse_and_trace_s: float
    next_trace_p50_ms: float
    next_trace_max_ms: float
    traces: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def run(services: int = 10000, traces: int = 50) -> TraceBench:
    config = ProxyConfig(
        node_name="node-0",
        node_ips=("192.168.50.2",),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
    )
    text = render(decide(build_snapshot(objects(services)), config), config).text(standalone=True)
    gc.collect()
    start = time.perf_counter()
    ruleset = parse(text, origin="bench")
    gc.freeze()  # what clew trace does: the parsed view lives as long as the process
    view = NodeView(ruleset=ruleset, addresses=[Address("eth0", "192.168.50.2", 24)])
    parsed = time.perf_counter()
    trace(view, Packet("10.244.1.5", _service_ip(services // 2), dport=80, iif="cni0"))
    first = time.perf_counter()
    times = []
    for i in range(traces):
        packet = Packet("10.244.1.5", _service_ip((i * 7919) % services), dport=80, iif="cni0")
        t0 = time.perf_counter()
        result = trace(view, packet)
        times.append(time.perf_counter() - t0)
        assert result.outcomes and result.outcomes[0].dnat, "the bench packet must hit a Service"
    gc.unfreeze()
    return TraceBench(
        services=services,
        ruleset_lines=text.count("\n"),
        parse_s=round(parsed - start, 4),
        first_trace_s=round(first - parsed, 4),
        parse_and_trace_s=round(first - start, 4),
        next_trace_p50_ms=round(statistics.median(times) * 1000, 3),
        next_trace_max_ms=round(max(times) * 1000, 3),
        traces=traces,
    )


def _service_ip(i: int) -> str:
    n = SERVICE_BASE + i
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
