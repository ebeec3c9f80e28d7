"""The agent's end of `clew.cni.client`: CNI requests over a local unix socket.

Each connection is one CNI invocation, run with `clew.cni.plugin.run` in a thread of this
long-lived process (the plugin's store is locked with flock, so concurrent ADDs are as safe
as concurrent plugin processes). The socket is created with mode 0600: only root may ask.
"""

from __future__ import annotations

import io
import logging
import os
import socketserver
import threading
from pathlib import Path

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


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        data = self.rfile.read()
        env, config = parse_request(data)
        out = io.StringIO()
        try:
            status = run(env, config, out)
        except BaseException as e:  # run() already maps errors; this is a last guard
            log.error("CNI request failed: %s", e)
            status = 1
        self.wfile.write(f"{status}\n".encode() + out.getvalue().encode())


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


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
    import sys

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
