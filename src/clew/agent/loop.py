"""The agent's main loop: poll the source, sync when due, report status, stop on SIGTERM.

Each turn: a changed snapshot requests a sync; `SyncRunner` says when it is due (min-sync-period
after the last one, or every sync-period regardless, to repair rules someone removed); a sync
runs the Service proxy and then the pod network. After each sync a status file records what was
done and the version of the source it synced (`FolderSource.version`), so the lab (and an
operator) can wait for "the folder as it is now is in the kernel" by polling it.
Leaving (SIGTERM) keeps the rules in place, as kube-proxy does: traffic keeps flowing while the
agent restarts.

A source that cannot be read (a folder that is missing or unreadable, an API server that does
not answer) is not "no Services": its ``problem`` is logged once, /healthz fails while it lasts
and the rules stay as the last good snapshot made them. ``--once`` (`Agent.once`) fails when
there was nothing to sync or the sync failed.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clew.agent.metrics import Observer
from clew.model.objects import Snapshot
from clew.proxy.runner import SyncRunner
from clew.proxy.syncer import ServiceSyncer
from clew.sources.files import write_atomic

MAX_LISTED_REJECTIONS = 1000  # past this status.json only counts them (it is rewritten every sync)
log = logging.getLogger("clew.agent")
POLL_INTERVAL = 0.2  # seconds between looks at the source folder (a stat per file)
INTACT_INTERVAL = 1.0  # seconds between checks that nobody changed the shared chains


class Source(Protocol):
    """Where the agent's objects come from: a folder (`FolderSource`) or an API server
    (`KubeSource`). ``errors`` are the source's own problems (a file that does not parse, an API
    server that does not answer); bad objects are rejections in the snapshot."""

    def poll(self) -> Snapshot | None: ...

    @property
    def version(self) -> str: ...

    @property
    def errors(self) -> Mapping[Any, str]: ...

    @property
    def problem(self) -> str | None:
        """Why the source as a whole cannot be read now (None: it can); the last snapshot stands."""


class PodNetwork(Protocol):
    def sync(self, snapshot: Snapshot) -> dict[str, Any]: ...

    def watch(self) -> dict[str, Any] | None:
        """Every turn, between syncs: repair what must not wait for the next sync (a dead BIRD);
        what was done (``{"old", "pid"}``) or failed (``{"error"}``), or None."""


@dataclass
class Agent:
    source: Source
    proxy: ServiceSyncer
    runner: SyncRunner
    status_file: Path | None = None
    podnet: PodNetwork | None = None
    clock: Callable[[], float] = time.monotonic
    stop: threading.Event = field(default_factory=threading.Event)
    snapshot: Snapshot | None = None
    syncs: int = 0
    reported: set[str] = field(default_factory=set)
    changed_at: float = 0.0  # wall time of the newest source change seen
    obs: Observer | None = None
    checked_at: float = 0.0
    source_version: str = ""  # FolderSource.version of the snapshot in hand
    problem: str | None = None  # the source's problem, as last seen
    last_error: str | None = None  # why the last sync failed (None: it succeeded, or none ran)

    def turn(self) -> bool:
        """One turn of the loop; True if a sync ran."""
        new = self.source.poll()
        self._check_source()
        if new is not None:
            self.snapshot = new
            self.changed_at = time.time()
            self.source_version = self.source.version
            self.runner.request()
            self._report(new)
            if self.obs:
                self.obs.source_changed(new)
        self._check_intact()
        self._watch_podnet()
        if self.snapshot is None or not self.runner.due(self.clock()):
            return False
        started = time.time()
        if self.obs:
            self.obs.sync_started()
        result = self.proxy.sync(self.snapshot)
        if self.obs:
            self.obs.sync_finished(result, full=result.full, policies=self.proxy.last_policies)
        podnet: dict[str, Any] = {}
        ok = result.ok
        if self.podnet is not None:
            try:
                podnet = self.podnet.sync(self.snapshot)
            except Exception as e:  # a pod network failure must not stop the proxy
                log.error("pod network sync failed: %s", e)
                podnet, ok = {"error": str(e)}, False
                if self.obs:
                    self.obs.podnet_failed()
        self.runner.done(self.clock(), ok=ok)
        self.last_error = None if ok else (result.error or podnet.get("error") or "sync failed")
        self.syncs += 1
        fields = {
            "n": self.syncs,
            "sync": "full" if result.full else "partial",
            "ok": ok,
            "seconds": round(result.seconds, 4),
            "service_ports": result.service_ports,
            "changed_ports": result.changed_ports,
            "rules": result.rules,
            "conntrack_deleted": result.conntrack_deleted,
        }
        log.log(logging.INFO if ok else logging.ERROR, "synced" if ok else "sync failed", extra={"fields": fields})
        self._write_status(started, ok, result.service_ports, result.rules, result.error, podnet)
        return True

    def _check_source(self) -> None:
        """Log a source problem once when it starts and once when it ends; /healthz follows it."""
        problem = self.source.problem
        if problem == self.problem:
            return
        if problem is not None:
            log.error("source unavailable, keeping the last rules: %s", problem)
        else:
            log.info("source %s readable again", self.source)
        self.problem = problem
        if self.obs:
            self.obs.source_problem(problem)

    def once(self, deadline_s: float = 30.0) -> str | None:
        """``--once``: wait (up to ``deadline_s``) for the source's first snapshot, sync it once;
        the reason it failed, in one line, or None."""
        end = self.clock() + deadline_s
        while self.snapshot is None:
            self.turn()
            if self.problem is not None:
                return f"source: {self.problem}"
            if self.snapshot is None:
                if self.clock() >= end:
                    return f"{self.source}: no objects within {deadline_s:g}s"
                self.stop.wait(0.05)
        if self.syncs == 0:
            self.runner.last_end = None
            self.turn()
        if self.last_error is not None:
            return self.last_error
        node = self.proxy.config.node_name
        if not any(n.name == node for n in self.snapshot.nodes):
            return f'node "{node}" not found among the Node objects'
        return None

    def _check_intact(self) -> None:
        """Someone changed what clew owns in the shared chains (``iptables -F KUBE-SERVICES``, a
        deleted jump, ``iptables -t nat -F``, a firewalld reload): log each chain, count it, and
        resync in full at once."""
        now = self.clock()
        if self.snapshot is None or self.syncs == 0 or now - self.checked_at < INTACT_INTERVAL:
            return
        self.checked_at = now
        diffs = self.proxy.tampered()
        if not diffs:
            return
        for d in diffs:
            log.warning("ruleset tampered", extra={"fields": {"table": d.table, "chain": d.chain, "change": d.change}})
            if self.obs:
                self.obs.ruleset_tampered(d.table, d.chain)
        self.proxy.request_full()
        self.runner.request()
        self.runner.last_end = None  # due now, whatever min-sync-period says

    def _watch_podnet(self) -> None:
        """The pod network's per-turn liveness check (BIRD): each restart is logged and counted.
        Not once the agent is stopping: a lab tearing a node down ends BIRD and the agent
        together, and an agent on its way out must not start a new BIRD."""
        if self.podnet is None or self.stop.is_set():
            return
        try:
            event = self.podnet.watch()
        except Exception as e:  # a watch failure must not stop the loop
            event = {"error": str(e)}
        if event is None:
            return
        if "error" in event:
            log.error("bird is not running and did not start: %s", event["error"])
            if self.obs:
                self.obs.bird_restart_failed()
            return
        log.warning("bird (pid %s) was not running; started it again (pid %s)", event["old"], event["pid"])
        if self.obs:
            self.obs.bird_restarted()

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        log.info(
            "agent started: source %s, node %s, netns %s",
            self.source,
            self.proxy.config.node_name,
            self.proxy.netns,
        )
        while not self.stop.is_set():
            self.turn()
            wait = min(POLL_INTERVAL, self.runner.next_due(self.clock())) if self.snapshot else POLL_INTERVAL
            self.stop.wait(max(wait, 0.01))
        log.info("agent stopping; the rules stay in place")

    def _report(self, snapshot: Snapshot) -> None:
        for r in snapshot.rejections:
            item = str(r)
            if item not in self.reported:
                self.reported.add(item)
                log.warning("rejected", extra={"fields": {"object": r.object, "field": r.field, "reason": r.reason}})
        for where, problem in self.source.errors.items():
            item = f"{where}: {problem}"
            if item not in self.reported:
                self.reported.add(item)
                log.warning("source: %s", item)
        for note in snapshot.notes:  # valid input clew skips or cannot check (e.g. no service range known)
            if note not in self.reported:
                self.reported.add(note)
                log.info("note: %s", note)

    def _write_status(
        self, started: float, ok: bool, ports: int, rules: int, error: str | None, podnet: dict[str, Any]
    ) -> None:
        if self.status_file is None:
            return
        doc = {
            "ok": ok,
            "syncs": self.syncs,
            "sync_started": started,
            "source_changed": self.changed_at,
            "source_version": self.source_version,
            "service_ports": ports,
            "rules": rules,
            "error": error,
            "podnet": podnet,
            "rejections": len(self.snapshot.rejections) if self.snapshot else 0,
        }
        rejected = self.snapshot.rejections if self.snapshot else ()
        if len(rejected) <= MAX_LISTED_REJECTIONS:  # named, so `clew lab apply` need not re-read the folder
            doc["rejected"] = [str(r) for r in rejected]
        write_atomic(self.status_file, json.dumps(doc, indent=2) + "\n")
