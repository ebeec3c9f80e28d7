"""``clew lab up``: namespaces, the underlay, node settings, Node objects and one agent per node.

Everything is created inside namespaces named ``<lab>-…``; the root namespace is never
touched (links are created directly in the namespaces they belong to). The switch's bridge is
created before any port is added, so a veth never shares its peer's interface index in
another namespace (which delays its link-up event by up to a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clew.kernel import netns
from clew.lab.plan import LabPlan, NodePlan
from clew.lab.state import LabState, save, state_dir
from clew.sources.files import folder_version, write_atomic

NODE_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
}


class LabError(Exception):
    """A lab that cannot be built or used; one line."""


def namespaces(plan: LabPlan) -> list[str]:
    names = [plan.switch_netns, plan.ext_netns, *(n.netns for n in plan.nodes)]
    if plan.router_netns:
        names.insert(1, plan.router_netns)
    return names


def _underlay_commands(plan: LabPlan) -> list[tuple[str, list[str]]]:
    """(namespace, ip -batch lines) in order."""
    cmds: list[tuple[str, list[str]]] = []
    if plan.router_netns is None:
        sw = plan.switch_netns
        lines = ["link add br0 type bridge", "link set br0 up", "link set lo up"]
        for n in plan.nodes:
            lines += [
                f"link add {n.switch_port} type veth peer name eth0 netns {n.netns}",
                f"link set {n.switch_port} master br0 up",
            ]
        lines += [f"link add ext type veth peer name eth0 netns {plan.ext_netns}", "link set ext master br0 up"]
        cmds.append((sw, lines))
    else:
        rt = plan.router_netns
        lines = ["link set lo up"]
        for n in plan.nodes:
            lines += [f"link add {n.switch_port} type veth peer name eth0 netns {n.netns}"]
        lines += [f"link add ext type veth peer name eth0 netns {plan.ext_netns}"]
        for link, addr in plan.router_addresses:
            lines += [f"addr add {addr} dev {link}", f"link set {link} up"]
        cmds.append((rt, lines))
        cmds.append((plan.switch_netns, ["link set lo up"]))
    for n in plan.nodes:
        cmds.append(
            (
                n.netns,
                [
                    "link set lo up",
                    f"addr add {n.ip}/{n.prefixlen} dev eth0",
                    "link set eth0 up",
                    f"route add default via {n.gateway}",
                ],
            )
        )
    ext = ["link set lo up", f"addr add {plan.ext_ip}/{plan.ext_prefixlen} dev eth0", "link set eth0 up"]
    if plan.ext_gateway:
        ext.append(f"route add default via {plan.ext_gateway}")
    cmds.append((plan.ext_netns, ext))
    return cmds


def _node_object(n: NodePlan) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name}},
        "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]},
    }


def _write_configs(state: LabState, root: Path) -> None:
    cfg = state.config
    objects = root / "objects"
    net_conf = {"Network": cfg.cluster_cidr, "Backend": {"Type": cfg.backend}}
    for n in state.plan.nodes:
        write_atomic(objects / "nodes" / f"{n.name}.json", json.dumps(_node_object(n), indent=2) + "\n")
        node_dir = root / "nodes" / n.name
        write_atomic(node_dir / "net-conf.json", json.dumps(net_conf, indent=2) + "\n")
        write_atomic(
            node_dir / "kube-proxy.yaml",
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
            f"mode: {cfg.proxy_mode}\nhostnameOverride: {n.name}\nclusterCIDR: {cfg.cluster_cidr}\n"
            "iptables:\n  minSyncPeriod: 0s\n  syncPeriod: 30s\n",
        )


def start_agent(state: LabState, n: NodePlan, root: Path) -> int:
    node_dir = root / "nodes" / n.name
    argv = [sys.executable, "-m", "clew", "agent", "--config", str(node_dir / "kube-proxy.yaml"),
            "--objects", str(root / "objects"), "--netns", n.netns, "--node-name", n.name,
            "--net-conf", str(node_dir / "net-conf.json"), "--state-dir", str(node_dir)]  # fmt: skip
    log = open(node_dir / "agent.log", "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = netns.spawn(
            n.netns, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()
    return proc.pid


def agent_status(root: Path, node: str) -> dict[str, Any] | None:
    path = root / "nodes" / node / "status.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _error(st: dict[str, Any]) -> str:
    podnet = st.get("podnet") or {}
    if podnet.get("error"):
        return f"pod network: {podnet['error']}"
    return f"service proxy: {st.get('error') or 'sync failed'}"


def _node_state(st: dict[str, Any] | None, version: str, since: float | None, peers: int | None) -> str:
    """One node's status against the folder ``version``: ``synced``, ``failed`` or ``pending``."""
    if not st:
        return "pending"
    current = st.get("source_version") == version
    fresh = since is not None and float(st.get("sync_started", 0)) >= since
    if not st.get("ok"):
        # the agent retries a failed sync only after its sync period: waiting is pointless
        return "failed" if current or fresh else "pending"
    if not current:
        return "pending"
    if peers is not None and (st.get("podnet") or {}).get("peers") != peers:
        return "pending"
    return "synced"


def wait_synced(
    state: LabState, root: Path, since: float | None = None, deadline_s: float = 30.0, *, converged: bool = False
) -> None:
    """Poll every node's status until its agent has synced the objects folder *as it is now*.

    Each agent reports the version of the folder its last sync saw (``FolderSource.version``);
    this waits until that equals the folder's current :func:`folder_version`, so neither an
    agent that saw half of a multi-file write nor one that synced some other change (a lease
    published by another node) ends the wait early. ``converged``: also wait until every
    node's pod network sees every other node's lease (what ``up`` needs). A failed sync of
    the current folder (or one that started after ``since``, a wall time) raises
    :class:`LabError` at once, naming the node and the error, in one line.
    """
    from clew.lab.controlplane import publish_leases

    end = time.monotonic() + deadline_s
    peers = len(state.plan.nodes) - 1 if converged else None
    pending = {n.name for n in state.plan.nodes}
    while pending:
        publish_leases(root, [n.name for n in state.plan.nodes])  # the agents' leases into their Nodes
        version = folder_version(root / "objects")
        failed: list[tuple[str, dict[str, Any]]] = []
        for name in sorted(pending):
            st = agent_status(root, name)
            verdict = _node_state(st, version, since, peers)
            if verdict == "synced":
                pending.discard(name)
            elif verdict == "failed" and st is not None:
                failed.append((name, st))
        if failed:
            name, st = failed[0]
            also = f" (also failing: {', '.join(n for n, _ in failed[1:])})" if len(failed) > 1 else ""
            raise LabError(f"{name}: {_error(st)}{also}")
        if pending and time.monotonic() > end:
            why = []
            for name in sorted(pending):
                st = agent_status(root, name) or {}
                error = st.get("error") or (st.get("podnet") or {}).get("error") or "no sync of the current objects"
                why.append(f"{name}: {error} (log: {root / 'nodes' / name / 'agent.log'})")
            raise LabError(f"agents did not sync within {deadline_s:g}s: " + "; ".join(why))
        if pending:
            time.sleep(0.05)


def up(state: LabState, root: Path) -> None:
    """Build the lab described by ``state.config``. On failure everything made so far is removed."""
    from clew.lab.teardown import down

    plan = state.plan
    existing = netns.list_names(plan.prefix)
    if existing:
        raise LabError(f"lab {state.config.name!r} is already up ({len(existing)} namespaces); run clew lab down")
    root.mkdir(parents=True, exist_ok=True)
    try:
        for name in namespaces(plan):
            netns.create(name)
        for ns, lines in _underlay_commands(plan):
            netns.run_batch(ns, lines)
        for n in plan.nodes:
            netns.set_sysctls(n.netns, NODE_SYSCTLS)
        if plan.router_netns:
            netns.set_sysctls(plan.router_netns, {"net.ipv4.ip_forward": 1})
        _write_configs(state, root)
        save(state)
        started = time.time()
        for n in plan.nodes:
            state.agents[n.name] = start_agent(state, n, root)
        save(state)
        wait_synced(state, root, since=started - 1, converged=True)
    except LabError as e:
        down(state.config.name)
        raise LabError(f"lab {state.config.name} did not come up (removed it again): {e}") from None
    except BaseException:
        down(state.config.name)
        raise


def lab_root(name: str) -> Path:
    return state_dir(name)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
