"""Helpers for whole-lab tests: a lab that is always taken down, app manifests, probes and the
checks that ``clew lab down`` left nothing behind.

Every lab gets a fresh short name ``t<4 hex>``, so its namespaces are ``t1a2b-lab-…`` and its
state is ``/run/clew/lab/t1a2b``; nothing here touches the caller's network namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clew.kernel import netns
from clew.lab import build, controlplane, demo, supervisor
from clew.lab.plan import LabConfig, prefix
from clew.lab.pods import NETWORK_NAME
from clew.lab.state import LabState, Pod, state_dir
from clew.lab.teardown import down

T = TypeVar("T")
PORT = 8080
NODE_PORT = 30080
NAMESPACE = "lab"
DEFAULT_CNI_STORE = Path("/var/lib/cni/networks") / NETWORK_NAME  # clew-cni's default dataDir
# Names of links the lab makes (inside its namespaces); none may ever appear in the caller's.
LAB_LINK = re.compile(r"^(n\d+|s\d+|rs\d+|ext|br\d+|cni0|flannel\.\d+|veth[0-9a-f]{8}|eth0)(@.*)?$")


def unique_name(name_prefix: str = "t") -> str:
    """``t<4 hex>`` (or ``<name_prefix><4 hex>``) with no namespace or state of that lab in use."""
    for _ in range(100):
        name = f"{name_prefix}{secrets.token_hex(2)}"
        if not netns.list_names(prefix(name)) and not state_dir(name).exists():
            return name
    raise RuntimeError(f"no free {name_prefix}<4 hex> lab name")


def poll_until(predicate: Callable[[], T], deadline_s: float, what: str, interval: float = 0.02) -> T:
    """Call ``predicate`` until it returns something truthy (returned); TimeoutError after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise TimeoutError(f"{what}: still not true after {deadline_s:g}s (last value {value!r})")
        time.sleep(interval)


def app(name: str, replicas: int, *, node_port: int | None = None) -> list[dict[str, Any]]:
    """A Deployment of echo pods on PORT with a ClusterIP Service (and a NodePort one)."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "echo", "ports": [{"name": "http", "containerPort": PORT}]}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    ]
    if node_port is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{name}-np", "namespace": NAMESPACE},
                "spec": {
                    "type": "NodePort",
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": node_port}],
                },
            }
        )
    return objects


def sweep(ns: str, targets: list[str], count: int = 1) -> list[dict[str, Any]]:
    """``demo.sweep``: TCP probes from inside ``ns``, one result per target (in order)."""
    return demo.sweep(ns, targets, count=count, timeout=2.0)


def assert_matrix(pods: list[Pod]) -> None:
    """Every pod reaches every other one, and the receiver saw the sender's own address (no NAT)."""
    assert len({p.node for p in pods}) > 1, "the pods must span nodes"
    bad = []
    for src in pods:
        others = [p for p in pods if p is not src]
        for dst, result in zip(others, sweep(src.netns, [f"{p.ip}:{PORT}" for p in others]), strict=True):
            (attempt,) = result["attempts"]
            seen = attempt["seen"].rsplit(":", 1)[0] if attempt["ok"] else attempt["error"]
            if not attempt["ok"] or attempt["server"] != dst.name or seen != src.ip:
                bad.append(f"{src.name}@{src.node} → {dst.name}@{dst.node}: {attempt}")
    assert not bad, "\n".join(bad)


def pids_alive(pids: set[int]) -> set[int]:
    """The pids among ``pids`` that still run (zombies count as gone) and are clew's."""
    left = set()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z" and b"clew" in cmdline:
            left.add(pid)
    return left


def reap(pids: set[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our children (killed agents)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def root_links() -> set[str]:
    """Names of the links in the caller's namespace (read only)."""
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


@dataclass
class Lab:
    """A running lab driven through the lab API; :meth:`close` takes it down and checks."""

    state: LabState
    links_before: set[str] = field(default_factory=root_links)

    @property
    def name(self) -> str:
        return self.state.config.name

    @property
    def root(self) -> Path:
        return state_dir(self.name)

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        """``clew lab apply``: pods, Services, slices; returns once every agent has synced them."""
        said = controlplane.apply(self.state, self.root, objects)
        build.wait_synced(self.state, self.root)
        return said

    def pods(self, deployment: str) -> list[Pod]:
        key = f"{NAMESPACE}/{deployment}"
        pods = [p for p in self.state.pods.values() if p.deployment == key]
        return sorted(pods, key=lambda p: int(p.name.rsplit("-", 1)[1]))

    def cluster_ip(self, service: str) -> str:
        ip: str = self.state.services[f"{NAMESPACE}/{service}"]["spec"]["clusterIP"]
        return ip

    def all_pids(self) -> set[int]:
        """Every process of the lab: agents, echo servers, anything else in its namespaces."""
        pids = set(self.agents().values()) | {p.pid for p in self.state.pods.values() if p.pid}
        for ns in netns.list_names(prefix(self.name)):
            pids.update(netns.pids(ns))
        return pids

    def agents(self) -> dict[str, int]:
        """node → pid of its agent, as the lab's supervisor recorded it."""
        found = {n.name: supervisor.agent_proc(self.root, n.name) for n in self.state.plan.nodes}
        return {node: proc.pid for node, proc in found.items() if proc is not None}

    def kill_agents(self) -> set[int]:
        """SIGKILL every node agent (pids from the supervisor's records); returns them once they are
        gone (the supervisor then starts new ones)."""
        agents = set(self.agents().values())
        for pid in agents:
            os.kill(pid, signal.SIGKILL)
        reap(agents)
        poll_until(lambda: not pids_alive(agents), 5.0, "agents killed with SIGKILL")
        return agents

    def close(self, run_down: Callable[[str], object] = down) -> None:
        """Take the lab down (``run_down``) and check nothing of it is left."""
        pids = self.all_pids()
        run_down(self.name)
        reap(pids)
        assert_gone(self.name, pids, self.links_before)


def assert_gone(name: str, pids: set[int], links_before: set[str]) -> None:
    """No namespace, process, state file or (in the caller's namespace) link of lab ``name``."""
    left_ns = netns.list_names(prefix(name))
    assert not left_ns, f"namespaces left behind: {left_ns}"
    left_pids = pids_alive(pids)
    assert not left_pids, f"processes left behind: {left_pids}"
    assert not state_dir(name).exists(), f"state left behind: {sorted(state_dir(name).rglob('*'))}"
    new_links = {n for n in root_links() - links_before if LAB_LINK.match(n)}
    assert not new_links, f"links appeared in the caller's namespace: {new_links}"
    # the lab's CNI config keeps the IPAM store and result cache under the state folder
    assert not DEFAULT_CNI_STORE.exists(), f"{DEFAULT_CNI_STORE} was written"


@contextlib.contextmanager
def running_lab(name_prefix: str = "t", **config: Any) -> Iterator[Lab]:
    """Build a lab through the API (``build.up``); always taken down (and checked) afterwards."""
    cfg = LabConfig(name=unique_name(name_prefix), **config)
    lab = Lab(LabState(cfg))
    try:
        build.up(lab.state, lab.root)
        yield lab
    finally:
        lab.close()


def clew(*args: str, timeout: float = 60.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m clew ARGS…`` as a user runs it (not checked); ``input`` is its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "clew", *args], capture_output=True, text=True, timeout=timeout, check=False, input=input
    )


def pod_mtu(ns: str, dev: str = "eth0") -> int:
    out = netns.run(ns, ["ip", "-j", "link", "show", dev]).stdout
    mtu: int = json.loads(out)[0]["mtu"]
    return mtu


def df_ping(ns: str, dst: str, size: int) -> subprocess.CompletedProcess[str]:
    """One don't-fragment ping of ``size`` payload bytes from inside ``ns``."""
    return netns.run(ns, ["ping", "-M", "do", "-c1", "-W1", "-s", str(size), dst], check=False, timeout=10)
