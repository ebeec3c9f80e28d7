"""The lab's kubelet for node agents: keeps one ``clew agent`` running per node, as a DaemonSet's
pods are kept — a dead agent is started again after a back-off, a requested restart is done
at once.

One supervisor process runs per lab, inside the lab's switch namespace (``<lab>-lab-sw``), so
``clew lab down`` ends it with that namespace — first, before any node namespace, so it can
never start an agent into a namespace that is going away — and it is found by name even when
its state file is gone or every process was killed with SIGKILL.

Files, under the lab's state folder:

* ``supervisor.json`` — the supervisor's own pid and start time; ``supervisor.log``.
* ``nodes/<node>/agent.json`` — the agent process (pid, start time, restarts, last exit), the
  only record of which process is the node's agent (`read_agent`, checked with
  `clew.lab.procs.running`: a reused pid or a zombie is not the agent).
* ``nodes/<node>/restart`` — written by ``clew lab restart``: stop the agent, start it again now.

Back-off: 0.5 s after the first exit, doubling to 10 s, back to 0.5 s once an agent ran for
10 s (kubelet's is 10 s doubling to 5 min; a lab wants its agents back sooner). Each tick
(0.2 s) also merges the nodes' lease files into their Node objects (`clew.lab.leases`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clew.kernel import netns
from clew.kernel.errors import KernelError
from clew.lab.leases import LeaseMerger
from clew.lab.plan import LabPlan, NodePlan
from clew.lab.procs import ProcId, identify, running
from clew.lab.state import load, state_dir
from clew.sources.files import write_atomic

log = logging.getLogger("clew.lab.supervisor")
TICK = 0.2
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0  # an agent that ran this long is healthy: the back-off starts over
STOP_GRACE = 5.0  # SIGTERM, then SIGKILL after this long
AGENT_FILE = "agent.json"
RESTART_FILE = "restart"
SUPERVISOR_FILE = "supervisor.json"


def node_dir(root: Path, node: str) -> Path:
    return root / "nodes" / node


def agent_argv(root: Path, n: NodePlan) -> list[str]:
    d = node_dir(root, n.name)
    return [sys.executable, "-m", "clew", "agent", "--config", str(d / "kube-proxy.yaml"),
            "--objects", str(root / "objects"), "--netns", n.netns, "--node-name", n.name,
            "--net-conf", str(d / "net-conf.json"), "--state-dir", str(d)]  # fmt: skip


def start_agent(root: Path, n: NodePlan) -> subprocess.Popen[bytes]:
    """Start node ``n``'s agent in its namespace, its output appended to ``agent.log``."""
    d = node_dir(root, n.name)
    with open(d / "agent.log", "ab") as out:
        return netns.spawn(n.netns, agent_argv(root, n), stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_agent(root: Path, node: str) -> dict[str, Any] | None:
    """The node's ``agent.json`` (what the supervisor last wrote about its agent)."""
    return read_json(node_dir(root, node) / AGENT_FILE)


def agent_proc(root: Path, node: str) -> ProcId | None:
    doc = read_agent(root, node) or {}
    pid, start = doc.get("pid"), doc.get("start")
    return ProcId(pid, start) if isinstance(pid, int) and isinstance(start, int) and pid > 0 else None


def supervisor_proc(root: Path) -> ProcId | None:
    doc = read_json(root / SUPERVISOR_FILE) or {}
    pid, start = doc.get("pid"), doc.get("start")
    return ProcId(pid, start) if isinstance(pid, int) and isinstance(start, int) and pid > 0 else None


def supervisor_running(root: Path, plan: LabPlan) -> bool:
    return running(supervisor_proc(root), plan.switch_netns)


def spawn(name: str, plan: LabPlan) -> subprocess.Popen[bytes]:
    """Start lab ``name``'s supervisor in its switch namespace."""
    root = state_dir(name)
    argv = [sys.executable, "-m", "clew.lab.supervisor", "--name", name]
    with open(root / "supervisor.log", "ab") as out:
        proc = netns.spawn(plan.switch_netns, argv, stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return proc


def request_restart(root: Path, node: str) -> None:
    write_atomic(node_dir(root, node) / RESTART_FILE, f"{time.time()}\n")


@dataclass
class Slot:
    """One node's agent as the supervisor sees it."""

    node: NodePlan
    popen: subprocess.Popen[bytes] | None = None
    proc: ProcId | None = None  # the agent (a child, or adopted from an earlier supervisor)
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    next_start: float = 0.0  # monotonic time the next start is due
    started: float = 0.0  # monotonic time of the last start
    started_at: float = 0.0  # wall time of the last start
    last_exit: str | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None  # also reaps it
        return running(self.proc, self.node.netns)

    def exit_text(self) -> str:
        code = self.popen.returncode if self.popen is not None else None
        if code is None:
            return "exited"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


@dataclass
class Supervisor:
    root: Path
    plan: LabPlan
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Any = time.monotonic
    slots: list[Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leases = LeaseMerger(self.root, tuple(n.name for n in self.plan.nodes))
        for n in self.plan.nodes:
            slot = Slot(n)
            old = read_agent(self.root, n.name) or {}
            adopted = agent_proc(self.root, n.name)
            if adopted is not None and running(adopted, n.netns):  # an agent of an earlier supervisor
                slot.proc, slot.started, slot.started_at = adopted, self.clock(), float(old.get("started_at", 0))
                slot.restarts = int(old.get("restarts", 0))
            self.slots.append(slot)

    def tick(self) -> None:
        now = self.clock()
        for slot in self.slots:
            request = node_dir(self.root, slot.node.name) / RESTART_FILE
            if request.exists():
                request.unlink(missing_ok=True)
                if slot.proc is not None:
                    self._stop_agent(slot)
                    slot.restarts += 1
                    slot.last_exit = "restarted on request"
                slot.next_start, slot.backoff = now, BACKOFF_FIRST
            elif slot.proc is not None and not slot.alive():
                slot.last_exit = slot.exit_text()
                if now - slot.started >= STABLE_AFTER:
                    slot.backoff = BACKOFF_FIRST
                slot.next_start = now + slot.backoff
                slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
                slot.restarts += 1
                slot.proc, slot.popen = None, None
                log.warning("agent of %s %s; starting it again in %.1fs", slot.node.name, slot.last_exit,
                            slot.next_start - now)  # fmt: skip
                self._record(slot, "waiting")
            if slot.proc is None and now >= slot.next_start and not self.stop.is_set():
                self._start(slot)
        self.leases.merge()

    def _start(self, slot: Slot) -> None:
        try:
            slot.popen = start_agent(self.root, slot.node)
        except (OSError, KernelError) as e:
            log.error("cannot start the agent of %s: %s", slot.node.name, e)
            slot.next_start = self.clock() + slot.backoff
            slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
            return
        slot.proc = identify(slot.popen.pid) or ProcId(slot.popen.pid, 0)
        slot.started, slot.started_at = self.clock(), time.time()
        log.info("started the agent of %s: pid %d", slot.node.name, slot.popen.pid)
        self._record(slot, "running")

    def _stop_agent(self, slot: Slot) -> None:
        """SIGTERM (the agent leaves its rules in place), SIGKILL after `STOP_GRACE`."""
        proc = slot.proc
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not slot.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            end = self.clock() + STOP_GRACE
            while slot.alive() and self.clock() < end:
                time.sleep(0.02)
        slot.proc, slot.popen = None, None

    def _record(self, slot: Slot, state: str) -> None:
        doc = {
            "node": slot.node.name,
            "netns": slot.node.netns,
            "state": state,  # running | waiting (back-off)
            "pid": slot.proc.pid if slot.proc else 0,
            "start": slot.proc.start if slot.proc else 0,
            "started_at": slot.started_at,
            "restarts": slot.restarts,
            "last_exit": slot.last_exit,
            "next_start_in": max(0.0, round(slot.next_start - self.clock(), 2)) if state == "waiting" else 0.0,
        }
        write_atomic(node_dir(self.root, slot.node.name) / AGENT_FILE, json.dumps(doc, indent=2) + "\n")

    def run(self) -> None:
        me = identify(os.getpid())
        doc = {"pid": os.getpid(), "start": me.start if me else 0}
        write_atomic(self.root / SUPERVISOR_FILE, json.dumps(doc) + "\n")
        log.info("supervising the agents of %s", ", ".join(n.name for n in self.plan.nodes))
        while not self.stop.is_set():
            self.tick()
            self.stop.wait(TICK)
        log.info("supervisor stopping; the agents keep running until clew lab down")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clew.lab.supervisor", description="Keep a lab's agents running.")
    parser.add_argument("--name", required=True, help="the lab")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state = load(args.name)
    if state is None:
        print(f"no lab {args.name!r}", file=sys.stderr)
        return 2
    sup = Supervisor(state_dir(args.name), state.plan)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stop.set())
    sup.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
