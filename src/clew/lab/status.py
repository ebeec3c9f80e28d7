"""``clew lab status`` and ``clew lab list``: what a lab holds, checked against the processes
that run now (a pid is believed only with its start time and namespace, `clew.lab.procs`), as a
document (``-o json``, with ``apiVersion``/``kind`` and clew's version) and as kubectl-like tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from clew import __version__
from clew.kernel import bird, netns
from clew.kernel.errors import KernelError
from clew.lab import supervisor
from clew.lab.build import agent_status
from clew.lab.plan import prefix
from clew.lab.procs import pod_running, running
from clew.lab.state import STATE_ROOT, LabState, load, state_dir
from clew.podnet.bird import bgp_sessions

API_VERSION = "clew.lab/v1alpha1"


def _agent(root: Path, node: str, netns_name: str) -> dict[str, Any]:
    doc = supervisor.read_agent(root, node) or {}
    proc = supervisor.agent_proc(root, node)
    alive = running(proc, netns_name)
    if alive:
        phase = "Running"
    elif doc.get("state") == "waiting":
        phase = "BackOff"
    else:
        phase = "Down"
    return {
        "pid": proc.pid if proc and alive else None,
        "phase": phase,
        "restarts": int(doc.get("restarts", 0)),
        "last_exit": doc.get("last_exit"),
        "started_at": doc.get("started_at"),
    }


def _bgp(root: Path, node: str, netns_name: str) -> list[dict[str, str]] | str:
    """The node's BGP sessions as its BIRD reports them, or why they cannot be read."""
    socket = supervisor.node_dir(root, node) / "bird.ctl"
    if not socket.exists():
        return "no BIRD control socket"
    try:
        return bgp_sessions(bird.show(netns_name, socket, "protocols"))
    except KernelError as e:
        return str(e)


def lab_status(state: LabState, root: Path | None = None) -> dict[str, Any]:
    """The status document of a lab (what ``-o json`` prints); ``root``: its state folder."""
    root = root or state_dir(state.config.name)
    plan = state.plan
    sup = supervisor.supervisor_proc(root)
    nodes = []
    for n in plan.nodes:
        agent = _agent(root, n.name, n.netns)
        nodes.append({
            "name": n.name, "netns": n.netns, "ip": n.ip, "pod_cidr": n.pod_cidr, "agent": agent,
            "agent_pid": agent["pid"], "agent_alive": agent["phase"] == "Running",
            "last_sync": agent_status(root, n.name),
        })  # fmt: skip
        if state.config.backend == "bgp":
            nodes[-1]["bgp"] = _bgp(root, n.name, n.netns)
    pods = [{"name": p.name, "namespace": p.namespace, "node": p.node, "ip": p.ip, "ready": pod_running(p)}
            for p in sorted(state.pods.values(), key=lambda p: (p.namespace, p.name))]  # fmt: skip
    services = []
    for key, svc in sorted(state.services.items()):
        spec = svc.get("spec") or {}
        services.append({
            "name": key, "type": spec.get("type", "ClusterIP"), "clusterIP": spec.get("clusterIP"),
            "ports": [{"port": p.get("port"), "nodePort": p.get("nodePort"), "protocol": p.get("protocol", "TCP")}
                      for p in spec.get("ports") or []],
        })  # fmt: skip
    return {
        "apiVersion": API_VERSION,
        "kind": "LabStatus",
        "clewVersion": __version__,
        "name": state.config.name,
        "config": {
            "nodes": state.config.nodes,
            "backend": state.config.backend,
            "underlay": state.config.underlay,
            "serviceCIDR": state.config.service_cidr,
            "clusterCIDR": state.config.cluster_cidr,
        },
        "supervisor": {"pid": sup.pid if sup else None, "running": running(sup, plan.switch_netns)},
        "nodes": nodes,
        "pods": pods,
        "services": services,
    }


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as kubectl prints them: upper-case headers, left-aligned, three spaces apart."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def _age(since: object) -> str:
    if not isinstance(since, (int, float)) or since <= 0:
        return "-"
    s = max(0, int(time.time() - since))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _ports(ports: list[dict[str, Any]]) -> str:
    text = [f"{p['port']}:{p['nodePort']}/{p['protocol']}" if p.get("nodePort") else f"{p['port']}/{p['protocol']}"
            for p in ports]  # fmt: skip
    return ",".join(text) or "<none>"


def render_status(doc: dict[str, Any]) -> str:
    sup = doc["supervisor"]
    cfg = doc["config"]
    supervised = f"running (pid {sup['pid']})" if sup["running"] else "NOT RUNNING (clew lab restart NODE starts it)"
    head = f"lab {doc['name']}: {cfg['nodes']} nodes, {cfg['backend']}, {cfg['underlay']} underlay"
    head += f"; supervisor {supervised}"
    node_rows = []
    for n in doc["nodes"]:
        sync = n["last_sync"] or {}
        a = n["agent"]
        synced = "-" if not sync else "ok" if sync.get("ok") else "FAILED"
        node_rows.append([n["name"], n["ip"], n["pod_cidr"], a["phase"], str(a["pid"] or "-"), str(a["restarts"]),
                          _age(a["started_at"]) if a["phase"] == "Running" else "-", synced,
                          str(sync.get("rules", "-")), str(sync.get("rejections", "-"))])  # fmt: skip
    parts = [head, "", table(["NODE", "IP", "POD CIDR", "AGENT", "PID", "RESTARTS", "AGE", "SYNC", "RULES",
                              "REJECTED"], node_rows)]  # fmt: skip
    bgp = []
    for n in doc["nodes"]:
        sessions = n.get("bgp")
        if isinstance(sessions, str):  # why BIRD could not be asked
            bgp.append([n["name"], "-", "-", "-", sessions])
        for s in sessions if isinstance(sessions, list) else []:
            bgp.append([n["name"], s["name"], s["state"], s["since"], s["info"]])
    if bgp:
        parts += ["", table(["NODE", "BGP SESSION", "STATE", "SINCE", "INFO"], bgp)]
    if doc["pods"]:
        rows = [[p["namespace"], p["name"], p["node"], p["ip"], "Ready" if p["ready"] else "NotReady"]
                for p in doc["pods"]]  # fmt: skip
        parts += ["", table(["NAMESPACE", "POD", "NODE", "IP", "STATUS"], rows)]
    if doc["services"]:
        rows = []
        for s in doc["services"]:
            ns, name = s["name"].split("/", 1)
            rows.append([ns, name, s["type"], str(s["clusterIP"]), _ports(s["ports"])])
        parts += ["", table(["NAMESPACE", "SERVICE", "TYPE", "CLUSTER-IP", "PORT(S)"], rows)]
    return "\n".join(parts)


def list_labs(root: Path = STATE_ROOT) -> dict[str, Any]:
    """Every lab with state under ``root``, and lab namespaces whose lab has no state any more."""
    labs: list[dict[str, Any]] = []
    names = sorted(p.name for p in root.iterdir() if (p / "lab.json").exists()) if root.exists() else []
    for name in names:
        try:
            state = load(name, root)
        except (OSError, ValueError, TypeError, KeyError):
            state = None
        if state is None:
            labs.append({"name": name, "state": "unreadable"})
            continue
        lab_root = state_dir(name, root)
        plan = state.plan
        agents = sum(running(supervisor.agent_proc(lab_root, n.name), n.netns) for n in plan.nodes)
        labs.append({
            "name": name, "state": "up", "nodes": state.config.nodes, "backend": state.config.backend,
            "underlay": state.config.underlay, "agentsRunning": agents, "pods": len(state.pods),
            "services": len(state.services), "namespaces": len(netns.list_names(prefix(name))),
            "supervisor": running(supervisor.supervisor_proc(lab_root), plan.switch_netns),
        })  # fmt: skip
    known = {lab["name"] for lab in labs}
    orphans: dict[str, int] = {}
    for ns in netns.list_names():
        lab, sep, _ = ns.partition("-lab-")
        if sep and lab not in known:
            orphans[lab] = orphans.get(lab, 0) + 1
    for name, count in sorted(orphans.items()):
        labs.append({"name": name, "state": "orphaned", "namespaces": count})
    return {"apiVersion": API_VERSION, "kind": "LabList", "clewVersion": __version__, "items": labs}


def render_list(doc: dict[str, Any]) -> str:
    if not doc["items"]:
        return "no labs on this machine (clew lab up builds one)"
    rows = []
    for lab in doc["items"]:
        if lab["state"] != "up":
            hint = f"clew lab down --name {lab['name']}"
            rows.append([lab["name"], lab["state"].upper(), "-", "-", "-", "-", "-", hint])
            continue
        agents = f"{lab['agentsRunning']}/{lab['nodes']}" + ("" if lab["supervisor"] else " (no supervisor)")
        rows.append([lab["name"], "Up", str(lab["nodes"]), lab["backend"], lab["underlay"], agents,
                     str(lab["pods"]), str(lab["services"])])  # fmt: skip
    return table(["NAME", "STATUS", "NODES", "BACKEND", "UNDERLAY", "AGENTS", "PODS", "SERVICES"], rows)
