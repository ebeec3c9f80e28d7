"""``clew lab down``: remove everything a lab made — processes, namespaces, its state folder.

It finds what to remove by name (every namespace ``<lab>-lab-…``) rather than by what the state file
says, so it also cleans up after agents killed with SIGKILL or a half-built lab. The switch
namespace goes first: the agents' supervisor runs there (`clew.lab.supervisor`), and it must be
gone before any node's agent ends, or it would start that agent again into a namespace about to
be deleted (where it would outlive the namespace's name).
"""

from __future__ import annotations

import shutil

from clew.kernel import netns
from clew.lab.plan import prefix
from clew.lab.state import state_dir

SUPERVISOR_NETNS = "sw"  # the switch namespace, <lab>-lab-sw


def down(name: str) -> list[str]:
    """Delete the lab's namespaces (ending their processes first) and its state; returns the
    namespaces removed. Idempotent."""
    removed = []
    first = f"{prefix(name)}{SUPERVISOR_NETNS}"
    names = netns.list_names(prefix(name))
    for ns in sorted(names, key=lambda n: n != first):
        netns.delete(ns)
        removed.append(ns)
    shutil.rmtree(state_dir(name), ignore_errors=True)
    return removed
