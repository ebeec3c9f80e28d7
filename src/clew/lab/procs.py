"""Is that process still the one the lab started? A bare pid is not enough: pids are reused, a
killed child stays a zombie until its parent reaps it, and ``kill(pid, 0)`` says yes to both.

A process is named by its pid *and* its start time (``/proc/<pid>/stat`` field 22, clock ticks
since boot), and it counts as running only if it is not a zombie and, when a namespace is
given, its network namespace is that one (same device and inode as ``/run/netns/<name>``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from clew.kernel import netns as kernel_netns
from clew.lab.state import Pod

GONE_STATES = ("Z", "X", "x")  # zombie, dead


@dataclass(frozen=True)
class ProcId:
    pid: int
    start: int  # start time in clock ticks after boot; 0: unknown (only the pid is checked)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of ``pid``, None if there is no such process."""
    if pid <= 0:
        return None
    try:
        text = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read
    except OSError:
        return None
    rest = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return rest[0], int(rest[19])


def identify(pid: int) -> ProcId | None:
    """The running process ``pid`` as a `ProcId`, None if it is gone or a zombie."""
    found = _stat(pid)
    if found is None or found[0] in GONE_STATES:
        return None
    return ProcId(pid, found[1])


def _netns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def in_netns(pid: int, netns: str) -> bool | None:
    """Whether ``pid`` runs in the named namespace; None when that cannot be read (no permission)."""
    try:
        mine = os.stat(f"/proc/{pid}/ns/net")
    except PermissionError:
        return None
    except OSError:
        return False
    want = _netns_id(str(kernel_netns.NETNS_DIR / netns))
    return want == (mine.st_dev, mine.st_ino)


def running(proc: ProcId | None, netns: str | None = None) -> bool:
    """``proc`` still runs (same pid and start time, not a zombie), in ``netns`` if given."""
    if proc is None:
        return False
    found = _stat(proc.pid)
    if found is None or found[0] in GONE_STATES:
        return False
    if proc.start and found[1] != proc.start:
        return False  # the pid was reused
    return netns is None or in_netns(proc.pid, netns) is not False


def pod_running(pod: Pod) -> bool:
    """The pod's echo server still runs, in the pod's namespace."""
    return running(ProcId(pod.pid, pod.start), pod.netns) if pod.pid else False
