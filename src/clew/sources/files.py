"""A watched folder of manifests: the agent's source of Services, EndpointSlices and Nodes
when there is no kube-apiserver (the lab, a demo, an air-gapped test).

`FolderSource.poll()` notices a change by each file's (mtime, size, inode) and re-reads only the
files that changed (an atomic replace makes a new inode, so two same-size writes within one
timestamp tick are still two changes). A file that does not parse keeps its previous objects
and is reported once (so a half-written or broken file never costs other Services their rules);
a malformed object inside a file is a `Rejection` from `model.from_kube`, like any other bad
input. `FolderSource.version` digests the files as the last poll saw them and
`folder_version(root)` the folder as it is now: when the two are equal, the snapshot holds every
file's current content, or a broken file's last good one (the lab waits for that, see
`clew.lab.build.wait_synced`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.sources.manifests import ManifestError, manifest_files, parse_text

IGNORED_KINDS = ("Deployment", "Pod", "Namespace", "ConfigMap", "ServiceAccount")
Signature = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)


def _signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _digest(entries: list[tuple[Path, Signature]]) -> str:
    text = "\n".join(f"{path}\0{sig}" for path, sig in sorted(entries))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder_version(root: Path) -> str:
    """A digest of ``root``'s manifest files as they are now (names, mtimes, sizes, inodes);
    equal to :attr:`FolderSource.version` once a poll has seen every one of them as it is."""
    try:
        present = manifest_files(root) if root.exists() else []
    except ManifestError:
        present = []
    entries = []
    for path in present:
        try:
            entries.append((path, _signature(path.stat())))
        except FileNotFoundError:
            continue
    return _digest(entries)


@dataclass
class FolderSource:
    root: Path
    _files: dict[Path, tuple[Signature, list[Any]]] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)  # files that failed to parse, and why
    _primed: bool = False  # the first poll always answers, even for an empty folder

    def poll(self) -> Snapshot | None:
        """A new snapshot if any file changed, appeared or went away since the last poll."""
        try:
            present = manifest_files(self.root) if self.root.exists() else []
        except ManifestError:
            present = []
        changed = not self._primed
        self._primed = True
        seen = set()
        for path in present:
            seen.add(path)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            sig = _signature(st)
            old = self._files.get(path)
            if old is not None and old[0] == sig:
                continue
            changed = True
            try:
                objects = parse_text(path.read_text(encoding="utf-8"), str(path))
                self.errors.pop(path, None)
            except (ManifestError, OSError, UnicodeDecodeError) as e:
                self.errors[path] = str(e)
                objects = old[1] if old is not None else []  # keep what the file last held
            self._files[path] = (sig, objects)
        for gone in set(self._files) - seen:
            del self._files[gone]
            self.errors.pop(gone, None)
            changed = True
        if not changed:
            return None
        return self.snapshot()

    @property
    def version(self) -> str:
        """The :func:`folder_version` of the folder as the last poll saw it."""
        return _digest([(path, sig) for path, (sig, _) in self._files.items()])

    def __str__(self) -> str:
        return f"folder {self.root}"

    def patch_node_annotations(self, node_name: str, annotations: dict[str, str]) -> bool:
        """The folder's PATCH of nodes/status (see the module function)."""
        return patch_node_annotations(self.root, node_name, annotations)

    def snapshot(self) -> Snapshot:
        objects = [obj for _, (_, objs) in sorted(self._files.items()) for obj in objs]
        return build_snapshot(objects, ignored_kinds=IGNORED_KINDS)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def patch_node_annotations(root: Path, node_name: str, annotations: dict[str, str]) -> bool:
    """Merge ``annotations`` into the Node object in ``root/nodes/<name>.json`` (what a PATCH
    of nodes/status does against an API server). Returns whether anything changed. Locked, so
    the lab's control plane and the agents never lose each other's writes."""
    path = root / "nodes" / f"{node_name}.json"
    lock = root / ".lock"
    root.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            doc: dict[str, Any] = yaml.safe_load(path.read_text()) if path.exists() else {}
        except yaml.YAMLError:
            doc = {}
        if not isinstance(doc, dict) or not doc:
            doc = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}
        meta = doc.setdefault("metadata", {})
        current = meta.setdefault("annotations", {}) or {}
        merged = {**current, **annotations}
        if merged == current:
            return False
        meta["annotations"] = merged
        write_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return True
