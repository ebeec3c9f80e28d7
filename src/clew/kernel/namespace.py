"""The one value that says where a kernel command runs: a named network namespace, a namespace
file, or this process's own namespace.

Every module of ``clew.kernel`` takes one (or a plain string, turned into one by `Namespace.of`),
builds the argv of a command for it with `Namespace.exec_argv` / `Namespace.tool_argv`, and
names it in errors with `Namespace.display` — so "the current namespace" has one spelling and an
error never reads ``in netns :``. Nothing here ever ``setns()``es the calling process: a command
switches namespace itself (``ip -n``), or is started by ``ip netns exec`` / ``nsenter``.

Pure: no process is run and no file is read here (`exists` only stats the name's file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import NamedTuple, TypeAlias

IP = "ip"
NSENTER = "nsenter"
NETNS_DIR = "/run/netns"
_NETNS_DIRS = ("/run/netns/", "/var/run/netns/")  # where ``ip netns`` keeps named namespaces
_BAD_NAME = re.compile(r"[/\s\x00]")
_SWITCHING_TOOLS = ("ip", "bridge")  # tools that enter a named namespace themselves (``-n NAME``)


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` can be a ``/run/netns`` entry."""
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise ValueError(f"invalid network namespace name {name!r}")


class Namespace(NamedTuple):
    """Where a command runs. ``ref`` is None for this process's own namespace, a path (starts
    with ``/``: ``/run/netns/X``, ``/proc/PID/ns/net``, a CNI runtime's bind mount) for a
    namespace file, else the name of a namespace in ``/run/netns``."""

    ref: str | None = None

    @classmethod
    def of(cls, where: Where) -> Namespace:
        """The value for a name, a path, ``None`` or ``""`` (both: this process's own)."""
        if isinstance(where, Namespace):
            return where
        return cls(where or None)

    @property
    def own(self) -> bool:
        """This process's own namespace (a node agent with hostNetwork, the CNI plugin's node)."""
        return self.ref is None

    @property
    def name(self) -> str | None:
        """The ``/run/netns`` name when there is one (also for a path into ``/run/netns``)."""
        if self.ref is None:
            return None
        if not self.ref.startswith("/"):
            return self.ref
        for folder in _NETNS_DIRS:
            rest = self.ref[len(folder) :] if self.ref.startswith(folder) else ""
            if rest and not _BAD_NAME.search(rest):
                return rest
        return None

    @property
    def path(self) -> str | None:
        """A file that is the namespace (``ip link … netns PATH`` takes it); None for our own."""
        if self.ref is None or self.ref.startswith("/"):
            return self.ref
        return f"{NETNS_DIR}/{self.ref}"

    @property
    def display(self) -> str:
        """How errors name it: ``netns NAME``, ``netns /proc/1/ns/net``, ``the current netns``."""
        return "the current netns" if self.ref is None else f"netns {self.ref}"

    @property
    def label(self) -> str | None:
        """The name or path (None for our own): what `KernelError` takes (cni_net's spelling)."""
        return self.ref

    def __str__(self) -> str:
        return self.ref or ""

    def exists(self) -> bool:
        """Whether the namespace is there (our own always is)."""
        if self.ref is None:
            return True
        if not self.ref.startswith("/"):
            check_name(self.ref)
        path = self.path
        return path is not None and os.path.exists(path)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside this namespace (as is for our own)."""
        if self.ref is None:
            return list(argv)
        if not self.ref.startswith("/"):
            check_name(self.ref)
            return [IP, "netns", "exec", self.ref, *argv]
        return [NSENTER, f"--net={self.ref}", *argv]

    def ip_argv(self, *args: str) -> list[str]:
        """``ip ARGS`` in this namespace (`tool_argv` for ``ip``; cni_net's spelling)."""
        return self.tool_argv(IP, args)

    def tool_argv(self, tool: str, args: Sequence[str]) -> list[str]:
        """``TOOL ARGS`` in this namespace: iproute2's ``ip``/``bridge`` switch themselves
        (``-n NAME``: no ``ip netns exec`` process, no /sys remount), the rest via `exec_argv`."""
        name = self.name
        if name is not None and os.path.basename(tool) in _SWITCHING_TOOLS:
            check_name(name)
            return [tool, "-n", name, *args]
        return self.exec_argv([tool, *args])


OWN = Namespace()  # this process's own namespace
Where: TypeAlias = "Namespace | str | None"  # what the kernel functions accept: see Namespace.of
