"""Network namespaces: create, delete, run commands inside, bulk ``ip -batch`` setup.

Every function names the namespace it acts in: a `Namespace` (see :mod:`clew.kernel.namespace`)
or its name (`HOST`, ``""``, is this process's own). Nothing here ever ``setns()``es the calling
process: commands run through ``ip netns exec NS …`` or ``ip -n NS …`` in a child process (see
:mod:`clew.kernel.runner`, the one runner), so the caller's own namespace is never changed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.kernel import runner
from clew.kernel.errors import CommandFailed, KernelError
from clew.kernel.namespace import Namespace, Where, check_name
from clew.kernel.runner import Completed

if TYPE_CHECKING:
    import subprocess

IP = "ip"
NETNS_DIR = Path("/run/netns")
HOST = ""  # "the namespace this process is in": a node agent running with hostNetwork (Namespace.of)


def _check_name(name: str) -> None:
    check_name(name)


def execute(
    netns: Where,
    what: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> Completed:
    """Run ``argv`` as given (the caller has already built it for the namespace): `runner.execute`."""
    return runner.execute(netns, what, argv, input=input, check=check, timeout=timeout)


def exists(name: str) -> bool:
    """Whether the named namespace exists (``/run/netns/NAME``, where ``ip netns`` keeps them)."""
    _check_name(name)
    return (NETNS_DIR / name).exists()


def list_names(prefix: str = "") -> list[str]:
    """Names of the named namespaces that start with ``prefix``, sorted."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def create(name: str) -> None:
    """Create the namespace ``name``; fails with :class:`CommandFailed` if it already exists."""
    _check_name(name)
    execute(name, "netns add", [IP, "netns", "add", name])


def pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (``ip netns pids``)."""
    _check_name(name)
    proc = execute(name, "netns pids", [IP, "netns", "pids", name], check=False)
    if proc.returncode != 0:
        if not exists(name):
            return []
        raise CommandFailed(name, "netns pids", proc.args, proc.returncode, proc.stderr)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _signal_all(name: str, sig: signal.Signals, deadline_s: float) -> bool:
    """Send ``sig`` to every process in ``name``; True once none is left before the deadline."""
    end = time.monotonic() + deadline_s
    me = os.getpid()
    sent: set[int] = set()
    while True:
        left = [p for p in pids(name) if p != me]
        if not left:
            return True
        for pid in left:
            if pid not in sent:
                sent.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)


def kill_all(name: str, *, grace_s: float = 1.0) -> None:
    """End every process in ``name``: SIGTERM, then SIGKILL after ``grace_s``."""
    if _signal_all(name, signal.SIGTERM, grace_s):
        return
    if not _signal_all(name, signal.SIGKILL, 5.0):
        raise KernelError(name, "netns processes", f"still running after SIGKILL: {pids(name)}")


def delete(name: str, *, grace_s: float = 1.0) -> None:
    """Delete ``name`` after ending the processes still in it. Deleting a missing one is a no-op.

    Links inside the namespace (and the veth peers of those links) go with it.
    """
    if not exists(name):
        return
    kill_all(name, grace_s=grace_s)
    proc = execute(name, "netns del", [IP, "netns", "del", name], check=False)
    if proc.returncode != 0 and exists(name):
        raise CommandFailed(name, "netns del", proc.args, proc.returncode, proc.stderr)


def _require(netns: Where) -> None:
    runner.require(Namespace.of(netns))


def exec_argv(netns: Where, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns`` (as is for `HOST`, this process's own)."""
    return Namespace.of(netns).exec_argv(argv)


def run(
    netns: Where,
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> Completed:
    """Run ``argv`` inside ``netns`` and capture its output (text): `runner.run`.

    Raises :class:`NamespaceNotFound` if the namespace is missing and, if ``check``,
    :class:`CommandFailed` (with the command's stderr) when it exits non-zero.
    """
    return runner.run(netns, argv, input=input, check=check, timeout=timeout)


def spawn(netns: Where, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside ``netns`` without waiting for it (`runner.spawn`).

    ``ip netns exec`` execs the program, so the returned process's pid is the program's own.
    """
    return runner.spawn(netns, argv, **popen_kw)


def set_sysctl(netns: Where, key: str, value: str | int) -> None:
    """Set one sysctl inside ``netns`` (``sysctl -w``); net.* keys are per namespace."""
    set_sysctls(netns, {key: value})


def set_sysctls(netns: Where, values: Mapping[str, str | int]) -> None:
    """Set several sysctls inside ``netns`` with one ``sysctl -w`` process."""
    if not values:
        return
    run(netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])


def run_batch(netns: Where, commands: Iterable[str], *, timeout: float = 60.0) -> None:
    """Run many ``ip`` commands in one process: ``ip -n NETNS -batch -`` (`runner.batch`).

    Each command is one ``ip`` invocation without the leading ``ip`` (``link set lo up``). The
    first failing line stops the batch and is named in the error. ``netns=None`` (or `HOST`) runs
    in the caller's namespace and, to keep that namespace untouched, only accepts ``netns …``
    commands (e.g. ``netns add NAME`` for many namespaces at once).
    """
    lines = list(commands)
    own = Namespace.of(netns).own
    for cmd in lines:
        if own and cmd.strip() and cmd.split()[0] != "netns":
            raise ValueError(f"refusing to run {cmd!r} in the current netns; name a namespace")
    runner.batch(netns, IP, lines, what="ip -batch", timeout=timeout)
