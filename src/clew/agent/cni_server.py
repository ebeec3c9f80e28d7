"""The agent's end of `clew.cni.client`: CNI requests over a local unix socket.

Each connection is one CNI invocation, run with `clew.cni.plugin.run` in a thread of this
long-lived process (the plugin's store is locked with flock, so concurrent ADDs are as safe
as concurrent plugin processes). The socket is created with mode 0600: only root may ask.

The client's network namespace — the node, as the runtime that exec'ed the plugin sees it — is
found from the socket's peer credentials and handed to ``run`` as a namespace no pod interface
may be made in or deleted from (`clew.cni.netns_guard`). A client that goes away before its
answer is written (a runtime timing out, a killed plugin) is one log line, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from clew.cni.netns_guard import NsId, of_pid
from clew.cni.plugin import run

log = logging.getLogger("clew.cni")


def parse_request(data: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, config = data.partition(b"\0\0")
    if not sep:  # no variables at all: the request starts with the separator
        head, config = b"", data[1:] if data.startswith(b"\0") else data
    env: dict[str, str] = {}
    for item in head.split(b"\0"):
        key, eq, value = item.decode(errors="replace").partition("=")
        if eq and key.startswith("CNI_"):
            env[key] = value
    env["PATH"] = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return env, config


_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_netns(sock: socket.socket) -> list[NsId]:
    """The client process's network namespace, from ``SO_PEERCRED`` (empty when unknown)."""
    try:
        pid, _, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return []
    ns = of_pid(pid)
    return [ns] if ns is not None else []


def _describe(env: dict[str, str]) -> str:
    return " ".join(f"{k}={env[k]}" for k in ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME") if k in env) or "request"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            data = self.rfile.read()
        except OSError as e:
            log.warning("CNI client went away while sending its request: %s", e.strerror or e)
            return
        env, config = parse_request(data)
        out = io.StringIO()
        try:
            status = run(env, config, out, node_netns=peer_netns(self.request))
        except BaseException as e:  # run() already maps errors; this is a last guard
            log.error("CNI request failed: %s", e)
            status = 1
        try:
            self.wfile.write(f"{status}\n".encode() + out.getvalue().encode())
            self.wfile.flush()
        except OSError as e:
            why = e.strerror or e
            log.warning("CNI client went away before the answer to %s (exit %d): %s", _describe(env), status, why)

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the answer could not be flushed: already logged in handle()
            super().finish()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of socketserver's traceback on stderr (the handler catches the expected ones)."""
        exc = sys.exc_info()[1]
        log.error("CNI connection failed: %s: %s", type(exc).__name__, exc)


class CniServer:
    """Serve CNI requests on ``path`` until `stop`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self._server = _Server(str(path), _Handler)
        finally:
            os.umask(old)
        self._thread = threading.Thread(target=self._server.serve_forever, name="cni-server", daemon=True)

    def start(self) -> CniServer:
        self._thread.start()
        log.info("serving CNI requests on %s", self.path)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m clew.agent.cni_server SOCKET``: serve until SIGTERM (benchmarks, tests)."""
    import signal

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m clew.agent.cni_server SOCKET")
    server = CniServer(Path(args[0])).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
