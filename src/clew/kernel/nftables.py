"""The nftables side of the kernel seam: what the nftables proxy mode (and the tools that read
nftables) may ask of a node's netfilter. Implemented for real by `NodeNft` (a long-lived
libnftables context inside the node's namespace) and by a stateful fake in
``clew.fakes.nft`` for tests without root.

Contract (both implementations):
* ``run(script)``: one atomic transaction of nft commands (``add``/``delete``/``flush``/
  ``create`` of tables, chains, sets, maps, elements and rules). All or nothing; on refusal it
  raises `clew.kernel.errors.KernelError` with nft's message and changes nothing.
* ``check(script)``: as ``run`` but only checks (``nft -c``): nothing changes.
* ``list_json(what)``: ``nft -j list <what>`` parsed (``"ruleset"``, ``"table ip clew"``,
  ``"chains"``…); reading a table of 100k elements costs seconds: not per sync.
* ``has_table(family, name)``: cheap existence check (``list tables``: no elements read).
* ``close()``: release the context (the worker process, if any).

How `NodeNft` reaches the namespace: a libnftables context is bound to the namespace it was
*created* in, and clew never moves a process between namespaces, so for another namespace the
context lives in a worker (`clew.kernel.nft_worker`) started inside it through the runner; for
this process's own namespace it lives in-process. Without python3-nftables (or libnftables) it
falls back to ``nft -f -`` per call through the runner, and logs that once. Measured choice:
see ``clew.bench.nft_seam`` and the design notes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
import weakref
from typing import Any, Protocol

from clew.kernel import nft_worker, runner
from clew.kernel.errors import KernelError, NamespaceNotFound
from clew.kernel.namespace import Namespace, Where

log = logging.getLogger(__name__)

NFT = "nft"
WHAT = "nft"  # how errors name the object acted on: ``nft in netns X: Error: …``
_MAX_COMMAND_SHOWN = 200
_fallback_logged = False


class NftKernel(Protocol):
    def run(self, script: str) -> None: ...

    def check(self, script: str) -> None: ...

    def list_json(self, what: str = "ruleset") -> dict[str, Any]: ...

    def has_table(self, family: str, name: str) -> bool: ...

    def close(self) -> None: ...


_LOCATION = re.compile(r"^\S*:(\d+):\d+(?:-\d+)?: (Error: .*)$")


def one_line(err: str) -> str:
    """nft's error output as one line: the first ``Error:``, the line number and the command it
    points at (not the caret line), and how many more errors there were. Pure."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if "Error:" in line]
    if not errors:
        return " ".join(" ".join(lines).split()) or "(no message)"
    first = errors[0]
    located = _LOCATION.match(lines[first])
    message = located.group(2) if located else lines[first][lines[first].index("Error:") :]
    command = lines[first + 1].strip() if first + 1 < len(lines) else ""
    if command and set(command) <= set("^~ "):
        command = ""
    if len(command) > _MAX_COMMAND_SHOWN:
        command = command[:_MAX_COMMAND_SHOWN] + " …"
    where = f"line {located.group(1)}: " if located else ""
    text = f"{message} [{where}{command}]" if command else message
    if len(errors) > 1:
        text += f" (+{len(errors) - 1} more errors)"
    return text


def has_table_in(listing: dict[str, Any], family: str, name: str) -> bool:
    """Whether an ``nft -j list tables`` answer holds ``family name``. Pure."""
    for item in listing.get("nftables", []):
        table = item.get("table") if isinstance(item, dict) else None
        if table and table.get("family") == family and table.get("name") == name:
            return True
    return False


def nftables_importable() -> bool:
    """Whether python3-nftables can be imported (by this interpreter, hence by the worker)."""
    return importlib.util.find_spec("nftables") is not None


def nft_kernel_for(netns: Where, *, timeout: float = 120.0) -> NftKernel:
    """The real `NftKernel` of a node: `NodeNft` in ``netns`` (None/"" = this process's own)."""
    return NodeNft(netns, timeout=timeout)


class _Backend(Protocol):
    def ask(self, op: bytes, text: str) -> tuple[bool, str, str]: ...

    def close(self) -> None: ...


class _InProcess:
    """A context in this process: only for this process's own namespace."""

    def __init__(self) -> None:
        import nftables

        self._ctx = nftables.Nftables()

    def ask(self, op: bytes, text: str) -> tuple[bool, str, str]:
        return nft_worker.perform(self._ctx, op, text)

    def close(self) -> None:
        self._ctx = None


class _Cli:
    """``nft -f -`` per call through the runner: the fallback without python3-nftables."""

    def __init__(self, space: Namespace, timeout: float) -> None:
        self.space = space
        self.timeout = timeout

    def ask(self, op: bytes, text: str) -> tuple[bool, str, str]:
        if op == nft_worker.LIST:
            argv, data = [NFT, "-j", "list", *text.split()], None
        else:
            argv, data = [NFT, *(["-c"] if op == nft_worker.CHECK else []), "-f", "-"], text
        done = runner.run(self.space, argv, what=WHAT, input=data, check=False, timeout=self.timeout)
        if done.returncode != 0 and not done.stderr.strip():
            return False, "", f"exit status {done.returncode}"
        return done.returncode == 0, done.stdout, done.stderr

    def close(self) -> None:
        pass


class WorkerGone(Exception):
    """The worker stopped answering (died, or ran past the deadline): it is stopped."""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close the worker's stdin (it exits on EOF) and reap it; kill it if it lingers."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Worker:
    """A `clew.kernel.nft_worker` process inside the namespace, asked over its pipes."""

    def __init__(self, space: Namespace, timeout: float) -> None:
        self.space = space
        self.timeout = timeout
        self.proc = runner.spawn(
            space,
            [sys.executable, "-m", "clew.kernel.nft_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._finalizer = weakref.finalize(self, _stop, self.proc)
        assert self.proc.stdout is not None
        self._poller = select.poll()
        self._poller.register(self.proc.stdout.fileno(), select.POLLIN)
        try:
            status, out, err = self._answer(time.monotonic() + 30.0)
        except WorkerGone as e:
            self.close()
            raise KernelError(space, WHAT, f"the nft worker did not start: {e}") from None
        if status != nft_worker.HELLO or not out:
            self.close()
            raise KernelError(space, WHAT, err or "the nft worker did not start")
        pid, inode = out.split()
        self.pid, self.inode = int(pid), int(inode)

    def ask(self, op: bytes, text: str) -> tuple[bool, str, str]:
        body = text.encode()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(nft_worker.REQUEST.pack(op, len(body)) + body)
            self.proc.stdin.flush()
        except OSError as e:
            self.close()
            raise WorkerGone(f"cannot write to it ({e.strerror or e})") from None
        status, out, err = self._answer(time.monotonic() + self.timeout)
        return status == nft_worker.OK, out, err

    def _answer(self, deadline: float) -> tuple[bytes, str, str]:
        head = self._read(nft_worker.ANSWER.size, deadline)
        status, n_out, n_err = nft_worker.ANSWER.unpack(head)
        body = self._read(n_out + n_err, deadline)
        return status, body[:n_out].decode(errors="replace"), body[n_out:].decode(errors="replace")

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks: list[bytes] = []
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poller.poll(left * 1000):
                self.close()
                raise WorkerGone(f"no answer within {self.timeout:g}s (stopped)")
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                why = self._last_words()
                self.close()
                raise WorkerGone(f"it exited{': ' + why if why else ''}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _last_words(self) -> str:
        """The last line the dead worker (or ``ip netns exec``) wrote to stderr."""
        stream = self.proc.stderr
        if stream is None:
            return ""
        try:
            self.proc.wait(timeout=2.0)
            lines = stream.read().decode(errors="replace").strip().splitlines()
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return lines[-1] if lines else ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self._finalizer()


class NodeNft:
    """The `NftKernel` of one node: a long-lived libnftables context in ``netns``.

    Thread-safe (one request at a time). Another namespace's context lives in a worker process
    that dies with `close` (or when this process dies: EOF on its stdin); if the worker dies, or
    the namespace file now names another namespace (deleted and made anew), the next call starts
    a new one. ``timeout`` bounds one request (a full load of 100k Services takes seconds);
    ``cli`` forces ``nft -f -`` per call (for comparisons)."""

    def __init__(self, netns: Where = None, *, timeout: float = 120.0, cli: bool = False) -> None:
        self.namespace = Namespace.of(netns)
        self.timeout = timeout
        self.cli = cli  # always ``nft -f -`` (the bench's and tests' comparison)
        self._lock = threading.Lock()
        self._backend: _Backend | None = None
        self._closed = False
        runner.require(self.namespace)
        with self._lock:
            self._backend = self._start()

    @property
    def mechanism(self) -> str:
        """``worker``, ``in-process`` or ``nft-cli``: how requests reach the kernel (``closed``
        after `close`)."""
        backend = self._backend
        if self._closed:
            return "closed"
        if isinstance(backend, _Worker):
            return "worker"
        return "in-process" if isinstance(backend, _InProcess) else "nft-cli"

    @property
    def worker_pid(self) -> int | None:
        """The worker's pid (None without a worker): tests check it is gone after `close`."""
        backend = self._backend
        return backend.pid if isinstance(backend, _Worker) else None

    def _start(self) -> _Backend:
        if self.cli:
            return _Cli(self.namespace, self.timeout)
        if not nftables_importable():
            return self._fallback("python3-nftables is not importable")
        if self.namespace.own:
            return _InProcess()
        try:
            return _Worker(self.namespace, self.timeout)
        except KernelError as e:
            if "python3-nftables unusable" in e.detail:
                return self._fallback(e.detail)
            raise

    def _fallback(self, why: str) -> _Backend:
        global _fallback_logged
        if not _fallback_logged:
            _fallback_logged = True
            log.warning("nftables: %s; using `nft -f -` per transaction (slower)", why)
        return _Cli(self.namespace, self.timeout)

    def _current(self) -> _Backend:
        """The backend, (re)started when needed; raises `NamespaceNotFound` if the namespace is gone."""
        backend = self._backend
        if isinstance(backend, _Worker):
            path = self.namespace.path or ""
            try:
                inode = os.stat(path).st_ino
            except OSError:
                backend.close()
                self._backend = None
                raise NamespaceNotFound(self.namespace, WHAT) from None
            if backend.alive and inode == backend.inode:
                return backend
            backend.close()
            self._backend = None
        if self._backend is None:
            runner.require(self.namespace)
            self._backend = self._start()
        return self._backend

    def _ask(self, op: bytes, text: str) -> str:
        with self._lock:
            if self._closed:
                raise KernelError(self.namespace, WHAT, "the nftables context is closed")
            backend = self._current()
            try:
                ok, out, err = backend.ask(op, text)
            except WorkerGone as e:
                self._backend = None
                raise KernelError(self.namespace, WHAT, f"the nft worker failed: {e}") from None
        if not ok:
            raise KernelError(self.namespace, WHAT, one_line(err))
        return out

    def run(self, script: str) -> None:
        """Apply ``script`` as one atomic transaction."""
        if script.strip():
            self._ask(nft_worker.RUN, script)

    def check(self, script: str) -> None:
        """Check ``script`` as the kernel would apply it (``nft -c``); nothing changes."""
        if script.strip():
            self._ask(nft_worker.CHECK, script)

    def list_json(self, what: str = "ruleset") -> dict[str, Any]:
        """``nft -j list WHAT``, parsed."""
        out = self._ask(nft_worker.LIST, what)
        try:
            parsed = json.loads(out) if out.strip() else {"nftables": []}
        except ValueError as e:
            raise KernelError(self.namespace, WHAT, f"list {what}: unreadable JSON ({e})") from None
        if not isinstance(parsed, dict):
            raise KernelError(self.namespace, WHAT, f"list {what}: not a JSON object")
        return parsed

    def has_table(self, family: str, name: str) -> bool:
        return has_table_in(self.list_json("tables"), family, name)

    def close(self) -> None:
        """Stop the worker (if any); later calls raise `KernelError`. Idempotent."""
        with self._lock:
            backend, self._backend = self._backend, None
            self._closed = True
        if backend is not None:
            backend.close()

    def __enter__(self) -> NodeNft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
