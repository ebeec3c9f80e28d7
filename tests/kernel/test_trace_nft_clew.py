"""Kernel agreement in clew's nftables mode: the tracer reading ``nft -j list ruleset``.

test_trace_agreement.py's two-node topology, Services, echo servers, packet draws and judge, with
both nodes running clew's nftables-mode render (the renderer's ``nft -f`` script; no iptables
rules at all) instead of iptables mode. The tracer's views are read live (`from_netns`: the
nft JSON is what it walks). At least 300 seeded random packets (``CLEW_TRACE_SEED``,
``CLEW_TRACE_PACKETS``), every way in but 127.0.0.1 (localhost NodePorts are off in nftables mode,
as in kube-proxy's), from pods on either node, the node and the outside client; each is traced,
sent once for real, and what the client saw must be one of the outcomes.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import test_trace_agreement as base
from topology import EXT_IP, Topology, unique_prefix

from clew.kernel import netns
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.nftables.render import render, script
from clew.proxy.policy import decide
from clew.trace.node_view import from_netns

pytestmark = pytest.mark.kernel

DEFAULT_COUNT = 300


def render_nft(topo: Topology, node: str) -> str:
    snapshot = build_snapshot(base.objects(topo))
    assert snapshot.rejections == (), snapshot.rejections
    config = ProxyConfig(
        node_name=node,
        node_ips=(base.NODE_IP[node],),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
    )
    config = replace(config, mode="nftables")
    rendered = render(decide(snapshot, config), config)
    assert rendered.rejected == (), rendered.rejected
    return script(rendered)


@pytest.fixture(scope="module")
def lab() -> Iterator[base.Lab]:
    with Topology(unique_prefix("tn"), base.PODS) as t:
        for pod in base.ECHO_PODS:
            t.start_echo(pod, [base.PORT])
        t.run("ext", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        t.run("ext", ["ip", "addr", "add", f"{base.EXT_IP2}/24", "dev", "eth0"])
        t.add_route("ext", base.SERVICE_RANGE, via=base.NODE_IP["node"])
        for node in base.NODES:
            t.add_route(node, "default", via=EXT_IP)
            netns.run(t.ns(node), ["nft", "-f", "-"], input=render_nft(t, node), timeout=60)
        names = {ip: node for node, ip in base.NODE_IP.items()}
        views = {node: from_netns(t.ns(node), node_names=names) for node in base.NODES}
        for v in views.values():
            assert v.nft is not None and v.nft.table("ip", "clew") is not None
            assert not v.ruleset.tables.get("nat") or not v.ruleset.tables["nat"].chains.get("KUBE-SERVICES")
        yield base.Lab(t, views)


def test_tracer_agrees_with_the_kernel_in_nftables_mode(lab: base.Lab) -> None:
    seed = int(os.environ.get(base.SEED_ENV, base.DEFAULT_SEED))
    count = int(os.environ.get(base.COUNT_ENV, DEFAULT_COUNT))
    print(f"\nnftables-mode agreement: seed {seed}, {count} packets")
    start = time.monotonic()
    rng = random.Random(seed)
    draws: list[base.Draw] = []
    while len(draws) < count:
        draws += [d for d in base.draw_packets(rng, count) if d.kind != "localhost"]
    draws = [replace(d, index=i) for i, d in enumerate(draws[:count])]
    node_src = {d.dst: base.route_source(lab.topo, "node", d.dst) for d in draws if d.source == "node"}

    def source_ip(d: base.Draw) -> str:
        return node_src[d.dst] if d.source == "node" else (d.bind or lab.topo.pod_ip(d.source))

    preds = [base.predict(lab, d, source_ip(d)) for d in draws]

    def run(i: int) -> base.Seen:
        return base.send(lab, draws[i], any(o.verdict == "REJECT" and o.probability > 0 for o in preds[i].outcomes))

    limited_before = base.icmp_rate_limited(lab.topo)
    with ThreadPoolExecutor(base.WORKERS) as pool:
        seens = list(pool.map(run, range(len(draws))))
    rows = [base.Row(d, p, s) for d, p, s in zip(draws, preds, seens, strict=True)]
    for row in rows:
        row.problem, row.known = base.judge(lab, row.draw, row.pred, row.seen)
    limited = base.icmp_rate_limited(lab.topo)
    text = base.summary(rows, time.monotonic() - start, {n: limited[n] - limited_before[n] for n in base.NODES}, seed)
    print(text)
    bad = [r for r in rows if r.problem]
    assert not bad, f"{len(bad)} of {len(rows)} packets disagree (seed {seed}):\n{base.report(lab, bad)}\n{text}"
    assert {r.draw.kind for r in rows} == set(base.KINDS) - {"localhost"}
    assert {r.draw.source_kind for r in rows} == set(base.SOURCE_KINDS)
    assert {"reply", "refused", "timeout"} <= {r.seen.result for r in rows}, text
