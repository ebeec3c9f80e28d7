"""``clew lab demo``: a 3-node vxlan lab, a demo app, and proof that the network works.

Steps (each reported as it finishes): build the lab; deploy ``web`` (6 replicas) with a
ClusterIP Service and a NodePort Service; every pod reaches every other pod and sees its real
address (no NAT on the pod network); every pod reaches the ClusterIP; the outside client
reaches the NodePort on every node; one ``clew trace`` story of a Service packet; teardown.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clew.kernel import netns
from clew.lab import controlplane
from clew.lab.build import up, wait_synced
from clew.lab.plan import LabConfig
from clew.lab.state import LabState, state_dir
from clew.lab.teardown import down

PORT = 8080
NODE_PORT = 30080

DEMO_APP: list[dict[str, Any]] = [
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "echo", "ports": [{"name": "http", "containerPort": PORT}]}]},
            },
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web-nodeport", "namespace": "demo"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": NODE_PORT}],
        },
    },
]


@dataclass
class DemoReport:
    matrix: dict[str, dict[str, str]] = field(default_factory=dict)  # from pod → to pod → seen source
    clusterip: dict[str, list[str]] = field(default_factory=dict)  # pod → servers reached
    nodeport: dict[str, list[str]] = field(default_factory=dict)  # node → servers reached
    story: str = ""  # the full trace (every hop)
    short: str = ""  # the same trace, one line per outcome
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def sweep(ns: str, targets: list[str], count: int = 1, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Probe ``targets`` (IP:PORT) from inside ``ns`` with the echo prober, one process."""
    argv = [sys.executable, "-m", "clew.lab.echo", "sweep", "--count", str(count), "--timeout", str(timeout)]
    for t in targets:
        argv += ["--target", t]
    out = netns.run(ns, argv, timeout=60).stdout
    result: list[dict[str, Any]] = json.loads(out)
    return result


def run(say: Callable[[str], None], name: str = "clew", proxy_mode: str = "iptables") -> DemoReport:
    report = DemoReport()
    start = time.monotonic()
    config = LabConfig(name=name, nodes=3, backend="vxlan", proxy_mode=proxy_mode)
    config.validate()
    state = LabState(config)
    root = state_dir(name)
    plan = state.plan
    try:
        up(state, root)
        nodes = ", ".join(f"{n.name} {n.ip} pods {n.pod_cidr}" for n in plan.nodes)
        say(f"lab up: 3 nodes, vxlan, {proxy_mode} mode, {nodes}")
        t0 = time.time()
        for line in controlplane.apply(state, root, DEMO_APP):
            say(f"  {line}")
        wait_synced(state, root, since=t0)
        web = state.services["demo/web"]["spec"]["clusterIP"]
        say(f"deployed demo/web: 6 pods, ClusterIP {web}:80, NodePort {NODE_PORT}; agents synced")
        pods = sorted(state.pods.values(), key=lambda p: p.name)
        for src in pods:
            results = sweep(src.netns, [f"{p.ip}:{PORT}" for p in pods if p is not src])
            row = report.matrix.setdefault(src.name, {})
            for p, r in zip([p for p in pods if p is not src], results, strict=True):
                a = r["attempts"][0]
                seen = a["seen"].split(":")[0] if a["ok"] else a["error"]
                row[p.name] = seen
                if seen != src.ip:
                    report.failures.append(f"{src.name} → {p.name}: saw {seen}, expected {src.ip}")
        say(
            f"pod-to-pod matrix: {sum(len(r) for r in report.matrix.values())} pairs, "
            f"{'every source address preserved (no NAT)' if not report.failures else 'FAILURES'}"
        )
        for src in pods:
            (r,) = sweep(src.netns, [f"{web}:80"], count=6)
            report.clusterip[src.name] = sorted(a["server"] or a["error"] for a in r["attempts"])
            if not all(a["ok"] for a in r["attempts"]):
                report.failures.append(f"{src.name} → ClusterIP {web}:80: {report.clusterip[src.name]}")
        say(
            f"pod → ClusterIP {web}:80: "
            + ", ".join(f"{k} reached {len(set(v))} pods" for k, v in report.clusterip.items())
        )
        for node in plan.nodes:
            (r,) = sweep(plan.ext_netns, [f"{node.ip}:{NODE_PORT}"], count=4)
            report.nodeport[node.name] = [a["server"] or a["error"] for a in r["attempts"]]
            if not all(a["ok"] for a in r["attempts"]):
                report.failures.append(f"external → {node.name}:{NODE_PORT}: {report.nodeport[node.name]}")
        say("external → NodePort: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in report.nodeport.items()))
        names = {n.ip: n.name for n in plan.nodes}
        client = next((p for p in pods if p.node != plan.nodes[0].name), pods[0])  # a pod elsewhere
        report.short, report.story = _story(plan.node(client.node).netns, client.ip, web, names)
    finally:
        down(name)
        report.seconds = time.monotonic() - start
    return report


def _story(node_netns: str, src: str, dst: str, node_names: dict[str, str]) -> tuple[str, str]:
    """The trace of one Service packet: (one line per outcome, every hop)."""
    from clew.trace.engine import trace
    from clew.trace.node_view import from_netns
    from clew.trace.packet import Packet
    from clew.trace.story import format_short, format_trace

    result = trace(from_netns(node_netns, node_names=node_names), Packet(src=src, dst=dst, dport=80))
    return format_short(result), format_trace(result)
