"""The supervisor's decisions, with stand-in agents (sleeping processes) and a fake clock: a dead
agent is started again after a doubling back-off, a requested restart is done at once, and
``agent.json`` always names the process that runs. No root needed."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clew.lab import supervisor
from clew.lab.plan import LabConfig, NodePlan, plan
from clew.lab.procs import running
from clew.lab.supervisor import BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Supervisor]:
    started: list[subprocess.Popen[bytes]] = []

    def fake_start(root: Path, n: NodePlan) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(proc)
        return proc

    monkeypatch.setattr(supervisor, "start_agent", fake_start)
    s = Supervisor(tmp_path, plan(LabConfig(name="u", nodes=2)), clock=Clock())
    yield s
    for proc in started:
        proc.kill()
        proc.wait()


def pid_of(s: Supervisor, node: str) -> int:
    doc = supervisor.read_agent(s.root, node)
    assert doc is not None
    pid: int = doc["pid"]
    return pid


def kill(s: Supervisor, node: str) -> None:
    slot = next(x for x in s.slots if x.node.name == node)
    assert slot.popen is not None
    slot.popen.send_signal(signal.SIGKILL)
    slot.popen.wait()


def test_every_node_gets_an_agent_and_agent_json_names_it(sup: Supervisor) -> None:
    sup.tick()
    for n in ("node-1", "node-2"):
        proc = supervisor.agent_proc(sup.root, n)
        assert proc is not None and running(proc)
        assert supervisor.read_agent(sup.root, n)["state"] == "running"  # type: ignore[index]


def test_a_dead_agent_is_started_again_after_a_doubling_backoff(sup: Supervisor) -> None:
    clock: Clock = sup.clock
    sup.tick()
    first = pid_of(sup, "node-1")
    kill(sup, "node-1")
    sup.tick()
    doc = supervisor.read_agent(sup.root, "node-1")
    assert doc is not None
    assert doc["state"] == "waiting" and doc["restarts"] == 1 and doc["last_exit"] == "killed by SIGKILL"
    assert doc["next_start_in"] == BACKOFF_FIRST
    sup.tick()
    assert supervisor.read_agent(sup.root, "node-1")["state"] == "waiting"  # type: ignore[index]
    clock.now += BACKOFF_FIRST
    sup.tick()
    second = pid_of(sup, "node-1")
    assert second != first and running(supervisor.agent_proc(sup.root, "node-1"))
    kill(sup, "node-1")  # dies again at once: twice the wait
    sup.tick()
    assert supervisor.read_agent(sup.root, "node-1")["next_start_in"] == 2 * BACKOFF_FIRST  # type: ignore[index]
    for _ in range(10):
        clock.now += BACKOFF_MAX
        sup.tick()
        kill(sup, "node-1")
        sup.tick()
    assert supervisor.read_agent(sup.root, "node-1")["next_start_in"] == BACKOFF_MAX  # type: ignore[index]
    clock.now += BACKOFF_MAX
    sup.tick()
    clock.now += STABLE_AFTER  # it ran long enough: back to the first back-off
    kill(sup, "node-1")
    sup.tick()
    assert supervisor.read_agent(sup.root, "node-1")["next_start_in"] == BACKOFF_FIRST  # type: ignore[index]
    assert pid_of(sup, "node-2") and running(supervisor.agent_proc(sup.root, "node-2"))  # untouched


def test_a_requested_restart_is_done_at_once(sup: Supervisor) -> None:
    sup.tick()
    first = supervisor.agent_proc(sup.root, "node-2")
    supervisor.request_restart(sup.root, "node-2")
    sup.tick()
    new = supervisor.agent_proc(sup.root, "node-2")
    assert new is not None and new != first and running(new)
    assert not running(first)
    doc = supervisor.read_agent(sup.root, "node-2")
    assert doc is not None and doc["restarts"] == 1 and doc["last_exit"] == "restarted on request"
    assert not (sup.root / "nodes" / "node-2" / supervisor.RESTART_FILE).exists()


def test_a_stopping_supervisor_starts_nothing(sup: Supervisor) -> None:
    sup.stop.set()
    sup.tick()
    assert supervisor.agent_proc(sup.root, "node-1") is None
