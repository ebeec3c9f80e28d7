"""A small kube-apiserver for tests, speaking the real wire format over HTTP/1.1 on loopback.

What it serves, shaped as the API serves it:
- ``GET /api/v1/services``, ``/apis/discovery.k8s.io/v1/endpointslices``, ``/api/v1/nodes``: a
  ``*List`` with ``metadata.resourceVersion``, items WITHOUT kind/apiVersion (as the API sends
  them), ``limit``/``continue`` pages served from one snapshot (with ``remainingItemCount``),
  and ``labelSelector`` (``key``, ``!key``, ``key=value``, ``key!=value``).
- ``?watch=1&resourceVersion=RV``: ``Transfer-Encoding: chunked``, one JSON event per line;
  events after RV from the history, then live ones; BOOKMARKs; ``timeoutSeconds`` ends the
  stream cleanly. A resourceVersion older than the compaction point answers either an ERROR
  event with a 410 ``Expired`` Status (what the watch cache does) or an HTTP 410 Status.
- ``PATCH /api/v1/nodes/NAME/status`` (strategic merge of ``metadata.annotations``; null deletes).
- Failure modes: `drop_watches` (cut the connection in the middle of an event), `expire`
  (compaction, with an ERROR 410 sent on open watches), `stop`/`start` (the server goes away and
  comes back on the same port), `fail_next` (answer the next requests with an HTTP error).

Every request is recorded (method, path, query, headers, body) for assertions; `wait_request`
blocks on a condition variable until a matching one arrives (no sleeping).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

RESOURCES = {
    "/api/v1/services": ("services", "Service", "v1"),
    "/apis/discovery.k8s.io/v1/endpointslices": ("endpointslices", "EndpointSlice", "discovery.k8s.io/v1"),
    "/api/v1/nodes": ("nodes", "Node", "v1"),
}
BY_KIND = {kind: (res, api) for res, kind, api in RESOURCES.values()}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("1", "true")


@dataclass
class Event:
    rv: int
    resource: str
    type: str  # ADDED MODIFIED DELETED BOOKMARK ERROR
    object: dict[str, Any]


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if term.startswith("!"):
            ok = term[1:] not in labels
        elif "!=" in term:
            k, v = term.split("!=", 1)
            ok = labels.get(k) != v
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            ok = labels.get(k) == v
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def key_of(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


@dataclass
class FakeApiServer:
    tls: ssl.SSLContext | None = None
    gone_as_http: bool = False  # answer a too-old watch with HTTP 410 instead of an ERROR event
    rv: int = 1000
    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=lambda: {res: {} for res, _, _ in RESOURCES.values()}
    )
    history: list[Event] = field(default_factory=list)
    compacted: dict[str, int] = field(default_factory=dict)  # watches from below this RV are Gone
    requests: list[Request] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0
    _epoch: int = 0  # bumped by drop_watches/stop: open streams at an older epoch are cut
    _failures: list[tuple[Callable[[Request], bool], int, dict[str, Any]]] = field(default_factory=list)
    _lists: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)
    _httpd: ThreadingHTTPServer | None = None
    _conns: set[socket.socket] = field(default_factory=set)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        server = self

        class Handler(_Handler):
            api = server

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away: stop listening and cut every open connection (watches and idle keep-alives)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self.cond:
            self._epoch += 1
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.cond.notify_all()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- the cluster's state ---------------------------------------------------------------

    def put(self, obj: dict[str, Any], *, silently: bool = False) -> str:
        """Create or replace an object (ADDED or MODIFIED); its new resourceVersion."""
        obj = copy.deepcopy(obj)
        resource = BY_KIND[obj["kind"]][0]
        with self.cond:
            store = self.objects[resource]
            key = key_of(obj)
            type_ = "MODIFIED" if key in store else "ADDED"
            self.rv += 1
            meta = obj["metadata"]
            meta["resourceVersion"] = str(self.rv)
            meta.setdefault("uid", f"uid-{resource}-{key[0]}-{key[1]}")
            meta.setdefault("creationTimestamp", "2024-05-01T10:00:00Z")
            store[key] = obj
            if not silently:
                self.history.append(Event(self.rv, resource, type_, obj))
                self.cond.notify_all()
            return str(self.rv)

    def delete(self, kind: str, name: str, namespace: str = "", *, silently: bool = False) -> None:
        """Delete; ``silently`` leaves no event (as if it happened during a compacted gap)."""
        resource = BY_KIND[kind][0]
        with self.cond:
            obj = self.objects[resource].pop((namespace, name))
            self.rv += 1
            if not silently:
                gone = copy.deepcopy(obj)
                gone["metadata"]["resourceVersion"] = str(self.rv)
                self.history.append(Event(self.rv, resource, "DELETED", gone))
                self.cond.notify_all()

    def bookmark(self, kind: str) -> str:
        """Other resources moved on: send open watches of ``kind`` a BOOKMARK at a newer RV."""
        resource, api = BY_KIND[kind]
        with self.cond:
            self.rv += 5
            obj = {
                "kind": kind,
                "apiVersion": api,
                "metadata": {"resourceVersion": str(self.rv), "annotations": {"k8s.io/initial-events-end": "true"}},
            }
            self.history.append(Event(self.rv, resource, "BOOKMARK", obj))
            self.cond.notify_all()
            return str(self.rv)

    def expire(self, kind: str, *, notify: bool = True) -> None:
        """Compact: every older resourceVersion is now too old and continue tokens expire;
        with ``notify`` open watches of ``kind`` get an ERROR 410 event."""
        resource = BY_KIND[kind][0]
        with self.cond:
            self.compacted[resource] = self.rv
            self._lists.clear()
            if notify:
                message = f"too old resource version: 1 ({self.rv})"
                self.history.append(Event(self.rv, resource, "ERROR", status(410, "Expired", message)))
                self.cond.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch in the middle of an event (the client sees a broken chunk)."""
        with self.cond:
            self._epoch += 1
            self.cond.notify_all()

    def fail_next(self, match: Callable[[Request], bool], code: int = 500, count: int = 1) -> None:
        with self.cond:
            reason = {403: "Forbidden", 410: "Expired", 429: "TooManyRequests"}.get(code, "InternalError")
            for _ in range(count):
                self._failures.append((match, code, status(code, reason, f"injected failure {code}")))

    def wait_request(self, match: Callable[[Request], bool], *, after: int = 0, timeout: float = 5.0) -> Request:
        """The first request from index ``after`` on that matches, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for req in self.requests[after:]:
                    if match(req):
                        return req
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching request; saw {[(r.method, r.path, r.query) for r in self.requests]}"
                    )
                self.cond.wait(left)

    # -- serving ---------------------------------------------------------------------------

    def list_page(self, resource: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        _, kind, api = next(v for v in RESOURCES.values() if v[0] == resource)
        selector = query.get("labelSelector", "")
        limit = int(query.get("limit") or 0)
        with self.cond:
            if query.get("continue"):
                token = json.loads(base64.b64decode(query["continue"]))
                snap = self._lists.get(token["id"])
                if snap is None:
                    return 410, status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result.",
                    )
                rv, items = snap
                start = token["start"]
            else:
                rv = self.rv
                items = [
                    copy.deepcopy(o)
                    for _, o in sorted(self.objects[resource].items())
                    if selector_matches(selector, o["metadata"].get("labels") or {})
                ]
                start = 0
            page = items[start : start + limit] if limit else items[start:]
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit and start + limit < len(items):
                list_id = f"{resource}-{rv}-{id(items)}"
                self._lists[list_id] = (rv, items)
                meta["continue"] = base64.b64encode(
                    json.dumps({"id": list_id, "start": start + limit}).encode()
                ).decode()
                meta["remainingItemCount"] = len(items) - start - limit
        for item in page:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return 200, {"kind": f"{kind}List", "apiVersion": api, "metadata": meta, "items": page}

    def patch_status(self, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.cond:
            node = self.objects["nodes"].get(("", name))
            if node is None:
                return 404, status(404, "NotFound", f'nodes "{name}" not found')
            node = copy.deepcopy(node)
        annotations = node["metadata"].setdefault("annotations", {})
        for k, v in (body.get("metadata", {}).get("annotations") or {}).items():
            if v is None:
                annotations.pop(k, None)
            else:
                annotations[k] = v
        self.put(node)
        with self.cond:
            return 200, copy.deepcopy(self.objects["nodes"][("", name)])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.api.cond:
            self.api._conns.add(self.connection)

    def finish(self) -> None:
        with self.api.cond:
            self.api._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _request(self) -> Request | None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.api.cond:
            self.api.requests.append(req)
            self.api.cond.notify_all()
            for i, (match, code, doc) in enumerate(self.api._failures):
                if match(req):
                    del self.api._failures[i]
                    self._json(code, doc)
                    return None
        return req

    def _json(self, code: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        req = self._request()
        if req is None:
            return
        found = RESOURCES.get(req.path)
        if found is None:
            self._json(404, status(404, "NotFound", "the server could not find the requested resource"))
        elif req.watch:
            self._watch(found[0], req.query)
        else:
            self._json(*self.api.list_page(found[0], req.query))

    def do_PATCH(self) -> None:
        req = self._request()
        if req is None:
            return
        parts = req.path.split("/")
        if len(parts) != 6 or parts[:4] != ["", "api", "v1", "nodes"] or parts[5] != "status":
            self._json(404, status(404, "NotFound", "the server could not find the requested resource"))
        elif req.headers.get("content-type") != "application/strategic-merge-patch+json":
            self._json(415, status(415, "UnsupportedMediaType", "unsupported patch type"))
        else:
            self._json(*self.api.patch_status(parts[4], json.loads(req.body)))

    def _chunk(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

    def _watch(self, resource: str, query: dict[str, str]) -> None:
        api = self.api
        rv = int(query.get("resourceVersion") or 0)
        selector = query.get("labelSelector", "")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        with api.cond:
            epoch = api._epoch
            too_old = rv < api.compacted.get(resource, 0)
            cursor = next((i for i, e in enumerate(api.history) if e.rv > rv), len(api.history))
        if too_old and api.gone_as_http:
            self._json(410, status(410, "Expired", f"too old resource version: {rv} ({api.rv})"))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if too_old:
            self._chunk(
                {"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {rv} ({api.rv})")}
            )
            self._end()
            return
        while True:
            with api.cond:
                while cursor >= len(api.history) and api._epoch == epoch and time.monotonic() < deadline:
                    api.cond.wait(max(0.0, deadline - time.monotonic()))
                if api._epoch != epoch:
                    self._cut()
                    return
                pending, cursor = api.history[cursor:], len(api.history)
            for event in pending:
                if event.resource != resource:
                    continue
                labels = event.object.get("metadata", {}).get("labels") or {}
                if event.type in ("ADDED", "MODIFIED", "DELETED") and not selector_matches(selector, labels):
                    continue
                self._chunk({"type": event.type, "object": event.object})
                if event.type == "ERROR":
                    self._end()
                    return
            if time.monotonic() >= deadline:
                self._end()
                return

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Half an event, then the connection goes: what a dying API server or proxy leaves."""
        try:
            self.wfile.write(b'80\r\n{"type":"MODIFIED","object":{"kind":')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True
