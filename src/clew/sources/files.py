"""A watched folder of manifests: the agent's source of Services, EndpointSlices and Nodes
when there is no kube-apiserver (the lab, a demo, an air-gapped test).

`FolderSource.poll()` learns what changed from inotify (`sources.watch.TreeWatch`) and looks
only at those files, so an idle agent costs nothing however large the folder (without inotify —
no instance left, or a single file given — it compares each file's stat on every poll). A file
is changed when its (mtime, size, inode) differs (an atomic replace makes a new inode, so two
same-size writes within one timestamp tick are still two changes). A file that does not parse
keeps its previous objects and is reported once (so a half-written or broken file never costs
other Services their rules); a malformed object inside a file is a `Rejection` from
`model.from_kube`, like any other bad input.

A folder that is missing or cannot be listed is not an empty folder: the poll keeps the last
snapshot and sets `FolderSource.problem` (the agent keeps the rules, logs, fails /healthz); an
existing empty folder is zero objects.

`FolderSource.version` digests the files as the last poll saw them and `folder_version(root)`
the folder as it is now: when the two are equal, the snapshot holds every file's current
content, or a broken file's last good one (the lab waits for that, see
`clew.lab.build.wait_synced`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.sources.manifests import SUFFIXES, ManifestError, parse_text

IGNORED_KINDS = ("Deployment", "Pod", "Namespace", "ConfigMap", "ServiceAccount")
Signature = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)
log = logging.getLogger("clew.sources.files")


def _signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _digest(entries: list[tuple[Path, Signature]]) -> str:
    text = "\n".join(f"{path}\0{sig}" for path, sig in sorted(entries))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_manifest(path: Path) -> bool:
    return path.suffix in SUFFIXES


def list_files(root: Path) -> dict[Path, Signature]:
    """Every manifest file under ``root`` (or ``root`` itself, a file) with its signature.

    Raises OSError when ``root`` or a folder below it is missing or cannot be listed: a partial
    listing must never pass for the folder's content. Folder symlinks are not followed (as
    ``Path.rglob``); file symlinks are."""
    if not stat.S_ISDIR(os.stat(root).st_mode):
        return {root: _signature(os.stat(root))}
    found: dict[Path, Signature] = {}
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                elif _is_manifest(path) and entry.is_file():
                    try:
                        found[path] = _signature(entry.stat())
                    except FileNotFoundError:
                        continue  # removed while we looked
    return found


def folder_version(root: Path) -> str:
    """A digest of ``root``'s manifest files as they are now (names, mtimes, sizes, inodes);
    equal to :attr:`FolderSource.version` once a poll has seen every one of them as it is."""
    try:
        return _digest(list(list_files(root).items()))
    except OSError:
        return _digest([])


@dataclass
class FolderSource:
    root: Path
    watch: bool = True  # learn changes from inotify (False: compare every file's stat each poll)
    _files: dict[Path, tuple[Signature, list[Any]]] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)  # files that failed to parse, and why
    problem: str | None = None  # the folder itself cannot be read: the last snapshot stands
    _primed: bool = False  # the first good look always answers, even for an empty folder
    _watch: Any = None  # a TreeWatch while inotify watches the folder

    def poll(self) -> Snapshot | None:
        """A new snapshot if any file changed, appeared or went away since the last poll; None
        when nothing did, or when the folder cannot be read (then `problem` says why)."""
        try:
            changed = self._look()
        except OSError as e:
            self._unwatch()  # watched again, and listed whole, once it can be read
            self.problem = f"{self.root}: cannot read the objects folder: {e.strerror or e}"
            return None
        self.problem = None
        if self._primed and not changed:
            return None
        self._primed = True
        return self.snapshot()

    def _look(self) -> bool:
        """Bring `_files` up to date; True if anything changed. OSError: the folder is unreadable."""
        if not stat.S_ISDIR(os.stat(self.root).st_mode):
            self._unwatch()
            return self._apply_listing(list_files(self.root))
        if self._watch is None and self.watch:
            self._start_watch()  # a fresh watch: list everything once, then follow its events
            return self._apply_listing(list_files(self.root))
        if self._watch is None:  # no inotify: list on every poll
            return self._apply_listing(list_files(self.root))
        found = self._watch.changes()
        if found.rescan:
            self._watch.reset()
            return self._apply_listing(list_files(self.root))
        changed = False
        for path in found.paths:
            changed |= self._refresh(path)
        return changed

    def _start_watch(self) -> None:
        from clew.sources.watch import TreeWatch

        try:
            self._watch = TreeWatch(self.root)
        except OSError as e:
            log.warning("%s: cannot watch with inotify (%s): listing it on every poll instead", self.root, e)
            self.watch = False

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _apply_listing(self, present: dict[Path, Signature]) -> bool:
        changed = False
        for path, sig in present.items():
            changed |= self._load(path, sig)
        for gone in self._files.keys() - present.keys():
            self._forget(gone)
            changed = True
        return changed

    def _refresh(self, path: Path) -> bool:
        """One path an event named: load it again, or forget it if it is no manifest file now."""
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode) or not _is_manifest(path):
            if path in self._files:
                self._forget(path)
                return True
            return False
        return self._load(path, _signature(st))

    def _load(self, path: Path, sig: Signature) -> bool:
        old = self._files.get(path)
        if old is not None and old[0] == sig:
            return False
        try:
            objects = parse_text(path.read_text(encoding="utf-8"), str(path))
            self.errors.pop(path, None)
        except (ManifestError, OSError, UnicodeDecodeError) as e:
            self.errors[path] = str(e)
            objects = old[1] if old is not None else []  # keep what the file last held
        self._files[path] = (sig, objects)
        return True

    def _forget(self, path: Path) -> None:
        del self._files[path]
        self.errors.pop(path, None)

    def close(self) -> None:
        self._unwatch()

    @property
    def version(self) -> str:
        """The :func:`folder_version` of the folder as the last poll saw it."""
        return _digest([(path, sig) for path, (sig, _) in self._files.items()])

    def __str__(self) -> str:
        return f"folder {self.root}"

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
