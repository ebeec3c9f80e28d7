"""A tiny TCP throughput and latency meter (stdlib only), run inside network namespaces.

``python -m clew.bench.netperf [--cpu N] serve --port P`` accepts one connection at a time and prints
``ready`` once listening. The client's first byte picks the test:

* ``S`` (stream): the server reads until EOF into one buffer and answers with one JSON line,
  ``{"bytes": N, "seconds": S}`` (first byte to EOF, as the receiver saw it).
* ``R`` (round trips): the server echoes every byte it reads until EOF.

``python -m clew.bench.netperf stream --dst IP --port P [--seconds 2]`` sends 1 MiB writes for
that long on one connection and prints ``{"bytes", "seconds", "gbit_s"}``: the bytes the
receiver counted over the time from the first send to the receiver's answer (so data still
in flight when the clock stops is not counted as sent faster than it arrived).

``python -m clew.bench.netperf rtt --dst IP --port P [--count 2000]`` sends 1 byte and waits
for it back, ``count`` times on one connection with ``TCP_NODELAY`` (after 100 unmeasured
warm-up rounds), and prints ``{"count", "p50_us", "p99_us", "min_us", "max_us"}``.

``--cpu N`` pins the process to one CPU, so the scheduler cannot flip between same-CPU and
cross-CPU wake-ups from one run to the next (on a 2-CPU VM that alone moves the RTT p50
between ~10 and ~80 µs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

CHUNK = 1 << 20  # bytes per send and per receive
WARMUP = 100


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by nearest rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed early")
        data += chunk
    return data


def _serve_stream(conn: socket.socket) -> None:
    buf = bytearray(CHUNK)
    total, first = 0, 0.0
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        if not total:
            first = time.perf_counter()
        total += n
    seconds = time.perf_counter() - first if total else 0.0
    conn.sendall((json.dumps({"bytes": total, "seconds": seconds}) + "\n").encode())


def _serve_rtt(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(64)
        if not data:
            return
        conn.sendall(data)


def serve(port: int, bind: str = "0.0.0.0") -> None:
    """Serve one connection at a time until SIGTERM; prints ``ready`` once listening."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((bind, port))
        listener.listen(8)
        print("ready", flush=True)
        while True:
            conn, _ = listener.accept()
            with conn:
                try:
                    mode = _recv_exact(conn, 1)
                    if mode == b"S":
                        _serve_stream(conn)
                    elif mode == b"R":
                        _serve_rtt(conn)
                except OSError as exc:  # a client gone away must not stop the server
                    print(f"netperf: {exc}", file=sys.stderr, flush=True)


def _connect(dst: str, port: int, mode: bytes, timeout: float) -> socket.socket:
    sock = socket.create_connection((dst, port), timeout=timeout)
    sock.sendall(mode)
    return sock


def stream(dst: str, port: int, seconds: float = 2.0, timeout: float = 10.0) -> dict[str, float]:
    """One TCP stream of 1 MiB writes for ``seconds``; what the receiver counted."""
    payload = bytes(CHUNK)
    with _connect(dst, port, b"S", timeout) as sock:
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            line += chunk
        elapsed = time.perf_counter() - start
    answer = json.loads(line)
    received = int(answer["bytes"])
    return {"bytes": received, "seconds": elapsed, "gbit_s": received * 8 / elapsed / 1e9}


def rtt(dst: str, port: int, count: int = 2000, timeout: float = 10.0) -> dict[str, float]:
    """``count`` 1-byte request/response round trips on one connection, in microseconds."""
    samples: list[float] = []
    with _connect(dst, port, b"R", timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(WARMUP + count):
            t0 = time.perf_counter()
            sock.sendall(b"x")
            _recv_exact(sock, 1)
            if i >= WARMUP:
                samples.append((time.perf_counter() - t0) * 1e6)
    return {
        "count": count,
        "p50_us": quantile(samples, 0.50),
        "p99_us": quantile(samples, 0.99),
        "min_us": min(samples),
        "max_us": max(samples),
    }


def pin(cpu: int | None) -> None:
    """Run this process on ``cpu`` only (None: wherever the scheduler likes)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clew.bench.netperf", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="answer stream and round-trip tests, one connection at a time")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bind", default="0.0.0.0")
    t = sub.add_parser("stream", help="throughput of one TCP stream")
    t.add_argument("--dst", required=True)
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--seconds", type=float, default=2.0)
    r = sub.add_parser("rtt", help="1-byte request/response round trips")
    r.add_argument("--dst", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, default=2000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    pin(args.cpu)
    if args.command == "serve":
        serve(args.port, args.bind)
        return 0
    if args.command == "stream":
        result = stream(args.dst, args.port, args.seconds)
    else:
        result = rtt(args.dst, args.port, args.count)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
