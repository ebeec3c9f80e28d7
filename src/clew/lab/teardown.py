"""``clew lab down``: remove everything a lab made — processes, namespaces, its state folder.

It finds what to remove by name (every namespace ``<lab>-lab-…``) rather than by what the state file
says, so it also cleans up after agents killed with SIGKILL or a half-built lab.
"""

from __future__ import annotations

import shutil

from clew.kernel import netns
from clew.lab.plan import prefix
from clew.lab.state import state_dir


def down(name: str) -> list[str]:
    """Delete the lab's namespaces (ending their processes first) and its state; returns the
    namespaces removed. Idempotent."""
    removed = []
    for ns in netns.list_names(prefix(name)):
        netns.delete(ns)
        removed.append(ns)
    shutil.rmtree(state_dir(name), ignore_errors=True)
    return removed
