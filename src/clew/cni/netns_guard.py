"""Refuse a ``CNI_NETNS`` that is the node's own network namespace.

The pod side of ADD puts an address, a default route and ``lo`` up into ``CNI_NETNS``; DEL deletes
``CNI_IFNAME`` there. Pointed at the node's namespace (a runtime bug, a hand-made call with
``CNI_NETNS=/proc/1/ns/net``), DEL would delete the node's ``eth0`` or ``cni0`` and report success
(the reference plugins do exactly that). So ADD, CHECK and DEL refuse it first, with error 4
(an invalid ``CNI_NETNS``), before touching anything.

Two namespaces are "the node's":

* the one this code runs in — where the node side (bridge, host veth) is made. For a plugin
  process that is where the runtime exec'ed it; for the node agent serving the plugin over its
  socket (`clew.agent.cni_server`) it is the agent's namespace (``/proc/thread-self``: the
  thread doing the work, in case a thread ever enters another one);
* the one the plugin *client* was exec'ed in, when the agent does the work for it: that is the
  node as the runtime sees it. The agent learns it from the socket's peer credentials
  (``SO_PEERCRED``: the kernel's word for the client's pid, not the client's) and passes it in.

A namespace is identified as the kernel does: the device and inode of its nsfs file, equal for
``/run/netns/NAME``, ``/proc/PID/ns/net`` and any other bind mount of the same namespace.
A path that cannot be stat'ed is not judged here (ADD then reports it missing; DEL accepts it).
Stdlib ``os`` only: this runs in the plugin's short-lived process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

from clew.cni.errors import INVALID_ENVIRONMENT, CniError


class NsId(NamedTuple):
    """A network namespace's identity: its nsfs file's ``st_dev`` and ``st_ino``."""

    dev: int
    ino: int


def identity(path: str) -> NsId | None:
    """The identity of the namespace file ``path`` (symlinks followed), or None if it cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return NsId(st.st_dev, st.st_ino)


def own() -> NsId | None:
    """The namespace the calling thread is in: where the node side of an attachment is made."""
    return identity("/proc/thread-self/ns/net") or identity("/proc/self/ns/net")


def of_pid(pid: int) -> NsId | None:
    """The namespace of process ``pid`` (None for 0, a pid not visible here, or a process gone)."""
    return identity(f"/proc/{pid}/ns/net") if pid > 0 else None


def refuse_node_netns(netns: str, command: str, others: Iterable[NsId] = ()) -> None:
    """:class:`CniError` 4 if ``netns`` is this thread's namespace or one of ``others``."""
    target = identity(netns) if netns else None
    if target is None:
        return
    if target == own():
        whose = "the namespace the plugin runs in"
    elif target in set(others):
        whose = "the namespace the runtime called the plugin from"
    else:
        return
    raise CniError(
        INVALID_ENVIRONMENT,
        f"CNI_NETNS {netns} is the node's own network namespace",
        f"{command} refused: {netns} is {whose}; a pod's interface is never put there or deleted from it",
    )
