"""The one process runner of ``clew.kernel``: run a command in a `Namespace`, capture its
output, and turn every way it can fail into one :class:`~clew.kernel.errors.KernelError` line.

* `run` — one command, its output captured (text). Not finding the program or running past
  ``timeout`` (the child is killed) raise :class:`CommandFailed` with returncode -1; a non-zero
  exit does too when ``check``.
* `batch` — many ``ip`` / ``bridge`` commands in one ``TOOL [-n NAME] -batch -`` process; the
  first failing line stops it and :class:`BatchFailed` names it (``.line``).
* `spawn` — start a long-running command without waiting (``subprocess.Popen``).

Why ``posix_spawn`` and ``poll`` rather than ``subprocess`` for `run`: the CNI plugin is a
short-lived process per pod, and importing ``subprocess`` alone costs it ~4 ms (its whole ADD is
a few ms); `spawn` imports it on first use. Python's own file descriptors are not inheritable,
so the child gets only the three pipes.
"""

from __future__ import annotations

import os
import re
import select
import signal
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from clew.kernel.errors import BatchFailed, CommandFailed, NamespaceNotFound, NetnsUnusable
from clew.kernel.namespace import Namespace, Where

if TYPE_CHECKING:
    import subprocess

# Python ignores SIGPIPE (and SIGXFSZ); a child gets them back, as subprocess's restore_signals does.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_BATCH_FAILED = re.compile(r"Command failed -:(\d+)")
# what ``ip -n`` and ``nsenter`` say when the netns file is not (or no longer) a namespace
_NO_NETNS = ("Cannot open network namespace", "setting the network namespace", "nsenter:")


class Completed(NamedTuple):
    """A finished command (the fields `subprocess.CompletedProcess` has, for its callers)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def require(ns: Namespace) -> None:
    """Raise :class:`NamespaceNotFound` if ``ns`` is a name with no ``/run/netns`` entry.

    Namespace files (paths) are not checked here: entering them fails with
    :class:`NetnsUnusable`, which tells "gone" from "never was" no worse than a stat."""
    if ns.ref is not None and not ns.ref.startswith("/") and not ns.exists():
        raise NamespaceNotFound(ns)


def execute(
    ns: Where, what: str, argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 30.0
) -> Completed:
    """Run ``argv`` exactly as given (already built for ``ns``); ``ns`` and ``what`` label errors."""
    args = list(argv)
    child_in, to_child = os.pipe()
    from_child, child_out = os.pipe()
    err_from_child, child_err = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in ((child_in, 0), (child_out, 1), (child_err, 2))]
    try:
        pid = os.posix_spawnp(args[0], args, os.environ, file_actions=actions, setsigdef=_DEFAULT_SIGNALS)
    except OSError as exc:
        for fd in (child_in, to_child, from_child, child_out, err_from_child, child_err):
            os.close(fd)
        detail = "command not found" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise CommandFailed(ns, what, args, -1, f"{args[0]}: {detail}") from None
    for fd in (child_in, child_out, child_err):
        os.close(fd)
    data = (input or "").encode()
    try:
        out, err = _communicate(to_child, from_child, err_from_child, data, time.monotonic() + timeout)
    except TimeoutError:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise CommandFailed(ns, what, args, -1, f"timed out after {timeout:g}s") from None
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    done = Completed(args, code, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and done.returncode != 0:
        fail(ns, what, done)
    return done


def fail(ns: Where, what: str, done: Completed) -> None:
    """Raise the error for a command that exited non-zero (`NetnsUnusable` when the namespace
    file could not be entered)."""
    space = Namespace.of(ns)
    if space.ref is not None and space.ref.startswith("/") and done.stderr.startswith(_NO_NETNS):
        raise NetnsUnusable(space, what, done.args, done.returncode, done.stderr)
    raise CommandFailed(space, what, done.args, done.returncode, done.stderr)


def _communicate(to_child: int, out_fd: int, err_fd: int, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """Write ``data`` to the child and read both its outputs to EOF; closes the three fds."""
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    payload = memoryview(data)  # no copy of a 12 MB payload per chunk written
    written = 0
    poller = select.poll()
    poller.register(out_fd, select.POLLIN)
    poller.register(err_fd, select.POLLIN)
    open_fds = {out_fd, err_fd}
    if data:
        os.set_blocking(to_child, False)  # never block on the child's stdin while it waits on its stdout
        poller.register(to_child, select.POLLOUT)
        open_fds.add(to_child)
    else:
        os.close(to_child)
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            for fd, _event in poller.poll(left * 1000):
                if fd == to_child:
                    try:
                        written += os.write(fd, payload[written : written + 65536])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        written = len(payload)
                    if written >= len(payload):
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        os.close(fd)
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
    finally:
        for fd in open_fds:
            os.close(fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def run(
    ns: Where,
    argv: Sequence[str],
    *,
    what: str | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> Completed:
    """Run ``argv`` inside ``ns`` (``ip``/``bridge`` switch namespace themselves, the rest is
    started by ``ip netns exec`` or ``nsenter``) and capture its output.

    Raises :class:`NamespaceNotFound` for a missing named namespace and, if ``check``,
    :class:`CommandFailed` (with the command's stderr) when it exits non-zero."""
    space = Namespace.of(ns)
    require(space)
    label = what or (os.path.basename(argv[0]) if argv else "command")
    return execute(space, label, space.tool_argv(argv[0], argv[1:]), input=input, check=check, timeout=timeout)


def batch(ns: Where, tool: str, commands: Iterable[str], *, what: str | None = None, timeout: float = 60.0) -> None:
    """Run ``commands`` with ``TOOL [-n NAME] -batch -`` in one process (nothing if empty).

    Each command is one invocation without the tool's name (``route replace …``). The first
    failing command stops the batch; :class:`BatchFailed` names it. Not idempotent by itself:
    callers decide what a repeated command means."""
    lines = list(commands)
    for cmd in lines:
        if not cmd.strip() or "\n" in cmd:
            raise ValueError(f"bad {tool} batch command {cmd!r}")
    if not lines:
        return
    space = Namespace.of(ns)
    require(space)
    label = what or f"{tool} -batch"
    argv = space.tool_argv(tool, ["-batch", "-"])
    done = execute(space, label, argv, input="\n".join(lines) + "\n", check=False, timeout=timeout)
    if done.returncode == 0:
        return
    match = _BATCH_FAILED.search(done.stderr)
    line = int(match.group(1)) if match else 0
    detail = done.stderr.strip()
    if 1 <= line <= len(lines):
        detail += f" [line {line}: {lines[line - 1]}]"
    raise BatchFailed(space, label, argv, done.returncode, detail, line)


def spawn(ns: Where, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside ``ns`` without waiting for it.

    ``ip netns exec`` and ``nsenter`` exec the program, so the returned process's pid is the
    program's own."""
    import subprocess  # kept off the CNI plugin's import path (see the module doc)

    space = Namespace.of(ns)
    require(space)
    return subprocess.Popen(space.exec_argv(argv), **popen_kw)
