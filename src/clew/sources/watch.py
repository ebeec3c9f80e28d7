"""Which paths under a folder changed: inotify watches on the folder and each of its subfolders.

The folder source asks after every loop turn; with nothing changed the answer costs one
non-blocking ``read`` on the inotify descriptor, whatever the folder holds (re-listing it 5
times a second cost an idle agent 46% of a core at 5,000 Services). `TreeWatch.changes` turns
the kernel's events into what the caller must look at again:

* a file name (``services/web.json``): stat it again (created, written, renamed in or away);
* ``rescan``: something the events cannot describe file by file — a directory appeared, went or
  moved, a symlink changed (a ConfigMap volume swaps its ``..data`` link), or the event queue
  overflowed. The caller lists the whole folder again and calls `TreeWatch.reset`.

inotify_simple (a small pure-Python wrapper over the three inotify syscalls, no dependencies)
is used rather than watchfiles: watchfiles runs its own Rust thread, debounces by 1.6 s by
default and needs anyio; the agent only needs "did anything change since I last asked".
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from inotify_simple import INotify, flags

# Everything that changes what a file holds or which files exist (ATTRIB: utime, chmod).
WATCHED = (
    flags.CREATE
    | flags.DELETE
    | flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.ATTRIB
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE_SELF
    | flags.MOVE_SELF
    | flags.ONLYDIR
    | flags.DONT_FOLLOW
)


@dataclass
class Changes:
    """What changed since the last call: paths to stat again, or ``rescan`` everything."""

    paths: set[Path] = field(default_factory=set)
    rescan: bool = False

    def __bool__(self) -> bool:
        return self.rescan or bool(self.paths)


class TreeWatch:
    """inotify watches on ``root`` and every directory below it (symlinks are not followed).

    Raises OSError when the kernel refuses (no inotify instance or watch left: the caller
    falls back to listing the folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._inotify = INotify(nonblocking=True)
        self._dirs: dict[int, Path] = {}
        try:
            self.reset()
        except BaseException:
            self.close()
            raise

    def reset(self) -> None:
        """Watch the tree as it is now (after a rescan: directories may have come and gone)."""
        for wd in list(self._dirs):
            with contextlib.suppress(OSError):  # already gone with its directory
                self._inotify.rm_watch(wd)
        self._dirs.clear()
        self._add(self.root)
        self._drain()  # events from before this moment describe a tree the caller rescans anyway

    def _add(self, top: Path) -> None:
        pending = [top]
        while pending:
            path = pending.pop()
            wd = self._inotify.add_watch(str(path), WATCHED)
            self._dirs[wd] = path
            with os.scandir(path) as entries:
                pending.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))

    def _drain(self) -> None:
        while self._inotify.read(timeout=0):
            pass

    def fileno(self) -> int:
        """The inotify descriptor: readable when something changed (for select/poll)."""
        return int(self._inotify.fileno())

    def changes(self) -> Changes:
        """What changed since the last call (never blocks)."""
        found = Changes()
        for event in self._inotify.read(timeout=0):
            mask = event.mask
            if mask & (flags.Q_OVERFLOW | flags.ISDIR | flags.DELETE_SELF | flags.MOVE_SELF | flags.UNMOUNT):
                found.rescan = True
                continue
            if mask & flags.IGNORED:
                self._dirs.pop(event.wd, None)
                continue
            parent = self._dirs.get(event.wd)
            if parent is None or not event.name:
                continue
            path = parent / event.name
            if os.path.islink(path):
                found.rescan = True  # a link's target may hold anything (ConfigMap volumes)
            else:
                found.paths.add(path)
        return found

    def close(self) -> None:
        self._inotify.close()
