"""Node leases: what each node's agent publishes about its pod subnet, merged into the lab's Node
objects the way the API server stores a PATCH of nodes/status.

An agent never writes into the objects folder (it is the user's input); it writes
``<state-dir>/node-lease.json`` = ``{"node": NAME, "annotations": {...}}`` in its own state folder,
and the lab's control plane (the supervisor, every tick, and ``wait_synced`` while it waits)
merges those annotations into ``objects/nodes/<name>.json``, so the vxlan and host-gw backends
of the other nodes find the node. An agent that still patches the folder itself works as well:
merging equal annotations changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clew.agent.podnet import LEASE_FILE
from clew.sources.files import patch_node_annotations

__all__ = ["LEASE_FILE", "LeaseMerger", "publish_leases", "read_lease"]


def read_lease(path: Path, node: str) -> dict[str, str] | None:
    """The annotations of a lease file, None if it is missing, half-written or for another node."""
    try:
        doc: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("node") != node or not isinstance(doc.get("annotations"), dict):
        return None
    annotations = doc["annotations"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        return None
    return dict(annotations)


@dataclass
class LeaseMerger:
    """Merges each node's lease file into its Node object when the file changed (by stat)."""

    root: Path  # the lab's state folder
    nodes: tuple[str, ...]
    _seen: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def merge(self) -> list[str]:
        """Merge the leases that changed since the last call; returns the nodes whose Node changed."""
        changed = []
        for node in self.nodes:
            path = self.root / "nodes" / node / LEASE_FILE
            try:
                st = path.stat()
            except OSError:
                continue
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._seen.get(node) == sig:
                continue
            annotations = read_lease(path, node)
            if annotations is None:
                continue  # not yet whole: looked at again next time
            self._seen[node] = sig
            if patch_node_annotations(self.root / "objects", node, annotations):
                changed.append(node)
        return changed


def publish_leases(root: Path, nodes: Iterable[str]) -> bool:
    """Merge every node's lease file into its Node object now (no stat cache); True if a Node
    changed. The one-shot form of `LeaseMerger`, for callers without one."""
    return bool(LeaseMerger(root, tuple(nodes)).merge())
