"""The tamper guard with a running agent: each shared chain flushed, each jump from a built-in
chain deleted, a foreign rule slipped into KUBE-SERVICES — all found, logged, counted and repaired
within seconds (target ≤ 2 s; the figure is printed, the assertion is generous for a busy CI)."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from poll import poll_until

from clew.bench.synthetic import every_chain
from clew.kernel import iptables, netns
from clew.proxy import names as n

pytestmark = pytest.mark.kernel
SHARED = [
    ("filter", n.KUBE_SERVICES), ("filter", n.KUBE_EXTERNAL_SERVICES), ("filter", n.KUBE_NODEPORTS),
    ("filter", n.KUBE_FORWARD), ("filter", n.KUBE_PROXY_FIREWALL), ("filter", n.KUBE_FIREWALL),
    ("nat", n.KUBE_SERVICES), ("nat", n.KUBE_NODEPORTS), ("nat", n.KUBE_POSTROUTING), ("nat", n.KUBE_MARK_MASQ),
]  # fmt: skip
JUMPS = [("filter", "INPUT"), ("filter", "FORWARD"), ("filter", "OUTPUT"),
         ("nat", "PREROUTING"), ("nat", "OUTPUT"), ("nat", "POSTROUTING")]  # fmt: skip
REPAIR_TARGET_S = 2.0
REPAIR_DEADLINE_S = 10.0  # generous: 2 CPUs shared with other test runs


@dataclass
class RunningAgent:
    ns: str
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.root / "agent.log").read_text()

    def chain(self, table: str, chain: str) -> list[str]:
        return sorted(iptables.iptables(self.ns, ["-t", table, "-S", chain]).stdout.splitlines())


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[RunningAgent]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    ns = f"clewg-{secrets.token_hex(2)}"
    objects = tmp_path / "objects"
    objects.mkdir()
    for i, obj in enumerate(every_chain(20)):
        (objects / f"{i:03d}.json").write_text(json.dumps(obj))
    config = tmp_path / "kube-proxy.yaml"
    config.write_text(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n"
        "hostnameOverride: node-0\nclusterCIDR: 10.244.0.0/16\n"
        "iptables:\n  localhostNodePorts: true\n  minSyncPeriod: 1s\n"
    )
    netns.create(ns)
    proc = None
    try:
        netns.run(ns, ["ip", "link", "set", "lo", "up"])
        argv = [sys.executable, "-m", "clew", "agent", "--config", str(config), "--objects", str(objects),
                "--netns", ns, "--state-dir", str(tmp_path)]  # fmt: skip
        with open(tmp_path / "agent.log", "ab") as log:
            proc = netns.spawn(ns, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        running = RunningAgent(ns, tmp_path, proc)

        def synced() -> bool:
            try:
                return bool(json.loads((tmp_path / "status.json").read_text()).get("ok"))
            except (OSError, ValueError):
                assert proc.poll() is None, f"the agent exited: {running.log}"
                return False

        poll_until(synced, 30.0, what="the agent's first sync")
        yield running
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        netns.delete(ns)


def _repair_time(agent: RunningAgent, table: str, chain: str, before: list[str]) -> float:
    start = time.monotonic()
    poll_until(lambda: agent.chain(table, chain) == before, REPAIR_DEADLINE_S, 0.05, f"{table}/{chain} repaired")
    return time.monotonic() - start


def _tampered_lines(agent: RunningAgent) -> list[str]:
    return [line for line in agent.log.splitlines() if 'msg="ruleset tampered"' in line]


def _new_report(agent: RunningAgent, seen: int) -> str:
    """The first "ruleset tampered" log line after the ``seen`` first ones."""
    lines = poll_until(lambda: _tampered_lines(agent)[seen:], 5.0, what="a tampered log line")
    return lines[0]


METRICS = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:10249/metrics').read().decode())"


def test_every_shared_chain_and_jump_is_repaired_and_reported(agent: RunningAgent) -> None:
    times: dict[str, float] = {}
    seen = 0
    for table, chain in SHARED:
        before = agent.chain(table, chain)
        assert len(before) > 1, f"{table}/{chain} holds no rule in this cluster"
        iptables.iptables(agent.ns, ["-t", table, "-F", chain])
        times[f"flush {table}/{chain}"] = _repair_time(agent, table, chain, before)
        assert f"table={table} chain={chain} change=" in _new_report(agent, seen)
        seen = len(_tampered_lines(agent))
    for table, chain in JUMPS:
        before = agent.chain(table, chain)
        jump = next(line for line in before if line.startswith("-A"))
        iptables.iptables(agent.ns, ["-t", table, "-D", *shlex.split(jump)[1:]])
        assert agent.chain(table, chain) != before
        times[f"jump deleted from {table}/{chain}"] = _repair_time(agent, table, chain, before)
        line = _new_report(agent, seen)
        assert f"table={table} chain={chain} change=" in line and "missing" in line
        seen = len(_tampered_lines(agent))
    before = agent.chain("nat", n.KUBE_SERVICES)
    iptables.iptables(agent.ns, ["-t", "nat", "-I", n.KUBE_SERVICES, "-d", "10.96.0.1", "-j", "ACCEPT"])
    times["foreign rule in nat/KUBE-SERVICES"] = _repair_time(agent, "nat", n.KUBE_SERVICES, before)
    print("\nrepair times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in times.items()))
    assert max(times.values()) <= REPAIR_DEADLINE_S
    metrics = netns.run(agent.ns, [sys.executable, "-c", METRICS]).stdout
    assert 'clew_ruleset_tampered_total{chain="KUBE-FORWARD",table="filter"} 1.0' in metrics
    assert 'clew_ruleset_tampered_total{chain="POSTROUTING",table="nat"} 1.0' in metrics


def test_the_generation_follows_the_namespace_and_every_iptables_commit() -> None:
    from clew.kernel.nfgen import Generation

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    ns = f"clewg-{secrets.token_hex(2)}"
    netns.create(ns)
    try:
        gen = Generation(ns)
        first = gen()
        iptables.iptables(ns, ["-t", "filter", "-N", "MINE"])
        assert gen() == first + 1
        iptables.iptables(ns, ["-t", "filter", "-S", "MINE"])  # a read commits nothing
        iptables.restore(ns, "*filter\n-A MINE -j ACCEPT\nCOMMIT\n*nat\n:MINE - [0:0]\nCOMMIT\n")
        assert gen() == first + 3  # one commit per table
        netns.delete(ns)
        netns.create(ns)  # the same name, another namespace: the reader opens a new socket
        iptables.iptables(ns, ["-t", "filter", "-N", "MINE"])
        fresh = gen()
        iptables.iptables(ns, ["-t", "filter", "-X", "MINE"])
        assert gen() == fresh + 1
        gen.close()
    finally:
        netns.delete(ns)
