"""``clew lab up``: namespaces, the underlay, node settings, Node objects and one agent per node
(started and kept running by the lab's supervisor, `clew.lab.supervisor`).

Everything is created inside namespaces named ``<lab>-…``; the root namespace is never
touched (links are created directly in the namespaces they belong to). The switch's bridge is
created before any port is added, so a veth never shares its peer's interface index in
another namespace (which delays its link-up event by up to a second).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clew.kernel import netns
from clew.lab import supervisor
from clew.lab.bgp import node_backend, start_router
from clew.lab.leases import LeaseMerger
from clew.lab.plan import PROXY_MODES, LabConfig, LabPlan, NodePlan
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
        rt, sw = plan.router_netns, plan.switch_netns
        lines = ["link set lo up"]
        switch, uplinks = ["link set lo up"], []
        if plan.segments:  # shared segments: a bridge each in the switch namespace, the router on it
            for (bridge, members), (port, _) in zip(plan.segments, plan.router_addresses, strict=False):
                switch += [f"link add {bridge} type bridge", f"link set {bridge} up"]
                lines += [f"link add {port} type veth peer name r{port} netns {sw}"]
                for n in plan.nodes:
                    if n.netns in members:
                        switch += [f"link add {n.switch_port} type veth peer name eth0 netns {n.netns}",
                                   f"link set {n.switch_port} master {bridge} up"]  # fmt: skip
                uplinks.append(f"link set r{port} master {bridge} up")
        else:
            for n in plan.nodes:
                lines += [f"link add {n.switch_port} type veth peer name eth0 netns {n.netns}"]
        lines += [f"link add ext type veth peer name eth0 netns {plan.ext_netns}"]
        for link, addr in plan.router_addresses:
            lines += [f"addr add {addr} dev {link}", f"link set {link} up"]
        cmds += [(sw, switch), (rt, lines)]  # bridges first, then the router's ports moved into them
        if uplinks:
            cmds.append((sw, uplinks))
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
    backend = node_backend(state.plan) if cfg.backend == "bgp" else {"Type": cfg.backend}
    net_conf = {"Network": cfg.cluster_cidr, "Backend": backend}
    for n in state.plan.nodes:
        write_atomic(objects / "nodes" / f"{n.name}.json", json.dumps(_node_object(n), indent=2) + "\n")
        node_dir = root / "nodes" / n.name
        write_atomic(node_dir / "net-conf.json", json.dumps(net_conf, indent=2) + "\n")
        write_atomic(node_dir / "kube-proxy.yaml", kube_proxy_yaml(cfg, n.name, cfg.proxy_mode))


def kube_proxy_yaml(cfg: LabConfig, node: str, mode: str) -> str:
    """A node agent's KubeProxyConfiguration: the lab's settings, the node's name and proxy mode."""
    return (
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        f"mode: {mode}\nhostnameOverride: {node}\nclusterCIDR: {cfg.cluster_cidr}\n"
        "iptables:\n  minSyncPeriod: 0s\n  syncPeriod: 30s\n"
    )


def set_proxy_mode(state: LabState, root: Path, node: str, mode: str) -> None:
    """Give ``node``'s agent another proxy mode from its next start (``clew lab restart
    --proxy-mode``): the agent that starts in one mode removes the other mode's rules."""
    if mode not in PROXY_MODES:
        raise LabError(f"--proxy-mode {mode!r}: expected {' or '.join(PROXY_MODES)}")
    n = _node(state, node)
    write_atomic(root / "nodes" / n.name / "kube-proxy.yaml", kube_proxy_yaml(state.config, n.name, mode))


def _node(state: LabState, node: str) -> NodePlan:
    try:
        return state.plan.node(node)
    except KeyError:
        known = ", ".join(x.name for x in state.plan.nodes)
        raise LabError(f"no node {node!r} in lab {state.config.name} (its nodes: {known})") from None


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


def _node_state(
    st: dict[str, Any] | None, version: str, since: float | None, peers: int | None, must_be_fresh: bool = False
) -> str:
    """One node's status against the folder ``version``: ``synced``, ``failed`` or ``pending``.
    ``must_be_fresh``: only a sync that started after ``since`` counts (a restarted agent's)."""
    if not st:
        return "pending"
    current = st.get("source_version") == version
    fresh = since is not None and float(st.get("sync_started", 0)) >= since
    if must_be_fresh and not fresh:
        return "pending"
    if not st.get("ok"):
        # the agent retries a failed sync only after its sync period: waiting is pointless
        return "failed" if current or fresh else "pending"
    if not current:
        return "pending"
    if peers is not None and (st.get("podnet") or {}).get("peers") != peers:
        return "pending"
    return "synced"


def wait_synced(
    state: LabState,
    root: Path,
    since: float | None = None,
    deadline_s: float = 30.0,
    *,
    converged: bool = False,
    fresh: frozenset[str] = frozenset(),
    progress: Callable[[str, int, int], None] | None = None,
) -> None:
    """Poll every node's status until its agent has synced the objects folder *as it is now*.

    Each agent reports the version of the folder its last sync saw (``FolderSource.version``);
    this waits until that equals the folder's current :func:`folder_version`, so neither an
    agent that saw half of a multi-file write nor one that synced some other change (a lease
    published by another node) ends the wait early. ``converged``: also wait until every
    node's pod network sees every other node's lease (what ``up`` needs). A failed sync of
    the current folder (or one that started after ``since``, a wall time) raises
    :class:`LabError` at once, naming the node and the error, in one line. Nodes in ``fresh``
    count only with a sync that started after ``since`` (an agent that was just restarted).
    ``progress`` hears ("agents synced", done, total) while it waits.
    """
    end = time.monotonic() + deadline_s
    peers = len(state.plan.nodes) - 1 if converged else None
    pending = {n.name for n in state.plan.nodes}
    leases = LeaseMerger(root, tuple(sorted(pending)))
    while pending:
        leases.merge()  # the supervisor does too; this also works while it is down
        version = folder_version(root / "objects")
        failed: list[tuple[str, dict[str, Any]]] = []
        for name in sorted(pending):
            st = agent_status(root, name)
            verdict = _node_state(st, version, since, peers, name in fresh)
            if verdict == "synced":
                pending.discard(name)
            elif verdict == "failed" and st is not None:
                failed.append((name, st))
        if progress is not None:
            progress("agents synced", len(state.plan.nodes) - len(pending), len(state.plan.nodes))
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
    # no namespace: whatever state is left is a dead lab's (agent records, IPAM stores, statuses)
    shutil.rmtree(root, ignore_errors=True)
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
        if plan.router_netns and state.config.backend == "bgp":
            start_router(plan, root)  # the nodes' route reflector
        save(state)
        started = time.time()
        wait_agents_started(state, root, supervisor.spawn(state.config.name, plan))
        wait_synced(state, root, since=started - 1, converged=True)
    except LabError as e:
        down(state.config.name)
        raise LabError(f"lab {state.config.name} did not come up (removed it again): {e}") from None
    except BaseException:
        down(state.config.name)
        raise


def lab_root(name: str) -> Path:
    return state_dir(name)


def wait_agents_started(state: LabState, root: Path, sup: subprocess.Popen[bytes], deadline_s: float = 15.0) -> None:
    """Poll until the supervisor has started every node's agent (``agent.json``)."""
    end = time.monotonic() + deadline_s
    while True:
        missing = [n.name for n in state.plan.nodes if supervisor.agent_proc(root, n.name) is None]
        if not missing:
            return
        if sup.poll() is not None or time.monotonic() > end:
            log = root / "supervisor.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            why = f": {tail[0]}" if tail else ""
            raise LabError(f"the agents' supervisor did not start the agents of {', '.join(missing)}{why}")
        time.sleep(0.05)


def agent_rejections(state: LabState, root: Path) -> list[str]:
    """The objects the node agents rejected, one line each, naming the nodes that did.

    An agent's ``status.json`` counts its rejections (``rejections``) and may list them
    (``rejected``: lines ``Kind ns/name: field: reason``). Where an agent only counts them, the
    objects folder is read with the agents' own code (`clew.model.from_kube.build_snapshot`) to
    name them: the same folder, the same code, the same verdicts.
    """
    by_item: dict[str, set[str]] = {}
    counting: list[str] = []
    for n in state.plan.nodes:
        st = agent_status(root, n.name) or {}
        listed = st.get("rejected")
        if isinstance(listed, list):
            for item in listed:
                by_item.setdefault(str(item), set()).add(n.name)
        elif st.get("rejections"):
            counting.append(n.name)
    if counting:
        for item in folder_rejections(root / "objects"):
            by_item.setdefault(item, set()).update(counting)
    return [f"{item} (rejected by {', '.join(sorted(nodes))})" for item, nodes in sorted(by_item.items())]


def folder_rejections(objects: Path) -> list[str]:
    """What `build_snapshot` rejects in a folder of manifests, and the files that do not parse."""
    from clew.model.from_kube import build_snapshot
    from clew.sources.files import IGNORED_KINDS
    from clew.sources.manifests import ManifestError, manifest_files, parse_text

    found: list[Any] = []
    problems = []
    for path in manifest_files(objects) if objects.exists() else []:
        try:
            found.extend(parse_text(path.read_text(encoding="utf-8"), str(path)))
        except (ManifestError, OSError, UnicodeDecodeError) as e:
            problems.append(str(e))
    snap = build_snapshot(found, ignored_kinds=IGNORED_KINDS)
    return problems + [str(r) for r in snap.rejections]


def restart_agent(state: LabState, root: Path, node: str, deadline_s: float = 30.0) -> tuple[int, int]:
    """Have the supervisor restart ``node``'s agent (starting the supervisor if it is not running)
    and wait until the new agent has synced; returns (old pid or 0, new pid)."""
    from clew.lab.procs import running

    n = _node(state, node)
    old = supervisor.agent_proc(root, n.name)
    started = time.time()
    supervisor.request_restart(root, n.name)
    if not supervisor.supervisor_running(root, state.plan):
        supervisor.spawn(state.config.name, state.plan)
    end = time.monotonic() + deadline_s
    while True:
        new = supervisor.agent_proc(root, n.name)
        if new is not None and new != old and running(new, n.netns):
            break
        if time.monotonic() > end:
            raise LabError(f"{node}: the supervisor did not start a new agent within {deadline_s:g}s "
                           f"(log: {root / 'supervisor.log'})")  # fmt: skip
        time.sleep(0.05)
    wait_synced(state, root, since=started, deadline_s=max(1.0, end - time.monotonic()), fresh=frozenset({n.name}))
    return (old.pid if old else 0), new.pid
