"""``clew bench trace --mode nftables``: parse a 10k-Service ``nft -j list ruleset`` and trace.

Targets (issue 9): parse + first trace ≤ 1 s; another trace on the parsed view ≤ 20 ms. The
ruleset has kube-proxy's nftables layout (``--layout kube-proxy``, the one that grows with the
Services: per Service a ``service-…`` chain with a ``numgen random mod 3 vmap`` and three
``endpoint-…`` chains, and the ``service-ips`` verdict map), written as the JSON nft 1.0.6 prints
for it — the shapes of tests/unit/data/nft/kube_proxy_overall.json — or clew's own
(``--layout clew``: the renderer's script for the same Services loaded into a throwaway
namespace and listed by ``nft -j list ruleset``; needs root and nft). Either is parsed from text
exactly as ``clew trace --ruleset rules.json`` does.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from clew.bench.synthetic import POD_BASE, SERVICE_BASE
from clew.netfilter.nft_json import parse
from clew.trace.engine import trace
from clew.trace.node_view import Address, NodeView
from clew.trace.packet import Packet

T = {"family": "ip", "table": "kube-proxy"}
ENDPOINTS = 3


@dataclass(frozen=True)
class NftTraceBench:
    services: int
    json_mb: float
    chains: int
    rules: int
    parse_s: float
    first_trace_s: float
    parse_and_trace_s: float
    parse_and_trace_cpu_s: float  # process CPU time: what the wall time is on an idle machine
    next_trace_p50_ms: float
    next_trace_max_ms: float
    next_trace_max_cpu_ms: float  # the slowest trace's CPU time (wall time on a busy machine adds waiting)
    traces: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _ip(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def _m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
KEY3 = {"concat": [DADDR, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}


def _chain(name: str, hook: str | None = None, prio: int = 0, kind: str = "nat") -> dict[str, Any]:
    body: dict[str, Any] = {**T, "name": name, "handle": 0}
    if hook:
        body.update({"type": kind, "hook": hook, "prio": prio, "policy": "accept"})
    return {"chain": body}


def _rule(chain: str, *expr: Any) -> dict[str, Any]:
    return {"rule": {**T, "chain": chain, "handle": 0, "expr": list(expr)}}


def ruleset(services: int) -> dict[str, Any]:
    """kube-proxy's nftables layout for ``services`` ClusterIP Services × 3 endpoints."""
    objs: list[dict[str, Any]] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
    objs.append({"table": {"family": "ip", "name": "kube-proxy", "handle": 1}})
    elems: list[Any] = []
    chains: list[dict[str, Any]] = [
        _chain("nat-prerouting", "prerouting", -100),
        _chain("nat-output", "output", -100),
        _chain("nat-postrouting", "postrouting", 100),
        _chain("filter-forward", "forward", 0, "filter"),
        _chain("services"),
        _chain("mark-for-masquerade"),
        _chain("masquerading"),
        _chain("service-endpoints-check"),
    ]
    mark = {"meta": {"key": "mark"}}
    rules: list[dict[str, Any]] = [
        _rule("nat-prerouting", {"jump": {"target": "services"}}),
        _rule("nat-output", {"jump": {"target": "services"}}),
        _rule("nat-postrouting", {"jump": {"target": "masquerading"}}),
        _rule("filter-forward", _m({"ct": {"key": "state"}}, "new", "in"),
              {"jump": {"target": "service-endpoints-check"}}),
        _rule("service-endpoints-check", {"vmap": {"key": KEY3, "data": "@no-endpoint-services"}}),
        _rule("services", {"vmap": {"key": KEY3, "data": "@service-ips"}}),
        _rule("mark-for-masquerade", {"mangle": {"key": mark, "value": {"|": [mark, 16384]}}}),
        _rule("masquerading", _m({"&": [mark, 16384]}, 0), {"return": None}),
        _rule("masquerading", {"mangle": {"key": mark, "value": {"^": [mark, 16384]}}}),
        _rule("masquerading", {"masquerade": {"flags": "fully-random"}}),
    ]  # fmt: skip
    for i in range(services):
        ip = _ip(SERVICE_BASE + i)
        suffix = f"bench/svc-{i}/tcp/http"
        svc = f"service-{i:08X}-{suffix}"
        elems.append([{"concat": [ip, "tcp", 80]}, {"goto": {"target": svc}}])
        chains.append(_chain(svc))
        rules.append(_rule(svc, _m(DADDR, ip), _m(SADDR, {"prefix": {"addr": "10.244.0.0", "len": 16}}, "!="),
                           {"jump": {"target": "mark-for-masquerade"}}))  # fmt: skip
        gotos = []
        for e in range(ENDPOINTS):
            ep = _ip(POD_BASE + i * ENDPOINTS + e)
            name = f"endpoint-{i:04X}{e:04X}-{suffix}__{ep}/8080"
            gotos.append([e, {"goto": {"target": name}}])
            chains.append(_chain(name))
            rules.append(_rule(name, _m(SADDR, ep), {"jump": {"target": "mark-for-masquerade"}}))
            rules.append(_rule(name, _m({"meta": {"key": "l4proto"}}, "tcp"), {"dnat": {"addr": ep, "port": 8080}}))
        numgen = {"numgen": {"mode": "random", "mod": ENDPOINTS, "offset": 0}}
        rules.append(_rule(svc, {"vmap": {"key": numgen, "data": {"set": gotos}}}))
    objs.append({"map": {**T, "name": "service-ips", "type": ["ipv4_addr", "inet_proto", "inet_service"],
                         "handle": 2, "map": "verdict", "elem": elems}})  # fmt: skip
    objs.append({"map": {**T, "name": "no-endpoint-services", "type": ["ipv4_addr", "inet_proto", "inet_service"],
                         "handle": 3, "map": "verdict"}})  # fmt: skip
    return {"nftables": [*objs, *chains, *rules]}


def clew_ruleset(services: int) -> str:
    """clew's nftables render of the bench Services, as nft lists it back (JSON text)."""
    import os

    from clew.bench.synthetic import objects
    from clew.kernel import netns
    from clew.model.from_kube import build_snapshot
    from clew.model.proxy_config import DetectLocal, ProxyConfig
    from clew.proxy.nftables.render import render, script
    from clew.proxy.policy import decide

    config = ProxyConfig(
        node_name="node-0",
        node_ips=("192.168.50.2",),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
        mode="nftables",
    )
    text = script(render(decide(build_snapshot(objects(services)), config), config))
    name = f"clew-bench-nft-{os.getpid()}"
    netns.create(name)
    try:
        netns.run(name, ["nft", "-f", "-"], input=text, timeout=600)
        return netns.run(name, ["nft", "-j", "list", "ruleset"], timeout=600).stdout
    finally:
        netns.delete(name)


def run(services: int = 10000, traces: int = 50, layout: str = "kube-proxy") -> NftTraceBench:
    if layout == "clew":
        text = clew_ruleset(services)
        doc = json.loads(text)
    else:
        doc = ruleset(services)
        text = json.dumps(doc, separators=(",", ":"))
    chains = sum(1 for o in doc["nftables"] if "chain" in o)
    rules = sum(1 for o in doc["nftables"] if "rule" in o)
    del doc
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    nft = parse(text, origin="bench")
    gc.freeze()  # what clew trace does: the parsed view lives as long as the process
    view = NodeView(addresses=[Address("eth0", "192.168.50.2", 24)], nft=nft)
    parsed = time.perf_counter()
    trace(view, Packet("10.244.1.5", _ip(SERVICE_BASE + services // 2), dport=80, iif="cni0"))
    first, first_cpu = time.perf_counter(), time.process_time()
    times, cpus = [], []
    for i in range(traces):
        packet = Packet("10.244.1.5", _ip(SERVICE_BASE + (i * 7919) % services), dport=80, iif="cni0")
        t0, c0 = time.perf_counter(), time.process_time()
        result = trace(view, packet)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        assert result.outcomes and result.outcomes[0].dnat, "the bench packet must hit a Service"
    gc.unfreeze()
    return NftTraceBench(
        services=services,
        json_mb=round(len(text) / 1e6, 1),
        chains=chains,
        rules=rules,
        parse_s=round(parsed - start, 4),
        first_trace_s=round(first - parsed, 4),
        parse_and_trace_s=round(first - start, 4),
        parse_and_trace_cpu_s=round(first_cpu - cpu, 4),
        next_trace_p50_ms=round(statistics.median(times) * 1000, 3),
        next_trace_max_ms=round(max(times) * 1000, 3),
        next_trace_max_cpu_ms=round(max(cpus) * 1000, 3),
        traces=traces,
    )
