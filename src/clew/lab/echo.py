"""The lab's echo server and prober (stdlib only).

``python -m clew.lab.echo serve --name NAME --port P [--port P2 …] [--bind ADDR]`` answers on TCP
and UDP of every port with one line, ``NAME CLIENT_IP:CLIENT_PORT``: the server's name and the
client address it saw, so a probe shows which backend answered and whether the source was
NATed. It prints ``ready`` once every socket is bound.

``python -m clew.lab.echo probe --dst IP --port P [--proto tcp|udp] [--count N] [--timeout S]
[--src IP] [--sport P]`` makes N independent attempts (a new socket, so a new source port, each,
unless ``--sport`` fixes it: a UDP flow that must keep its 5-tuple across attempts) and prints
one JSON document (see :class:`ProbeResult`; each attempt names its own ``local`` address, so a
test sees whether NAT kept the source port). ``python -m clew.lab.echo batch`` runs many
probes, read as JSON lines from stdin, and prints one JSON list (see `batch`). ``probe`` exits 0
if every attempt got an answer, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH}
_MAX_REPLY = 4096


@dataclass(frozen=True)
class Attempt:
    """One probe attempt. ``error`` is None, "refused", "timeout", "unreachable" or "other: …"."""

    ok: bool
    server: str | None
    seen: str | None
    error: str | None
    elapsed_s: float
    local: str | None = None  # the client socket's own IP:PORT (before any NAT), once bound

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "server": self.server,
            "seen": self.seen,
            "error": self.error,
            "elapsed_s": self.elapsed_s,
            "local": self.local,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Attempt:
        return cls(
            ok=bool(doc["ok"]),
            server=doc.get("server"),
            seen=doc.get("seen"),
            error=doc.get("error"),
            elapsed_s=float(doc["elapsed_s"]),
            local=doc.get("local"),
        )


@dataclass(frozen=True)
class Summary:
    by_server: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    attempts: list[Attempt]

    @property
    def summary(self) -> Summary:
        servers = Counter(a.server for a in self.attempts if a.ok and a.server is not None)
        errors = Counter(_error_kind(a.error) for a in self.attempts if a.error is not None)
        return Summary(by_server=dict(sorted(servers.items())), errors=dict(sorted(errors.items())))

    @property
    def all_ok(self) -> bool:
        return bool(self.attempts) and all(a.ok for a in self.attempts)

    @property
    def servers(self) -> set[str]:
        return {a.server for a in self.attempts if a.server is not None}

    @property
    def seen_ips(self) -> set[str]:
        """The client IPs the servers saw (the probe's source after any NAT)."""
        return {a.seen.rsplit(":", 1)[0] for a in self.attempts if a.seen is not None}

    def to_json(self) -> dict[str, Any]:
        summary = self.summary
        return {
            "attempts": [a.to_json() for a in self.attempts],
            "summary": {"by_server": summary.by_server, "errors": summary.errors},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ProbeResult:
        return cls(attempts=[Attempt.from_json(a) for a in doc["attempts"]])


def _error_kind(error: str) -> str:
    """The counted kind of an error: "other: …" errors count as "other"."""
    return "other" if error.startswith("other") else error


def reply_line(name: str, client: tuple[Any, ...]) -> bytes:
    return f"{name} {client[0]}:{client[1]}\n".encode()


def parse_reply(data: bytes) -> tuple[str, str]:
    """``b"NAME IP:PORT\\n"`` → ``("NAME", "IP:PORT")``; ValueError if it is not such a line."""
    text = data.decode("utf-8", "replace").strip()
    parts = text.split()
    if len(parts) != 2 or ":" not in parts[1]:
        raise ValueError(f"bad reply {text[:80]!r}")
    return parts[0], parts[1]


# ---------------------------------------------------------------------------- probe


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return "unreachable"
    return f"other: {exc}"


def _recv_line(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < _MAX_REPLY:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out waiting for the reply")
        sock.settimeout(left)
        chunk = sock.recv(_MAX_REPLY)
        if not chunk:
            break
        data += chunk
    return data


def _exchange(dst: str, port: int, proto: str, timeout: float, src: str | None, sport: int, local: list[str]) -> bytes:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    deadline = time.monotonic() + timeout
    with socket.socket(_family(dst), kind) as sock:
        if sport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if src is not None or sport:
            sock.bind((src or "0.0.0.0", sport))
        sock.settimeout(timeout)
        try:
            sock.connect((dst, port))
        finally:
            with contextlib.suppress(OSError):
                host, lport = sock.getsockname()[:2]
                if lport:
                    local.append(f"{host}:{lport}")
        if proto == "udp":
            sock.send(b"probe\n")
        return _recv_line(sock, deadline)


def probe_once(
    dst: str, port: int, proto: str = "tcp", timeout: float = 1.0, src: str | None = None, sport: int = 0
) -> Attempt:
    """One attempt with a fresh socket (so a fresh source port, unless ``sport`` fixes it)."""
    if proto not in ("tcp", "udp"):
        raise ValueError(f"unsupported protocol {proto!r}")
    start = time.monotonic()
    local: list[str] = []
    try:
        data = _exchange(dst, port, proto, timeout, src, sport, local)
        server, seen = parse_reply(data)
    except (OSError, ValueError) as exc:
        error = f"other: {exc}" if isinstance(exc, ValueError) else _classify(exc)
        return Attempt(False, None, None, error, round(time.monotonic() - start, 6), local[-1] if local else None)
    return Attempt(True, server, seen, None, round(time.monotonic() - start, 6), local[-1] if local else None)


def probe(
    dst: str,
    port: int,
    proto: str = "tcp",
    count: int = 1,
    timeout: float = 1.0,
    src: str | None = None,
    sport: int = 0,
) -> ProbeResult:
    """``count`` independent attempts to ``dst:port`` over ``proto``."""
    return ProbeResult([probe_once(dst, port, proto, timeout, src, sport) for _ in range(count)])


def batch(lines: Iterable[str], timeout: float) -> list[dict[str, Any]]:
    """Many probes from one process (a test sending hundreds of packets from one namespace
    would otherwise start a Python per packet): one JSON object per line, ``{"dst", "port",
    "proto", "count", "src", "sport", "sports"}`` (all but dst and port optional; ``sports``: one
    source port per attempt, so that no two attempts share a 4-tuple at an endpoint — the kernel
    reuses a source port towards another destination, and two Service IPs DNATed to one endpoint
    then meet it as one connection, which its TIME_WAIT may swallow); a `ProbeResult` document per
    line, in order."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        job = json.loads(line)
        if "sports" in job:
            dst, port, proto = str(job["dst"]), int(job["port"]), str(job.get("proto", "tcp"))
            wait = float(job.get("timeout", timeout))
            attempts = [probe_once(dst, port, proto, wait, job.get("src"), int(sp)) for sp in job["sports"]]
            out.append(ProbeResult(attempts).to_json())
            continue
        result = probe(
            str(job["dst"]),
            int(job["port"]),
            str(job.get("proto", "tcp")),
            int(job.get("count", 1)),
            float(job.get("timeout", timeout)),
            job.get("src"),
            int(job.get("sport", 0)),
        )
        out.append(result.to_json())
    return out


# ---------------------------------------------------------------------------- serve


class EchoServer:
    """TCP and UDP echo-of-identity on several ports, one thread, one selector."""

    def __init__(self, name: str, ports: Sequence[int], bind: str = "0.0.0.0") -> None:
        self.name = name
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        try:
            for port in ports:
                self._listen(bind, port, socket.SOCK_STREAM)
                self._listen(bind, port, socket.SOCK_DGRAM)
        except BaseException:
            self.close()
            raise

    def _listen(self, bind: str, port: int, kind: socket.SocketKind) -> None:
        sock = socket.socket(_family(bind), kind)
        self.sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, kind)

    def handle(self, sock: socket.socket, kind: socket.SocketKind) -> None:
        try:
            if kind == socket.SOCK_STREAM:
                conn, client = sock.accept()
                with conn:
                    conn.settimeout(1.0)
                    conn.sendall(reply_line(self.name, client))
            else:
                _, client = sock.recvfrom(65535)
                sock.sendto(reply_line(self.name, client), client)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # a client gone away must not stop the server
            print(f"echo {self.name}: {exc}", file=sys.stderr, flush=True)

    def serve_forever(self) -> None:
        while True:
            for key, _ in self.selector.select():
                self.handle(key.fileobj, key.data)  # type: ignore[arg-type]

    def close(self) -> None:
        self.selector.close()
        for sock in self.sockets:
            sock.close()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(name: str, ports: Sequence[int], bind: str = "0.0.0.0") -> None:
    """Serve until SIGTERM/SIGINT; prints ``ready`` once every socket is bound."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    server = EchoServer(name, ports, bind)
    try:
        print("ready", flush=True)
        server.serve_forever()
    finally:
        server.close()


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clew.lab.echo", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="answer on TCP and UDP with NAME CLIENT_IP:CLIENT_PORT")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, action="append", required=True)
    s.add_argument("--bind", default="0.0.0.0")
    p = sub.add_parser("probe", help="N attempts, one JSON document")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--src", default=None)
    p.add_argument("--sport", type=int, default=0, help="fixed source port (0: any)")
    b = sub.add_parser("batch", help="probes read as JSON lines from stdin; one JSON list of results")
    b.add_argument("--timeout", type=float, default=1.0)
    w = sub.add_parser("sweep", help="probe several IP:PORT targets from here; one JSON list")
    w.add_argument("--target", action="append", required=True, help="IP:PORT, repeatable")
    w.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    w.add_argument("--count", type=int, default=1)
    w.add_argument("--timeout", type=float, default=1.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        serve(args.name, args.port, args.bind)
        return 0
    if args.command == "batch":
        print(json.dumps(batch(sys.stdin, args.timeout)), flush=True)
        return 0
    if args.command == "sweep":
        results = []
        for target in args.target:
            host, _, port = target.rpartition(":")
            res = probe(host, int(port), args.proto, args.count, args.timeout, None)
            results.append({"target": target, **res.to_json()})
        print(json.dumps(results), flush=True)
        return 0
    result = probe(args.dst, args.port, args.proto, args.count, args.timeout, args.src, args.sport)
    print(json.dumps(result.to_json()), flush=True)
    return 0 if result.all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
