"""A new-connection timer (stdlib only), run inside network namespaces by ``clew bench dataplane``.

``python -m clew.bench.connect serve --port P`` accepts connections and closes them at once,
until SIGTERM; prints ``ready`` once listening (the listener binds 0.0.0.0, so it answers every
address the namespace treats as local — the bench routes whole pod ranges to ``lo``).

``python -m clew.bench.connect time --target NAME=IP:PORT … --count N`` times ``connect()`` of
a blocking TCP socket (SYN sent → SYN-ACK received: the handshake through the node's rules,
which a new connection's first packet walks), N times per target, the targets interleaved round
robin so that drift on a shared machine hits all alike, after ``--warmup`` unmeasured rounds.
Each socket closes with a reset (``SO_LINGER`` 0): no TIME_WAIT piles up. Prints one JSON
object: per target ``{"count", "p50_us", "p90_us", "p99_us", "mean_us", "min_us"}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from types import FrameType

from clew.bench.netperf import quantile

LINGER_RESET = struct.pack("ii", 1, 0)


def serve(port: int, backlog: int = 4096) -> None:
    """Accept and close until SIGTERM; prints ``ready`` once listening."""

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", port))
    lsock.listen(backlog)
    print("ready", flush=True)
    while True:
        conn, _ = lsock.accept()
        conn.close()


def parse_target(text: str) -> tuple[str, str, int]:
    """``NAME=IP:PORT`` → (name, ip, port); ValueError naming the text otherwise."""
    name, eq, rest = text.partition("=")
    ip, colon, port = rest.rpartition(":")
    if not (eq and colon and name and ip and port.isdigit()):
        raise ValueError(f"target {text!r}: expected NAME=IP:PORT")
    return name, ip, int(port)


def _connect_once(ip: str, port: int, timeout: float) -> float:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.settimeout(timeout)
        start = time.perf_counter_ns()
        sock.connect((ip, port))
        return (time.perf_counter_ns() - start) / 1000.0
    finally:
        sock.close()


def summary(samples_us: Sequence[float]) -> dict[str, float]:
    return {
        "count": len(samples_us),
        "p50_us": round(quantile(samples_us, 0.5), 1),
        "p90_us": round(quantile(samples_us, 0.9), 1),
        "p99_us": round(quantile(samples_us, 0.99), 1),
        "mean_us": round(statistics.fmean(samples_us), 1),
        "min_us": round(min(samples_us), 1),
    }


def time_targets(
    targets: Sequence[tuple[str, str, int]], count: int, warmup: int = 100, timeout: float = 5.0
) -> dict[str, dict[str, float]]:
    """Interleaved connect() timings per target name (see the module docstring)."""
    samples: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    for i in range(warmup + count):
        for name, ip, port in targets:
            took = _connect_once(ip, port, timeout)
            if i >= warmup:
                samples[name].append(took)
    return {name: summary(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="clew.bench.connect")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    t = sub.add_parser("time")
    t.add_argument("--target", action="append", required=True)
    t.add_argument("--count", type=int, default=2000)
    t.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port)
        return
    try:
        targets = [parse_target(x) for x in args.target]
    except ValueError as e:
        parser.error(str(e))
    try:
        result = time_targets(targets, args.count, args.warmup)
    except OSError as e:
        print(f"connect: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
