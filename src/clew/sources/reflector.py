"""A reflector: one resource kept in memory by list + watch, as client-go's does it.

List (in pages of ``page_size`` with ``limit``/``continue``), remember the list's
``resourceVersion``, then watch from it with bookmarks. Each event line is applied under the
shared lock: ADDED/MODIFIED store the object, DELETED removes it, BOOKMARK only moves the
resourceVersion, ERROR 410 (or an HTTP 410) means the version is too old: list again and
replace the store, which drops every object deleted during the gap. A stream that ends or
breaks is watched again from the last resourceVersion; a failed connection or any other error
is retried after a jittered exponential backoff and lists again, so a returning API server is
resynchronised. The store stays as it was meanwhile: rules are kept, never emptied, while the
API server is away. ``on_change`` is called (under the lock) whenever the store changed.

Objects are kept as the API's dicts (read-only once stored), minus what no consumer reads
(`slim`: ``managedFields``, ``ownerReferences``, an endpoint's ``targetRef``, a Node's image
list, …) and with the repeated parts of endpoints shared (`_slim_endpoint`): an EndpointSlice
costs less than half the memory of the parsed original. ``kind`` and ``apiVersion`` are filled
in (list items come without them).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clew.sources.apiclient import ApiClient, ApiError, _Connection
from clew.sources.kubeconfig import KubeconfigError

log = logging.getLogger("clew.sources.kube")

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)  # ValueError: a broken JSON line
FAILURES = (ApiError, KubeconfigError, *NETWORK_ERRORS)  # KubeconfigError: the token file went away


@dataclass(frozen=True)
class Resource:
    path: str  # /api/v1/services
    kind: str
    api_version: str
    label_selector: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Backoff:
    """Jittered exponential delays: ``initial`` doubling up to ``cap``, each up to ``jitter`` longer."""

    initial: float = 0.1
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5
    rand: Callable[[], float] = random.random
    _attempt: int = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return min(self.cap, base * (1 + self.jitter * self.rand()))

    def reset(self) -> None:
        self._attempt = 0


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def object_key(obj: Any) -> Key | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return None
    ns = meta.get("namespace") if isinstance(meta, dict) else ""
    return (ns if isinstance(ns, str) else "", name)


def resource_version(obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) else ""


META_KEPT = ("name", "namespace", "labels", "annotations", "resourceVersion", "deletionTimestamp", "creationTimestamp")
KEPT = {  # top-level fields kept per kind; the rest (and managedFields, uid, ownerReferences…) go
    "Service": ("metadata", "spec", "status"),
    "EndpointSlice": ("metadata", "addressType", "endpoints", "ports"),
    "Node": ("metadata", "spec", "status"),
}
ENDPOINT_DROPPED = ("targetRef", "deprecatedTopology")  # per endpoint of a slice: ~40% of its size


def slim(obj: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """The object as clew keeps it: what `model.from_kube` reads and a little more (a Node's
    taints and deletionTimestamp), with ``kind`` and ``apiVersion`` (list items come without)."""
    kept: dict[str, Any] = {"kind": resource.kind, "apiVersion": resource.api_version}
    for name in KEPT.get(resource.kind, tuple(obj)):
        if name in obj:
            kept[name] = obj[name]
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        kept["metadata"] = meta = {k: meta[k] for k in META_KEPT if k in meta}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    status = kept.get("status")
    if resource.kind == "Node" and isinstance(status, dict):
        status.pop("images", None)
    endpoints = kept.get("endpoints")
    if isinstance(endpoints, list):
        for ep in endpoints:
            if isinstance(ep, dict):
                _slim_endpoint(ep)
    return kept


CONDITIONS = {"ready", "serving", "terminating"}
_CONDITIONS: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}  # at most 27


def _slim_endpoint(ep: dict[str, Any]) -> None:
    """Drop what no one reads; share what repeats across thousands of endpoints: the handful of
    distinct ``conditions`` (a dict each, read-only from here on) and node and zone names."""
    for name in ENDPOINT_DROPPED:
        ep.pop(name, None)
    cond = ep.get("conditions")
    if (
        isinstance(cond, dict)
        and cond.keys() <= CONDITIONS
        and all(v is None or isinstance(v, bool) for v in cond.values())
    ):
        ep["conditions"] = _CONDITIONS.setdefault(tuple(sorted(cond.items())), cond)
    for name in ("nodeName", "zone"):
        value = ep.get(name)
        if isinstance(value, str):
            ep[name] = sys.intern(value)


@dataclass
class Reflector:
    client: ApiClient
    resource: Resource
    lock: threading.Lock
    on_change: Callable[[], None]
    backoff: Backoff = field(default_factory=Backoff)
    page_size: int = 500
    watch_timeout: Callable[[], int] = lambda: random.randint(300, 600)  # client-go: 5 min x (1 + rand)
    store: dict[Key, dict[str, Any]] = field(default_factory=dict)
    rv: str = ""
    synced: bool = False
    connected: bool = False
    error: str | None = None  # the last failure, None once a request succeeds again
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("lists", "watches", "events", "gone"), 0))
    _stop: threading.Event = field(default_factory=threading.Event)
    _conn: _Connection | None = None
    _conn_lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _productive: bool = False  # the current watch delivered an event or lasted a while

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"reflector-{self.resource.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Ask the thread to end, waking it from a read, a connect or a backoff wait."""
        self._stop.set()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.interrupt()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        need_list = True
        while not self._stop.is_set():
            self._productive = False
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch()
            except Gone:
                self.stats["gone"] += 1
                need_list = True
            except FAILURES as e:
                self._failed(e)
                need_list = True
            except Exception as e:  # a bug must not end the thread: log it and start over
                log.exception("%s: unexpected error", self.resource.name)
                self._failed(e)
                need_list = True
            if self._productive:  # the watch delivered: go again at once
                self.backoff.reset()
            else:  # nothing came (refused, an error, 410 right after a list): wait, longer each time
                self._stop.wait(self.backoff.next())
        self._close_conn()

    def _failed(self, e: BaseException) -> None:
        self._close_conn()
        if self._stop.is_set():
            return
        self.connected = not isinstance(e, OSError | http.client.HTTPException | KubeconfigError)
        error = f"{self.resource.name}: {e}"
        (log.debug if error == self.error else log.warning)("%s", error)  # each new problem once
        self.error = error

    def _connection(self, timeout: float, *, fresh: bool = False) -> _Connection:
        """The reflector's connection; ``fresh`` starts a new one (each list and each watch does,
        so a keep-alive connection the server has closed meanwhile is never mistaken for the
        server being away)."""
        if fresh:
            self._close_conn()
        with self._conn_lock:
            if self._stop.is_set():
                raise OSError("reflector stopped")
            if self._conn is None:
                self._conn = self.client.connect(timeout)
            return self._conn

    def _close_conn(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _ok(self) -> None:
        if not self.connected and self.error:
            log.info("%s: connected", self.resource.name)
        self.connected, self.error = True, None

    # -- list ------------------------------------------------------------------------------

    def _list(self) -> None:
        query = {"limit": str(self.page_size)}
        if self.resource.label_selector:
            query["labelSelector"] = self.resource.label_selector
        items: dict[Key, dict[str, Any]] = {}
        rv, cont = "", ""
        conn = self._connection(self.client.timeout, fresh=True)
        while True:
            page_query = {**query, "continue": cont} if cont else query
            try:
                page = self.client.json(conn, "GET", self.resource.path, page_query)
            except ApiError as e:
                if e.gone and cont:  # the continue token expired: start the list again
                    items, cont = {}, ""
                    continue
                raise
            self._ok()
            meta = page.get("metadata") if isinstance(page, dict) else None
            if not isinstance(meta, dict) or not isinstance(page.get("items", []), list):
                raise ValueError(f"{self.resource.path}: not a List")
            for obj in page.get("items") or []:
                key = object_key(obj)
                if key is None:
                    log.warning("%s: listed an object without metadata.name; ignored", self.resource.name)
                    continue
                items[key] = slim(obj, self.resource)
            rv = str(meta.get("resourceVersion") or "")
            cont = str(meta.get("continue") or "")
            if not cont:
                break
        self.stats["lists"] += 1
        self._replace(items, rv)

    def _replace(self, items: dict[Key, dict[str, Any]], rv: str) -> None:
        with self.lock:
            old = self.store
            gone = old.keys() - items.keys()
            changed = [k for k, o in items.items() if k not in old or resource_version(old[k]) != resource_version(o)]
            self.store, self.rv = items, rv
            first = not self.synced
            self.synced = True
            if first or gone or changed:
                self.on_change()
        if not first and (gone or changed):
            log.info("%s: relisted, %d changed, %d deleted", self.resource.name, len(changed), len(gone))

    # -- watch -----------------------------------------------------------------------------

    def _watch(self) -> None:
        """Watch until the stream ends or breaks (then the caller watches again from ``self.rv``)."""
        seconds = self.watch_timeout()
        query = {
            "watch": "1",
            "resourceVersion": self.rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        if self.resource.label_selector:
            query["labelSelector"] = self.resource.label_selector
        try:
            resp = self.client.send(self._connection(seconds + 30.0, fresh=True), "GET", self.resource.path, query)
        except ApiError as e:
            if e.gone:
                raise Gone from None
            raise
        self._ok()
        self.stats["watches"] += 1
        started = time.monotonic()
        try:
            for line in _lines(resp):
                self._apply(json.loads(line))
                self._productive = True
        except NETWORK_ERRORS as e:  # a dropped stream: watch again from self.rv
            self._close_conn()
            if not self._stop.is_set():
                log.debug("%s: watch stream broke: %r", self.resource.name, e)
        if time.monotonic() - started >= 1.0:
            self._productive = True

    def _apply(self, event: Any) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            err = ApiError.from_status(obj)
            if err.gone:
                raise Gone
            raise err
        rv = resource_version(obj)
        if kind == "BOOKMARK":
            if rv:
                with self.lock:
                    self.rv = rv
            return
        key = object_key(obj)
        if kind not in ("ADDED", "MODIFIED", "DELETED") or key is None or not isinstance(obj, dict):
            log.warning("%s: ignored a watch event %.200r", self.resource.name, event)
            return
        self.stats["events"] += 1
        with self.lock:
            if rv:
                self.rv = rv
            if kind == "DELETED":
                if self.store.pop(key, None) is not None:
                    self.on_change()
                return
            old = self.store.get(key)
            if old is not None and rv and resource_version(old) == rv:
                return  # seen already (a relist raced the event)
            self.store[key] = slim(obj, self.resource)
            self.on_change()


def _lines(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        line = resp.readline()
        if not line:
            return
        if line.strip():
            yield line
