"""The ADD result cache, so DEL and GC work when the pod's namespace is already gone.

``<dataDir>/<network>/results/<containerID>-<ifname>.json`` (0600, written atomically: temp file
and rename), shaped like libcni's cache entry::

    {"kind": "clewCacheV1", "containerId": "…", "ifName": "eth0", "networkName": "cbr0",
     "netns": "/run/netns/…", "hostInterface": "veth1a2b3c4d", "result": {…1.1.0 result…}}

Runtimes that use ``ctr run --rm`` call DEL after the netns is removed; the cache still names
the host-side veth to remove if it lingers. The file name can be ambiguous (IDs and ifnames may
contain ``-``), so readers trust the ``containerId`` and ``ifName`` inside, not the name.
"""

from __future__ import annotations

import json
import os
import time

from clew.cni.config import Attachment, valid_id, valid_ifname

KIND = "clewCacheV1"
TEMP_SUFFIX = ".tmp"
# A temp file older than this is a leftover of a writer that died between write and rename: a
# save takes milliseconds, and GC must not pull the file from under a concurrent ADD's rename.
STALE_TEMP_AGE = 60.0


class ResultCache:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, att: Attachment) -> str:
        return os.path.join(self.directory, f"{att.container_id}-{att.ifname}.json")

    def save(self, att: Attachment, entry: dict[str, object]) -> None:
        """Write ``entry`` for ``att`` (replacing any earlier one) atomically."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        data = {"kind": KIND, "containerId": att.container_id, "ifName": att.ifname, **entry}
        path = self._path(att)
        tmp = f"{path}.{os.getpid()}{TEMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def load(self, att: Attachment) -> dict[str, object] | None:
        """The entry for ``att``, or None (missing, unreadable, or another attachment's)."""
        entry = _read(self._path(att))
        if entry is None or entry.get("containerId") != att.container_id or entry.get("ifName") != att.ifname:
            return None
        return entry

    def remove(self, att: Attachment) -> None:
        """Forget ``att``'s entry; no error if there is none."""
        if self.load(att) is not None:
            try:
                os.unlink(self._path(att))
            except FileNotFoundError:
                return

    def remove_stale_temp(self, older_than: float = STALE_TEMP_AGE) -> list[str]:
        """Delete temp files a writer left (killed before its rename), older than ``older_than`` s; their names."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        cutoff, removed = time.time() - older_than, []
        for entry in entries:
            if not entry.name.endswith(TEMP_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed.append(entry.name)
            except FileNotFoundError:
                continue
        return sorted(removed)

    def entries(self) -> list[tuple[Attachment, dict[str, object]]]:
        """Every readable entry with its attachment."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if not name.endswith(".json"):
                continue
            entry = _read(os.path.join(self.directory, name))
            if entry is None:
                continue
            cid, ifname = entry.get("containerId"), entry.get("ifName")
            if isinstance(cid, str) and isinstance(ifname, str) and valid_id(cid) and valid_ifname(ifname):
                out.append((Attachment(cid, ifname), entry))
        return out


def _read(path: str) -> dict[str, object] | None:
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("kind") == KIND else None
