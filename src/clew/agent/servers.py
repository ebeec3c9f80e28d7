"""The agent's two HTTP servers, as kube-proxy has them.

* the metrics address (``metricsBindAddress``, default 127.0.0.1:10249): ``/metrics`` (Prometheus
  text, or OpenMetrics when asked), ``/healthz`` and ``/healthz/ping`` ("ok"), ``/proxyMode``,
  ``/configz`` (the effective configuration, see `clew.model.configz`);
* the health address (``healthzBindAddress``, default 0.0.0.0:10256 as kube-proxy's):
  ``/healthz`` and ``/livez`` with kube-proxy's JSON bodies (see `health`).

Both are stdlib ``ThreadingHTTPServer``s in daemon threads: a probe never waits for a sync. They
listen in the namespace the agent programs (``netns``; see `clew.kernel.ns_socket`), never in the host's on its
behalf. An empty address disables that server (kube-proxy's "set empty to disable"); a port of 0
binds an ephemeral one (tests). A bind failure is a `BindError` naming the address.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from clew.agent.health import HEADERS as JSON_HEADERS
from clew.agent.health import ProxyHealth
from clew.agent.metrics import ProxyMetrics
from clew.kernel.errors import KernelError
from clew.kernel.ns_socket import socket_in
from clew.model.configz import configz
from clew.model.proxy_config import ProxyConfig

log = logging.getLogger("clew.agent.http")

TEXT_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
POLL_INTERVAL = 0.1  # seconds; how soon a server notices `stop` (the socket wakes it for requests)
Response = tuple[int, dict[str, str], bytes]
Route = Callable[[BaseHTTPRequestHandler], Response]


class BindError(Exception):
    """A server could not listen; the message is one line naming the setting and the address."""


def parse_address(text: str, setting: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as Go writes it; an empty host means every address."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BindError(f"{setting} {text!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: dict[str, Route], netns: str = "") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.routes = routes
        super().__init__(address, _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = socket_in(netns, self.address_family, socket.SOCK_STREAM, bind=address, listen=128, reuse=True)
        self.server_address = self.socket.getsockname()


class _Handler(BaseHTTPRequestHandler):
    server_version = "clew"

    def do_GET(self) -> None:
        route = cast(_Server, self.server).routes.get(self.path.split("?", 1)[0])
        if route is None:
            code, headers, body = 404, TEXT_HEADERS, b"404 page not found\n"
        else:
            code, headers, body = route(self)
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


@dataclass
class Servers:
    """The metrics and health servers of one agent; `start` binds both or neither."""

    metrics: ProxyMetrics
    health: ProxyHealth
    mode: str = "iptables"
    config: ProxyConfig | None = None  # served on /configz
    netns: str = ""  # the namespace to listen in ("" the agent's own)
    running: dict[str, tuple[_Server, threading.Thread]] = field(default_factory=dict)

    def metrics_routes(self) -> dict[str, Route]:
        ok: Route = lambda _: (200, TEXT_HEADERS, b"ok")  # noqa: E731
        return {
            "/metrics": self._metrics,
            "/healthz": ok,
            "/healthz/ping": ok,
            "/proxyMode": lambda _: (200, TEXT_HEADERS, self.mode.encode()),
            "/configz": self._configz,
        }

    def health_routes(self) -> dict[str, Route]:
        return {"/healthz": self._healthz, "/livez": self._livez}

    def start(self, metrics_address: str, healthz_address: str) -> None:
        """Listen on both addresses (an empty one is skipped); raises `BindError`."""
        try:
            if metrics_address:
                self._listen("metricsBindAddress", metrics_address, self.metrics_routes())
            if healthz_address:
                self._listen("healthzBindAddress", healthz_address, self.health_routes())
        except BindError:
            self.stop()
            raise

    def _listen(self, setting: str, address: str, routes: dict[str, Route]) -> None:
        host, port = parse_address(address, setting)
        try:
            server = _Server((host, port), routes, self.netns)
        except (OSError, KernelError) as e:  # KernelError: the namespace is missing
            where = f" in netns {self.netns}" if self.netns else ""
            why = (e.strerror if isinstance(e, OSError) else e.detail) or e
            raise BindError(f"{setting}: cannot listen on {address}{where}: {why}") from None
        thread = threading.Thread(
            target=server.serve_forever, args=(POLL_INTERVAL,), name=f"clew-http-{setting}", daemon=True
        )
        thread.start()
        self.running[setting] = (server, thread)
        log.info("serving %s on %s:%d", setting, *server.server_address[:2])

    def stop(self) -> None:
        """Stop serving and close the sockets (both servers at once: each takes a poll interval)."""
        stoppers = [threading.Thread(target=server.shutdown) for server, _ in self.running.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for server, thread in self.running.values():
            server.server_close()
            thread.join(timeout=2)
        self.running.clear()

    def bound(self, setting: str) -> tuple[str, int]:
        """Where a running server listens (``metricsBindAddress`` or ``healthzBindAddress``)."""
        host, port = self.running[setting][0].server_address[:2]
        return str(host), int(port)

    def _configz(self, _: BaseHTTPRequestHandler) -> Response:
        doc = configz(self.config or ProxyConfig(mode=self.mode))
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()

    def _metrics(self, request: BaseHTTPRequestHandler) -> Response:
        body, content_type = self.metrics.exposition(request.headers.get("Accept"))
        return 200, {"Content-Type": content_type}, body

    def _healthz(self, _: BaseHTTPRequestHandler) -> Response:
        code, body = self.health.healthz()
        self.metrics.healthz_total.labels(str(code)).inc()
        return code, JSON_HEADERS, body

    def _livez(self, _: BaseHTTPRequestHandler) -> Response:
        code, body = self.health.livez()
        self.metrics.livez_total.labels(str(code)).inc()
        return code, JSON_HEADERS, body
