"""Does a full sync lose another program's concurrent write? ``python -m clew.bench.writer``.

In a throwaway namespace holding N Services × 3 endpoints, a writer thread plays Docker or a CNI
portmap: it adds and deletes rules of its own (``-s 10.123.x.y``) in filter and nat — in INPUT,
PREROUTING, OUTPUT and in a chain of its own, ``WRITER`` — as fast as iptables lets it, while the
sync engine runs ``syncs`` full syncs. At the end, the writer's rules in the kernel must be
exactly those it added and did not delete: ``lost`` (added, gone) and ``resurrected`` (deleted,
back) must be 0.

Modes: ``periodic`` — the hourly full sync (nothing of clew's changed since the last sync; the
engine checks and writes nothing); ``replace`` — a full sync known to differ (``request_full``:
the guard found tampering, a sync failed), which replaces filter and nat whole and can lose
writes inside its window; the generation fence counts others' commits there
(``foreign_commits``), so every loss is at least reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field

from clew.bench.synthetic import objects
from clew.kernel import iptables, netns
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.sync import ProxySyncer

CONFIG = ProxyConfig(
    node_name="node-0",
    node_ips=("192.168.50.2",),
    detect_local=DetectLocal.CLUSTER_CIDR,
    cluster_cidrs=("10.244.0.0/16",),
)
MARK = "10.123."
WRITER_CHAIN = "WRITER"
PLACES = (("filter", "INPUT"), ("filter", "OUTPUT"), ("filter", WRITER_CHAIN),
          ("nat", "PREROUTING"), ("nat", "OUTPUT"), ("nat", WRITER_CHAIN))  # fmt: skip
TARGET = {"filter": "ACCEPT", "nat": "RETURN"}


@dataclass
class Writer:
    """Adds and deletes its own rules until stopped; knows which of them must be there."""

    ns: str
    pause: float = 0.0  # seconds between two of its commands
    seed: int = 1
    present: set[tuple[str, str, str]] = field(default_factory=set)  # (table, chain, source ip)
    adds: int = 0
    deletes: int = 0
    failed_deletes: int = 0  # its rule was already gone: lost earlier
    stop: threading.Event = field(default_factory=threading.Event)

    def setup(self) -> None:
        for table, builtin in (("filter", "INPUT"), ("nat", "PREROUTING")):
            iptables.iptables(self.ns, ["-t", table, "-N", WRITER_CHAIN])
            iptables.iptables(self.ns, ["-t", table, "-A", builtin, "-j", WRITER_CHAIN])

    def run(self) -> None:
        rng = random.Random(self.seed)
        n = 0
        while not self.stop.wait(self.pause):
            if self.present and rng.random() < 0.45:
                table, chain, ip = rng.choice(sorted(self.present))
                self.present.discard((table, chain, ip))
                done = iptables.iptables(
                    self.ns, ["-t", table, "-D", chain, "-s", ip, "-j", TARGET[table]], check=False
                )
                self.deletes += 1
                self.failed_deletes += done.returncode != 0
            else:
                n += 1
                table, chain = rng.choice(PLACES)
                ip = f"{MARK}{n // 250 % 250}.{n % 250 + 1}"
                iptables.iptables(self.ns, ["-t", table, "-A", chain, "-s", ip, "-j", TARGET[table]])
                self.present.add((table, chain, ip))
                self.adds += 1

    def found(self) -> set[tuple[str, str, str]]:
        """The writer's rules in the kernel now (and whether its chain survived)."""
        out = set()
        for table in ("filter", "nat"):
            for line in iptables.save(self.ns, table).splitlines():
                words = line.split()
                if words[:1] == ["-A"] and len(words) > 3 and words[2] == "-s" and words[3].startswith(MARK):
                    out.add((table, words[1], words[3].removesuffix("/32")))
        return out


@dataclass(frozen=True)
class WriterBench:
    services: int
    mode: str
    syncs: int
    pause_s: float
    sync_s: list[float]
    full: int  # syncs that were full ones (a periodic one whose check could not read is put off)
    wrote: int  # syncs that wrote the tables
    foreign_commits: int  # others' commits counted inside replace windows
    adds: int
    deletes: int
    failed_deletes: int
    lost: int
    resurrected: int
    writer_chains_left: bool


def run(services: int, syncs: int, mode: str, ns: str | None = None, pause: float = 0.0) -> WriterBench:
    ns = ns or f"clew-bwriter-{os.getpid()}"
    snapshot = build_snapshot(objects(services))
    netns.create(ns)
    try:
        syncer = ProxySyncer(ns, CONFIG, full_sync_period=0.0 if mode == "periodic" else 3600.0)
        first = syncer.sync(snapshot)
        if not first.ok:
            raise RuntimeError(f"first sync failed: {first.error}")
        writer = Writer(ns, pause)
        writer.setup()
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        times, full, wrote, foreign = [], 0, 0, 0
        try:
            while writer.adds < 20:  # the writer is under way before the first sync
                time.sleep(0.01)
            for _ in range(syncs):
                if mode == "replace":
                    syncer.request_full()
                result = syncer.sync(snapshot)
                if not result.ok:
                    raise RuntimeError(f"full sync failed: {result.error}")
                times.append(round(result.seconds, 3))
                full += result.full
                wrote += result.wrote
                foreign += result.foreign_commits
        finally:
            writer.stop.set()
            thread.join()
        found = writer.found()
        chains = iptables.list_chains(ns)
        return WriterBench(
            services, mode, syncs, pause, times, full, wrote, foreign,
            writer.adds, writer.deletes, writer.failed_deletes,
            lost=len(writer.present - found), resurrected=len(found - writer.present),
            writer_chains_left=all(WRITER_CHAIN in chains[t] for t in ("filter", "nat")),
        )  # fmt: skip
    finally:
        netns.delete(ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--syncs", type=int, default=20)
    parser.add_argument("--mode", choices=("periodic", "replace"), default="periodic")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between two writer commands")
    args = parser.parse_args()
    print(json.dumps(asdict(run(args.services, args.syncs, args.mode, pause=args.pause))))


if __name__ == "__main__":
    main()
