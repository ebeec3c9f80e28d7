"""The bgp backend's applier: keep this node's BIRD running with the configuration clew renders.

Files, in the node agent's state folder: ``bird.conf`` (rendered), ``bird.ctl`` (control
socket), ``bird.pid``, ``bird.log``. Each sync:

1. a changed configuration is written beside the old one, parsed by ``bird -p`` (a file BIRD
   would refuse never replaces a working one), then renamed over it;
2. no BIRD behind the pid file (first start, or it died) → BIRD is started in the node's
   namespace (after a BIRD that died, with graceful restart on: in recovery mode, ``-R``, so the
   routes it left in the kernel stay until its peers have re-announced them); else a changed
   file → ``birdc configure`` (BIRD restarts only the sessions whose settings changed; never a
   process restart for a configuration change);
3. nothing else: BIRD is left running when the agent exits. Its sessions stay up and the
   kernel keeps its routes while the agent restarts; ``clew lab down`` ends it with the
   node's namespace.

Between syncs the agent asks `revive` every turn (a pid file read and two ``stat`` calls): a
BIRD that died is started again from the file in place within a turn, not at the next sync —
its peers keep its routes (stale) only for the graceful restart time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clew.kernel import bird
from clew.kernel.namespace import Where
from clew.podnet.bird import BirdInput, render, sessions
from clew.sources.files import write_atomic


@dataclass(frozen=True)
class BirdFiles:
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "bird.conf"

    @property
    def socket(self) -> Path:
        return self.folder / "bird.ctl"

    @property
    def pidfile(self) -> Path:
        return self.folder / "bird.pid"

    @property
    def log(self) -> Path:
        return self.folder / "bird.log"


def ensure_bird(ns: Where, files: BirdFiles, inp: BirdInput) -> dict[str, Any]:
    """Bring BIRD in ``ns`` to ``inp``'s configuration; returns ``{"pid", "action", "sessions"}``
    with action ``started``, ``reconfigured`` or ``unchanged``."""
    text = render(inp)
    result = _apply(ns, files, text, inp.conf.graceful_restart)
    result["sessions"] = len(sessions(inp))
    return result


def _apply(ns: Where, files: BirdFiles, text: str, graceful: bool) -> dict[str, Any]:
    try:
        changed = files.config.read_text() != text
    except OSError:
        changed = True
    if changed:
        candidate = files.folder / "bird.conf.new"
        write_atomic(candidate, text)
        bird.check_config(candidate)
        os.replace(candidate, files.config)
    pid = bird.running_pid(files.pidfile, ns)
    if pid is None:
        recover = graceful and files.pidfile.exists()  # a BIRD ran before: its routes may be in the kernel
        return {"pid": bird.start(ns, files.config, files.socket, files.pidfile, recover=recover), "action": "started"}
    if changed:
        bird.configure(ns, files.socket)
        return {"pid": pid, "action": "reconfigured"}
    return {"pid": pid, "action": "unchanged"}


def revive(ns: Where, files: BirdFiles, graceful: bool) -> tuple[int, int] | None:
    """Start BIRD again from the configuration in place if it is not running (in recovery mode
    when ``graceful``); ``(old pid or 0, new pid)`` when it was started, None when it was running
    (or never configured)."""
    if not files.config.exists() or bird.running_pid(files.pidfile, ns) is not None:
        return None
    try:
        old = int(files.pidfile.read_text().strip())
    except (OSError, ValueError):
        old = 0
    return old, bird.start(ns, files.config, files.socket, files.pidfile, recover=graceful)
