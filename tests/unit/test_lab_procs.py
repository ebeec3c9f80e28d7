"""The lab believes a pid only with its start time: a zombie, a reused pid or a process in another
namespace is not the agent (``clew lab status`` stays true after restarts). No root needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from clew.lab.procs import ProcId, identify, in_netns, pod_running, running
from clew.lab.state import Pod


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_running_process_is_identified_by_pid_and_start_time(child: subprocess.Popen[bytes]) -> None:
    me = identify(child.pid)
    assert me is not None and me.pid == child.pid and me.start > 0
    assert running(me)
    assert not running(ProcId(child.pid, me.start + 1)), "same pid, another start time: a reused pid"
    assert running(ProcId(child.pid, 0)), "an unknown start time checks the pid only"


def test_a_zombie_is_not_running(child: subprocess.Popen[bytes]) -> None:
    me = identify(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
    assert os.path.exists(f"/proc/{child.pid}")
    assert identify(child.pid) is None
    assert not running(me)
    assert not running(ProcId(child.pid, 0))  # kill(pid, 0) would still say yes


def test_a_gone_process_is_not_running() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    me = identify(proc.pid) or ProcId(proc.pid, 1)
    proc.wait()
    assert not running(me)
    assert not running(None)
    assert not running(ProcId(0, 0))


def test_a_process_in_another_namespace_is_not_the_pods(child: subprocess.Popen[bytes]) -> None:
    me = identify(child.pid)
    assert in_netns(child.pid, "hlb-no-such-namespace") is False
    assert not running(me, "hlb-no-such-namespace")
    pod = Pod("p-0", "lab", "lab/p", {}, "node-1", "hlb-no-such-namespace", "10.244.1.2", {}, pid=child.pid)
    assert not pod_running(pod)
