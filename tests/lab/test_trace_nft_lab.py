"""Kernel agreement on a real ``clew lab`` whose agents run nftables mode (issue 9, must-show (a)).

tests/kernel/test_trace_agreement.py proves the tracer against clew's rules loaded into a
hand-made topology; test_trace_nft_clew.py does it with the nftables render loaded by ``nft -f``.
Here nothing is loaded by the test: a two-node lab (`running_lab`, lab names ``tl<4 hex>``) is
built with ``proxy_mode="nftables"``, so each node holds what its agent wrote — clew's
``ip clew`` table, the pod network's rules, flannel's vxlan — and the tracer reads each node live
(`from_netns`, what ``clew trace --netns`` does).

The same Services, endpoint layout (pods a, b, cl on node-1; c, d on node-2), random draws and
judge as test_trace_agreement.py (imported from tests/kernel), translated to the lab's addresses:
at least 300 seeded packets (``CLEW_TRACE_SEED``, ``CLEW_TRACE_PACKETS``) by every way in but
127.0.0.1 (localhost NodePorts are off in nftables mode), from pods on either node, node-1 itself
and the outside client from either of its addresses; each is traced, sent once for real, and what
the client saw must be one of the outcomes. Then ``--verify``'s halves (kernel/nft_trace +
trace/verify) on a seeded sample: the kernel's own ``nft monitor trace`` path equals one outcome's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from labkit import Lab, running_lab

from clew.kernel import netns
from clew.lab import controlplane
from clew.lab.echo import ProbeResult
from clew.trace.engine import trace
from clew.trace.node_view import NodeView, from_netns
from clew.trace.packet import Packet

# The classification machinery lives with the kernel tests (one judge for every agreement test).
sys.path.append(str(Path(__file__).resolve().parents[1] / "kernel"))  # last: shadows nothing
import service_set
import test_trace_agreement as base
from topology import EXT_ROUTES

pytestmark = pytest.mark.lab

DEFAULT_COUNT = 300
VERIFY_SAMPLE = 8
NS = "lab"
DEPLOY_ORDER = ("a", "c", "b", "d", "cl")  # placed round-robin: a, b, cl on node-1; c, d on node-2
ROLE = {"node-1": "node", "node-2": "node2"}  # the lab's node names → the base test's roles


class LabTopo:
    """What test_trace_agreement's helpers ask of a topology, answered by the running lab: roles
    ("node", "node2", "ext", pod letters) → namespaces, pod letters → the lab's pods."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        plan = lab.state.plan
        self.node_ns = {ROLE[n.name]: n.netns for n in plan.nodes}
        self.node_ip = {ROLE[n.name]: n.ip for n in plan.nodes}
        self.pods = {letter: lab.pods(letter)[0] for letter in DEPLOY_ORDER}
        self.server_letter = {p.name: letter for letter, p in self.pods.items()}
        self.ext_ns = plan.ext_netns

    def ns(self, who: str) -> str:
        if who in self.node_ns:
            return self.node_ns[who]
        if who == "ext":
            return self.ext_ns
        return self.pods[who].netns

    def pod_ip(self, letter: str) -> str:
        return self.pods[letter].ip

    def pod_node(self, letter: str) -> str:
        return ROLE[self.pods[letter].node]

    def run(self, who: str, argv: Sequence[str]) -> Any:
        return netns.run(self.ns(who), list(argv))

    def probe(
        self, from_: str, dst: str, port: int, proto: str = "tcp", timeout: float = 1.0, src: str | None = None
    ) -> ProbeResult:
        argv = [sys.executable, "-m", "clew.lab.echo", "probe", "--dst", dst, "--port", str(port)]
        argv += ["--proto", proto, "--count", "1", "--timeout", str(timeout)]
        if src is not None:
            argv += ["--src", src]
        out = netns.run(self.ns(from_), argv, check=False, timeout=timeout + 30).stdout
        result = ProbeResult.from_json(json.loads(out))
        # the lab's echo servers are named after their pod (a-0): the base judge knows letters
        named = [
            dataclasses.replace(a, server=self.server_letter.get(a.server or "", a.server)) for a in result.attempts
        ]
        return dataclasses.replace(result, attempts=named)


def deployment(letter: str) -> dict[str, Any]:
    """One echo pod, labelled for every base Service that lists it as an endpoint."""
    labels = {"pod": letter, **{f"s-{s.name}": "y" for s in base.SERVICES if letter in s.pods}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": letter, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"pod": letter}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "echo", "ports": [{"name": "http", "containerPort": base.PORT}]}]},
            },
        },
    }


def service(svc: service_set.Svc) -> dict[str, Any]:
    """The base Service, selecting its endpoint pods by label (the lab's control plane makes the slices)."""
    obj = service_set.service_object(svc)
    obj["metadata"]["namespace"] = NS
    obj["spec"]["selector"] = {f"s-{svc.name}": "y"}
    return obj


@dataclass
class NftLab:
    """base.Lab's shape (``topo``, ``views``) for the base helpers."""

    topo: LabTopo
    views: dict[str, NodeView]


@pytest.fixture(scope="module")
def nft_lab() -> Iterator[NftLab]:
    with running_lab(name_prefix="tl", nodes=2, proxy_mode="nftables") as lab:
        for letter in DEPLOY_ORDER:  # one at a time: the round-robin placement is in apply order
            controlplane.apply(lab.state, lab.root, [deployment(letter)])
        lab.apply([service(s) for s in base.SERVICES])
        topo = LabTopo(lab)
        assert {p: topo.pod_node(p) for p in DEPLOY_ORDER} == {
            p: node for node, pods in base.PODS.items() for p in pods
        }, "placement"
        topo.run("ext", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])  # the nodes' gateway sends nothing back
        topo.run("ext", ["ip", "addr", "add", f"{base.EXT_IP2}/24", "dev", "eth0"])
        for dst in (base.SERVICE_RANGE, *EXT_ROUTES):  # as a router in front of the cluster would
            topo.run("ext", ["ip", "route", "add", dst, "via", topo.node_ip["node"]])
        names = {n.ip: n.name for n in lab.state.plan.nodes}
        views = {role: from_netns(ns, node_names=names) for role, ns in topo.node_ns.items()}
        for role, v in views.items():
            assert v.nft is not None and v.nft.table("ip", "clew") is not None, f"{role}: no ip clew table"
            nat = v.ruleset.tables.get("nat")
            assert nat is None or "KUBE-SERVICES" not in nat.chains, f"{role}: iptables-mode rules left"
        yield NftLab(topo, views)


# ---------------------------------------------------------------------------- draws and prediction

KINDS = tuple(k for k in base.KINDS if k != "localhost")


def destinations(topo: LabTopo, svc: service_set.Svc, kind: str) -> list[tuple[str, str, int]]:
    """service_set's ways in, with the base topology's node addresses replaced by the lab's."""
    to_lab = {service_set.NODE_IP[r]: topo.node_ip[r] for r in base.NODES}
    return [(p, to_lab.get(dst, dst), port) for p, dst, port in service_set.destinations(svc, kind)]


def draw_packets(topo: LabTopo, rng: random.Random, count: int) -> list[base.Draw]:
    draws = []
    for i in range(count):
        kind = rng.choice(KINDS)
        svc = rng.choice([s for s in base.SERVICES if destinations(topo, s, kind)])
        proto, dst, dport = rng.choice(destinations(topo, svc, kind))
        source_kind = rng.choice(base.SOURCE_KINDS)
        bind = None
        if source_kind in ("pod@node", "pod@node2"):
            source = rng.choice(base.PODS["node" if source_kind == "pod@node" else "node2"])
        elif source_kind == "node":
            source = "node"
        else:
            source, bind = "ext", rng.choice((base.EXT_IP, base.EXT_IP2))
        draws.append(base.Draw(i, source, source_kind, bind, kind, svc.name, proto, dst, dport))
    return draws


def path_for(topo: LabTopo, draw: base.Draw) -> list[str]:
    """The nodes the packet crosses before the one whose rules act on it, then that one."""
    ip = topo.node_ip
    if draw.source_kind == "ext":
        return ["node2"] if draw.dst == ip["node2"] else ["node"]
    home = "node2" if draw.source_kind == "pod@node2" else "node"
    other = "node" if home == "node2" else "node2"
    return [home, other] if draw.dst == ip[other] else [home]


def predict(lab: NftLab, draw: base.Draw, src: str) -> base.Prediction:
    """Trace on each node of the path; a node the packet only passes must forward it unchanged but
    for the pod network's masquerade (pod → another node's address), which the next node sees."""
    path = path_for(lab.topo, draw)
    for node in path[:-1]:
        result = trace(lab.views[node], Packet(src=src, dst=draw.dst, proto=draw.proto, dport=draw.dport))
        outs = result.outcomes
        o = outs[0] if len(outs) == 1 else None
        if o is None or o.verdict != "ACCEPT" or o.dnat is not None or o.egress is None or o.egress.dev != "eth0":
            why = f"expected {node} to forward it out of eth0 un-DNATed, tracer says {base._outcomes_text(outs)}"
            return base.Prediction(path[: path.index(node) + 1], src, list(outs), why)
        src = str(o.source_seen) if o.masquerade and o.source_seen else src
    packet = Packet(src=src, dst=draw.dst, proto=draw.proto, dport=draw.dport)
    return base.Prediction(path, src, list(trace(lab.views[path[-1]], packet).outcomes))


def source_ip(lab: NftLab, d: base.Draw, node_src: Mapping[str, str]) -> str:
    return node_src[d.dst] if d.source == "node" else (d.bind or lab.topo.pod_ip(d.source))


def rejects(pred: base.Prediction) -> bool:
    return any(o.verdict == "REJECT" and o.probability > 0 for o in pred.outcomes)


# ---------------------------------------------------------------------------- the tests


def test_tracer_agrees_with_a_lab_node_in_nftables_mode(nft_lab: NftLab) -> None:
    lab = nft_lab
    seed = int(os.environ.get(base.SEED_ENV, base.DEFAULT_SEED))
    count = int(os.environ.get(base.COUNT_ENV, DEFAULT_COUNT))
    print(f"\nlab agreement in nftables mode: seed {seed} ({base.SEED_ENV}), {count} packets")
    start = time.monotonic()
    draws = draw_packets(lab.topo, random.Random(seed), count)
    node_src = {d.dst: base.route_source(lab.topo, "node", d.dst) for d in draws if d.source == "node"}  # type: ignore[arg-type]
    preds = [predict(lab, d, source_ip(lab, d, node_src)) for d in draws]

    def run(i: int) -> base.Seen:
        return base.send(lab, draws[i], rejects(preds[i]))  # type: ignore[arg-type]

    limited_before = base.icmp_rate_limited(lab.topo)  # type: ignore[arg-type]
    with ThreadPoolExecutor(base.WORKERS) as pool:
        seens = list(pool.map(run, range(len(draws))))
    # ICMP errors to one destination are rate-limited (6, then 1/s): eight workers sending ext's
    # packets at once can starve a REJECT's retries; those are sent again once the burst is over
    starved = [i for i, s in enumerate(seens) if s.result == "timeout" and rejects(preds[i])]
    for i in starved:
        seens[i] = run(i)
    rows = [base.Row(d, p, s) for d, p, s in zip(draws, preds, seens, strict=True)]
    for row in rows:
        row.problem, row.known = base.judge(lab, row.draw, row.pred, row.seen)  # type: ignore[arg-type]
    limited = base.icmp_rate_limited(lab.topo)  # type: ignore[arg-type]
    text = base.summary(rows, time.monotonic() - start, {n: limited[n] - limited_before[n] for n in base.NODES}, seed)
    print(f"{text}\n  REJECT timeouts sent again after the burst: {len(starved)}")
    bad = [r for r in rows if r.problem]
    report = base.report(lab, bad)  # type: ignore[arg-type]
    assert not bad, f"{len(bad)} of {len(rows)} packets disagree (seed {seed}):\n{report}\n{text}"
    assert {r.draw.kind for r in rows} == set(KINDS)
    assert {r.draw.source_kind for r in rows} == set(base.SOURCE_KINDS)
    assert {"reply", "refused", "timeout"} <= {r.seen.result for r in rows}, text


def test_verify_a_sample_on_the_lab_node(nft_lab: NftLab) -> None:
    """``clew trace --verify``'s halves on a seeded sample of the draws one node handles (the sticky
    Service left out: its affinity lists hold the earlier probes' clients): sent again with nftables
    tracing, the kernel's decisive steps equal one outcome's, and nothing of the check is left."""
    from clew.kernel.nft_trace import send_traced
    from clew.trace.verify import compare, format_comparison

    lab = nft_lab
    seed = int(os.environ.get(base.SEED_ENV, base.DEFAULT_SEED))
    draws = [d for d in draw_packets(lab.topo, random.Random(seed), DEFAULT_COUNT) if len(path_for(lab.topo, d)) == 1]
    pool = [d for d in draws if d.service != "sticky"]
    sample = random.Random(seed + 1).sample(pool, VERIFY_SAMPLE)
    problems = []
    for d in sample:
        node = path_for(lab.topo, d)[0]
        local = d.source == "node"
        src = base.route_source(lab.topo, "node", d.dst) if local else d.bind or lab.topo.pod_ip(d.source)  # type: ignore[arg-type]
        sent = send_traced(lab.topo.ns(node), src=src, dst=d.dst, proto=d.proto, dport=d.dport, local=local)
        result = trace(lab.views[node], Packet(src=src, dst=d.dst, proto=d.proto, dport=d.dport, iif=sent.iif))
        comparison = compare(result, sent.lines)
        if not comparison.agree or not sent.lines:
            problems.append(f"{d.label()} on {node}:\n{format_comparison(comparison, sent.via, sent.sender)}")
    print(f"\n--verify on {len(sample)} sampled packets of the nftables-mode lab: {len(sample) - len(problems)} agree")
    assert not problems, "\n".join(problems)
    for node_ns in lab.topo.node_ns.values():
        assert "clew_verify" not in netns.run(node_ns, ["nft", "list", "tables"]).stdout
