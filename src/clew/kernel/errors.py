"""Errors raised by the kernel side-effect layer.

Every error names the network namespace it happened in and the object it was acting on, so a
failure deep in a sync reads as one clear line: ``iptables-restore in netns node-a: line 4 failed``.
"""

from __future__ import annotations

from collections.abc import Sequence


def _where(netns: str | None) -> str:
    return f"netns {netns}" if netns is not None else "the current netns"


class KernelError(Exception):
    """A kernel operation failed.

    ``netns`` is the namespace acted in (``None`` for the process's own namespace), ``what`` the
    object acted on (a chain, a link, a command, ...) and ``detail`` what went wrong.
    """

    def __init__(self, netns: str | None, what: str, detail: str) -> None:
        self.netns = netns
        self.what = what
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        detail = " ".join(self.detail.split()) or "(no detail)"
        return f"{self.what} in {_where(self.netns)}: {detail}"


class CommandFailed(KernelError):
    """A command exited non-zero (or could not run / timed out: ``returncode`` is then -1)."""

    def __init__(
        self,
        netns: str | None,
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

    def __init__(self, netns: str, what: str = "netns") -> None:
        super().__init__(netns, what, "no such network namespace")
