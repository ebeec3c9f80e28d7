"""Network namespaces: create, delete, run commands inside, bulk ``ip -batch`` setup.

Every function names the namespace it acts in. Nothing here ever ``setns()``es the calling
process: commands run through ``ip netns exec NS …`` or ``ip -n NS …`` in a child process, so the
caller's own namespace (on a shared machine, the host's) is never changed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clew.kernel.errors import CommandFailed, KernelError, NamespaceNotFound

IP = "ip"
NETNS_DIR = Path("/run/netns")
_BAD_NAME = re.compile(r"[/\s\x00]")
_BATCH_FAILED = re.compile(r"Command failed -:(\d+)")


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise ValueError(f"invalid network namespace name {name!r}")


def execute(
    netns: str | None,
    what: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as given (the caller has already put ``ip netns exec`` / ``ip -n`` in it).

    ``netns`` and ``what`` only label errors. Not finding the program or running past
    ``timeout`` raise :class:`CommandFailed` with returncode -1; so does a non-zero exit if
    ``check``.
    """
    args = list(argv)
    try:
        proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CommandFailed(netns, what, args, -1, f"{args[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(netns, what, args, -1, f"timed out after {timeout:g}s") from None
    if check and proc.returncode != 0:
        raise CommandFailed(netns, what, args, proc.returncode, proc.stderr)
    return proc


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


HOST = ""  # "the namespace this process is in": a node agent running with hostNetwork


def _require(netns: str) -> None:
    if netns == HOST:
        return
    if not exists(netns):
        raise NamespaceNotFound(netns)


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns`` (as is for `HOST`, this process's own)."""
    if netns == HOST:
        return list(argv)
    _check_name(netns)
    return [IP, "netns", "exec", netns, *argv]


def run(
    netns: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``netns`` and capture its output (text).

    Raises :class:`NamespaceNotFound` if the namespace is missing and, if ``check``,
    :class:`CommandFailed` (with the command's stderr) when it exits non-zero.
    """
    _require(netns)
    what = os.path.basename(argv[0]) if argv else "command"
    return execute(netns, what, exec_argv(netns, argv), input=input, check=check, timeout=timeout)


def spawn(netns: str, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside ``netns`` without waiting for it.

    ``ip netns exec`` execs the program, so the returned process's pid is the program's own.
    """
    _require(netns)
    return subprocess.Popen(exec_argv(netns, argv), **popen_kw)


def set_sysctl(netns: str, key: str, value: str | int) -> None:
    """Set one sysctl inside ``netns`` (``sysctl -w``); net.* keys are per namespace."""
    set_sysctls(netns, {key: value})


def set_sysctls(netns: str, values: Mapping[str, str | int]) -> None:
    """Set several sysctls inside ``netns`` with one ``sysctl -w`` process."""
    if not values:
        return
    run(netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])


def _batch_detail(stderr: str, commands: Sequence[str]) -> str:
    match = _BATCH_FAILED.search(stderr)
    if match is None:
        return stderr
    line = int(match.group(1))
    if 1 <= line <= len(commands):
        return f"{stderr.strip()} [line {line}: {commands[line - 1]}]"
    return stderr


def run_batch(netns: str | None, commands: Iterable[str], *, timeout: float = 60.0) -> None:
    """Run many ``ip`` commands in one process: ``ip -n NETNS -batch -``.

    Each command is one ``ip`` invocation without the leading ``ip`` (``link set lo up``). The
    first failing line stops the batch and is named in the error. ``netns=None`` runs in the
    caller's namespace and, to keep that namespace untouched, only accepts ``netns …`` commands
    (e.g. ``netns add NAME`` for many namespaces at once).
    """
    lines = list(commands)
    for cmd in lines:
        if not cmd.strip() or "\n" in cmd:
            raise ValueError(f"bad ip batch command {cmd!r}")
        if netns is None and cmd.split()[0] != "netns":
            raise ValueError(f"refusing to run {cmd!r} in the current netns; name a namespace")
    if not lines:
        return
    argv = [IP, "-batch", "-"] if netns is None else [IP, "-n", netns, "-batch", "-"]
    if netns is not None:
        _require(netns)
    proc = execute(netns, "ip -batch", argv, input="\n".join(lines) + "\n", check=False, timeout=timeout)
    if proc.returncode != 0:
        raise CommandFailed(netns, "ip -batch", argv, proc.returncode, _batch_detail(proc.stderr, lines))
