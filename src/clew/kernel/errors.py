"""Errors raised by the kernel side-effect layer.

Every error names the network namespace it happened in and the object it was acting on, so a
failure deep in a sync reads as one clear line: ``iptables-restore in netns node-a: line 4 failed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from clew.kernel.namespace import Namespace, Where


class KernelError(Exception):
    """A kernel operation failed.

    ``netns`` is the namespace acted in (a `Namespace`, a name or path, or ``None``/``""`` for the
    process's own: `Namespace.of`); it is kept as the name or path (``None`` for our own).
    ``what`` is the object acted on (a chain, a link, a command, ...) and ``detail`` what went wrong.
    """

    def __init__(self, netns: Where, what: str, detail: str) -> None:
        self.namespace = Namespace.of(netns)
        self.netns = self.namespace.ref
        self.what = what
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        detail = " ".join(self.detail.split()) or "(no detail)"
        return f"{self.what} in {self.namespace.display}: {detail}"


class CommandFailed(KernelError):
    """A command exited non-zero (or could not run / timed out: ``returncode`` is then -1)."""

    def __init__(
        self,
        netns: Where,
        what: str,
        argv: Sequence[str],
        returncode: int,
        stderr: str,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip() or f"exit status {returncode}"
        super().__init__(netns, what, f"{detail} (exit {returncode})")


class NamespaceNotFound(KernelError):
    """The named network namespace does not exist."""

    def __init__(self, netns: Where, what: str = "netns") -> None:
        super().__init__(netns, what, "no such network namespace")


class BatchFailed(CommandFailed):
    """A ``TOOL -batch`` stopped at ``line`` (1-based; 0 if unknown): the lines before it ran."""

    def __init__(self, netns: Where, what: str, argv: Sequence[str], returncode: int, stderr: str, line: int) -> None:
        self.line = line
        super().__init__(netns, what, argv, returncode, stderr)

    @property
    def exists_error(self) -> bool:
        return "File exists" in self.stderr


class NetnsUnusable(CommandFailed):
    """The namespace file could not be entered: gone, unmounted, or not a network namespace."""
