"""A real multi-node cluster made of network namespaces on this machine, running clew."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from clew.cli.errors import UserError

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
Name = Annotated[str, typer.Option("--name", help="Lab name (namespaces <name>-lab-…).")]


def _root() -> None:
    if os.geteuid() != 0:
        raise UserError("the lab creates network namespaces: run it as root")


def _state(name: str):  # type: ignore[no-untyped-def]
    from clew.lab.state import load

    state = load(name)
    if state is None:
        raise UserError(f"no lab {name!r} is up (clew lab up first)")
    return state


@app.command("up")
def lab_up(
    name: Name = "clew",
    nodes: Annotated[int, typer.Option("--nodes", help="How many nodes.")] = 3,
    underlay: Annotated[str, typer.Option("--underlay", help="l2 or routed.")] = "l2",
    backend: Annotated[str, typer.Option("--backend", help="vxlan or host-gw.")] = "vxlan",
    proxy_mode: Annotated[str, typer.Option("--proxy-mode", help="iptables.")] = "iptables",
    service_cidr: Annotated[str, typer.Option("--service-cidr", help="Service range.")] = "10.96.0.0/12",
) -> None:
    """Build the lab: namespaces, underlay, nodes, and one clew agent per node."""
    _root()
    from clew.lab.build import LabError, up
    from clew.lab.plan import LabConfig
    from clew.lab.state import LabState, state_dir

    config = LabConfig(name=name, nodes=nodes, underlay=underlay, backend=backend, proxy_mode=proxy_mode,
                       service_cidr=service_cidr)  # fmt: skip
    try:
        config.validate()
        state = LabState(config)
        up(state, state_dir(name))
    except (ValueError, LabError) as e:
        raise UserError(str(e)) from None
    for n in state.plan.nodes:
        print(f"{n.name}: netns {n.netns}, {n.ip}, pods {n.pod_cidr}")
    print(f"lab {name} is up ({backend}, {underlay} underlay). Next: clew lab apply -f app.yaml")


@app.command("apply")
def lab_apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="Deployments and Services (YAML/JSON).")],
    name: Name = "clew",
) -> None:
    """Create or update Deployments (pods via clew-cni) and Services (IPs, NodePorts, slices)."""
    _root()
    from clew.lab import controlplane
    from clew.lab.build import LabError, wait_synced
    from clew.lab.pods import PodError
    from clew.lab.state import state_dir
    from clew.sources.manifests import load_objects

    state = _state(name)
    t0 = time.time()
    try:
        for line in controlplane.apply(state, state_dir(name), load_objects(file)):
            print(line)
        wait_synced(state, state_dir(name), since=t0)
    except (controlplane.ApplyError, PodError, LabError) as e:
        raise UserError(str(e)) from None
    print("applied; every node's agent has synced")


@app.command("status")
def lab_status(name: Name = "clew", as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Nodes, agents, pods and Services of the lab."""
    from clew.lab.build import agent_status, alive
    from clew.lab.state import state_dir

    state = _state(name)
    root = state_dir(name)
    nodes = [
        {"name": n.name, "netns": n.netns, "ip": n.ip, "pod_cidr": n.pod_cidr,
         "agent_pid": state.agents.get(n.name), "agent_alive": alive(state.agents.get(n.name, 0) or 0),
         "last_sync": agent_status(root, n.name)}
        for n in state.plan.nodes
    ]  # fmt: skip
    pods = [{"name": p.name, "node": p.node, "ip": p.ip, "ready": alive(p.pid)} for p in state.pods.values()]
    services = [
        {"name": k, "clusterIP": v["spec"]["clusterIP"], "type": v["spec"].get("type", "ClusterIP"),
         "ports": [(p.get("port"), p.get("nodePort")) for p in v["spec"].get("ports", [])]}
        for k, v in state.services.items()
    ]  # fmt: skip
    if as_json:
        print(json.dumps({"nodes": nodes, "pods": pods, "services": services}, indent=2))
        return
    for n in nodes:
        sync = n["last_sync"] or {}
        print(
            f"node {n['name']:<8} {n['ip']:<15} pods {n['pod_cidr']:<15} agent "
            f"{'running' if n['agent_alive'] else 'DOWN'}, last sync {'ok' if sync.get('ok') else 'failed'}, "
            f"{sync.get('rules', 0)} rules"
        )
    for p in sorted(pods, key=lambda p: p["name"]):
        print(f"pod  {p['name']:<12} {p['node']:<8} {p['ip']:<15} {'ready' if p['ready'] else 'not ready'}")
    for s in services:
        print(f"svc  {s['name']:<20} {s['type']:<10} {s['clusterIP']:<15} ports {s['ports']}")


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_exec(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A pod, a node (node-1) or ext.")],
    name: Name = "clew",
) -> None:
    """Run a command inside a pod's, a node's or the outside client's namespace: exec POD -- CMD."""
    from clew.kernel import netns

    state = _state(name)
    plan = state.plan
    if target in state.pods:
        ns = state.pods[target].netns
    elif target == "ext":
        ns = plan.ext_netns
    else:
        try:
            ns = plan.node(target).netns
        except KeyError:
            raise UserError(f"no pod or node {target!r} in lab {name}") from None
    argv = list(ctx.args)
    if not argv:
        raise UserError("give a command: clew lab exec POD -- CMD ARGS…")
    raise typer.Exit(subprocess.call(netns.exec_argv(ns, argv)))


@app.command("down")
def lab_down(name: Name = "clew") -> None:
    """Remove everything the lab made (namespaces, processes, state), also after a crash."""
    _root()
    from clew.lab.teardown import down

    removed = down(name)
    print(f"lab {name}: removed {len(removed)} namespaces")


@app.command("demo")
def lab_demo(name: Name = "clew") -> None:
    """A 3-node vxlan lab, a demo app, the pod matrix, ClusterIP and NodePort, a trace; then teardown."""
    _root()
    from clew.lab.build import LabError
    from clew.lab.demo import run

    start = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:5.1f}s] {text}", flush=True)

    try:
        report = run(say, name)
    except LabError as e:
        raise UserError(str(e)) from None
    pods = sorted(report.matrix)
    print("\nPod-to-pod matrix: the source address each destination saw (its own IP = no NAT)")
    print(" " * 8 + "".join(f"{p:>12}" for p in pods))
    for src in pods:
        print(f"{src:<8}" + "".join(f"{report.matrix[src].get(dst, '-'):>12}" for dst in pods))
    print("\nOne Service packet, explained (clew trace on the client pod's node):\n")
    print(report.story)
    verdict = "all checks passed" if not report.failures else f"{len(report.failures)} FAILED: {report.failures}"
    print(f"demo finished in {report.seconds:.1f}s, lab removed; {verdict}")
    if report.failures:
        sys.exit(1)
