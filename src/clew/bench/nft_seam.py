"""How to reach nftables: a long-lived libnftables context (`NodeNft`'s worker) against
``nft -f -`` per transaction, on the shape of clew's nftables layout. Not a test: it decides
the mechanism (see the design notes) and is kept to re-measure it.

``python -m clew.bench.nft_seam --services 10000 --services 100000``

For each size N, in a fresh throwaway namespace per mechanism: a table with a few chains and
rules, a typeof data map ``dst-tcp-3`` (3N elements: Service IP . port . slot → endpoint) and a
set ``cluster-masq`` (N elements), loaded as ONE transaction (``load_s``); then ``changes``
one-Service changes, each deleting a Service's 3 map elements and adding 3 with new endpoints
in one transaction (``change_p50_s``/``change_p99_s``/``change_max_s``). One JSON line per
(N, mechanism).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from collections.abc import Iterator, Sequence

from clew.kernel import netns
from clew.kernel.nftables import NodeNft

CHUNK = 1000  # elements per ``add element`` line in the full load


def _ip(base: str, i: int) -> str:
    return f"{base}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _svc(i: int) -> str:
    return _ip("10", (96 << 16) | i)  # 10.96.0.0/12 holds 1M


def _ep(i: int, slot: int, gen: int) -> str:
    return _ip("10", (160 << 16) + (i * 3 + slot + gen * 7) % (1 << 20))


def _map_element(i: int, slot: int, gen: int) -> str:
    return f'{_svc(i)} . 80 . {slot} comment "ns{i % 100}/svc{i}:http" : {_ep(i, slot, gen)} . 8080'


def load_script(n: int) -> str:
    """The full load: fixed part plus 3n map elements and n set elements, one transaction."""
    head = [
        'add table ip clew { comment "clew bench" ; }',
        "add chain ip clew nat-prerouting { type nat hook prerouting priority -100 ; }",
        "add chain ip clew nat-output { type nat hook output priority -100 ; }",
        "add chain ip clew services",
        "add chain ip clew to-dst",
        "add set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; }",
        "add map ip clew dst-tcp-3 { typeof ip daddr . tcp dport . numgen random mod 3 : ip daddr . tcp dport ; }",
        "add rule ip clew nat-prerouting jump services",
        "add rule ip clew nat-output jump services",
        "add rule ip clew services ip daddr . meta l4proto . th dport @cluster-masq mark set mark or 0x4000",
        "add rule ip clew services jump to-dst",
        "add rule ip clew to-dst meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 3 map @dst-tcp-3",
    ]
    lines = list(head)
    elements = [_map_element(i, s, 0) for i in range(n) for s in range(3)]
    for k in range(0, len(elements), CHUNK):
        lines.append("add element ip clew dst-tcp-3 { " + ", ".join(elements[k : k + CHUNK]) + " }")
    masq = [f"{_svc(i)} . tcp . 80" for i in range(n)]
    for k in range(0, len(masq), CHUNK):
        lines.append("add element ip clew cluster-masq { " + ", ".join(masq[k : k + CHUNK]) + " }")
    return "\n".join(lines) + "\n"


def change_script(i: int, old_gen: int, new_gen: int) -> str:
    """One Service's endpoints replaced: delete its 3 elements, add 3 new, one transaction."""
    keys = ", ".join(f"{_svc(i)} . 80 . {s}" for s in range(3))
    new = ", ".join(_map_element(i, s, new_gen) for s in range(3))
    return f"delete element ip clew dst-tcp-3 {{ {keys} }}\nadd element ip clew dst-tcp-3 {{ {new} }}\n"


def _changes(n: int, count: int) -> Iterator[str]:
    gens: dict[int, int] = {}
    step = max(1, n // count)
    for k in range(count):
        i = (k * step * 7919) % n
        old = gens.get(i, 0)
        gens[i] = old + 1
        yield change_script(i, old, old + 1)


def _memory(pid: int | None) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of the worker in MB (None without a worker)."""
    if pid is None:
        return None, None
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(int(value.split()[0]) / 1024, 1)
    return found.get("VmRSS"), found.get("VmHWM")


def measure(n: int, *, cli: bool, changes: int, prefix: str) -> dict[str, object]:
    name = f"{prefix}-{secrets.token_hex(2)}"
    netns.create(name)
    try:
        kernel = NodeNft(name, timeout=1800.0, cli=cli)
        try:
            script = load_script(n)
            t = time.perf_counter()
            kernel.run(script)
            load_s = time.perf_counter() - t
            after_load = _memory(kernel.worker_pid)
            times = []
            for text in _changes(n, changes):
                t = time.perf_counter()
                kernel.run(text)
                times.append(time.perf_counter() - t)
            times.sort()
            return {
                "services": n,
                "elements": 4 * n,
                "mechanism": kernel.mechanism,
                "script_mb": round(len(script) / 1e6, 1),
                "load_s": round(load_s, 3),
                "changes": len(times),
                "change_p50_s": round(statistics.median(times), 5),
                "change_p99_s": round(times[min(len(times) - 1, int(len(times) * 0.99))], 5),
                "change_max_s": round(times[-1], 5),
                "worker_rss_after_load_mb": after_load[0],
                "worker_peak_rss_mb": _memory(kernel.worker_pid)[1],
            }
        finally:
            kernel.close()
    finally:
        netns.delete(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clew.bench.nft_seam", description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, action="append", help="Service count (repeatable; default 10000)")
    parser.add_argument("--changes", type=int, default=200, help="one-Service changes per run (default 200)")
    parser.add_argument("--cli-changes", type=int, default=50, help="changes for nft -f - (slower; default 50)")
    parser.add_argument("--netns-prefix", default="clew-bench-nft", help="prefix of the throwaway namespaces")
    parser.add_argument("--only", choices=("worker", "nft-cli"), help="one mechanism only")
    args = parser.parse_args(argv)
    for n in args.services or [10000]:
        for cli in (False, True):
            if args.only and args.only != ("nft-cli" if cli else "worker"):
                continue
            row = measure(n, cli=cli, changes=args.cli_changes if cli else args.changes, prefix=args.netns_prefix)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
