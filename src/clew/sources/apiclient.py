"""The few HTTP calls clew makes to a kube-apiserver, over the standard library's `http.client`.

List (JSON), watch (a chunked stream of JSON lines, one event per line) and PATCH: that is all a
node agent needs, so no client library is involved (see `sources/kube.py` for why). A request
fails with `ApiError` carrying the HTTP status and the API's ``Status`` reason and message, or
with the `OSError` / `http.client.HTTPException` of a broken connection.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlencode

from clew.sources.kubeconfig import ClusterConfig

USER_AGENT = "clew/0.1 (node agent)"


class ApiError(Exception):
    """The API server answered with an error ``Status`` (or an HTTP error without one)."""

    def __init__(self, code: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"HTTP {code} {reason}: {message}".rstrip(": "))
        self.code, self.reason, self.message = code, reason, message

    @property
    def gone(self) -> bool:
        """410 Gone (``Expired``): the resourceVersion or continue token is too old; list again."""
        return self.code == 410

    @classmethod
    def from_status(cls, status: Any, default_code: int = 500) -> ApiError:
        if not isinstance(status, dict):
            return cls(default_code, "", str(status)[:200])
        code = status.get("code")
        return cls(
            code if isinstance(code, int) else default_code,
            str(status.get("reason") or ""),
            str(status.get("message") or ""),
        )

    @classmethod
    def from_body(cls, code: int, body: bytes) -> ApiError:
        try:
            status = json.loads(body)
        except ValueError:
            return cls(code, http.client.responses.get(code, ""), body[:200].decode("utf-8", "replace"))
        err = cls.from_status(status, code)
        err.code = code
        return err


class _Connection(http.client.HTTPConnection):
    """HTTP or HTTPS (with an optional ``tls-server-name``), with TCP keepalive so that a
    silently dead API server is noticed on a long watch."""

    def __init__(self, cfg: ClusterConfig, ctx: ssl.SSLContext | None, timeout: float) -> None:
        super().__init__(cfg.host, cfg.port, timeout=timeout)
        self._ctx, self._server_name = ctx, cfg.tls_server_name or cfg.host
        self._interrupted = False

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, opt):
                self.sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
        if self._ctx is not None:
            self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._server_name)
        if self._interrupted:  # interrupt() came before self.sock was the socket we read from
            raise OSError("connection interrupted")

    def interrupt(self) -> None:
        """Wake a thread blocked reading this connection (from another thread), or make the
        connection fail if it is not yet made."""
        self._interrupted = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ApiClient:
    """Opens connections and speaks JSON to one API server; safe to share between threads (each
    thread uses its own connections)."""

    def __init__(self, config: ClusterConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self.timeout = timeout
        self._ctx = config.ssl_context() if config.scheme == "https" else None

    def connect(self, timeout: float | None = None) -> _Connection:
        return _Connection(self.config, self._ctx, self.timeout if timeout is None else timeout)

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        return self.config.prefix + path + (f"?{urlencode(query)}" if query else "")

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request; a 2xx response is returned unread, any other raises `ApiError`."""
        conn.request(method, self.url(path, query), body=body, headers=self._headers(content_type))
        resp = conn.getresponse()
        if not 200 <= resp.status < 300:
            raise ApiError.from_body(resp.status, resp.read())
        return resp

    def json(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        resp = self.send(conn, method, path, query, data, content_type if data is not None else None)
        return json.loads(resp.read())
