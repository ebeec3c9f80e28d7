"""``clew bench dataplane``: what a new connection pays for the Service rules, per mode and size.

Three throwaway namespaces, a pod-like client, a node and the endpoints::

    client 10.244.200.2 ──veth── node (the rules, forwarding) ──veth── endpoints (10.244.0.0/17 local)

The node holds N Services × 3 endpoints (`synthetic.objects`), loaded in one go: iptables mode
with the iptables renderer's payload through ``iptables-restore``, nftables mode with the
nftables renderer's script through ``nft -f``. The endpoint namespace routes the whole synthetic
pod range to ``lo`` and one listener on 0.0.0.0:8080 answers every endpoint. The client is in
the cluster CIDR (no masquerade), like a pod on another node.

Timed (``connect.py``): ``connect()`` of a TCP socket until established, ``connects`` times per
target, interleaved — to the FIRST Service in the renderer's order (first in iptables'
KUBE-SERVICES), to the LAST one, and straight to a pod IP (the last Service's first endpoint).
The straight connection still crosses the node's rules (in iptables mode it walks all of
KUBE-SERVICES without a match); ``no_rules`` is the same straight connection timed before any
rule is loaded: the path's floor.

Targets (issue 8): nftables mode's last Service within 10% of its first and within 15% of the
straight connection at 10k Services; iptables mode grows linearly with the Services.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from clew.bench.sync import CONFIG
from clew.bench.synthetic import objects
from clew.kernel import iptables, netns
from clew.model.from_kube import build_snapshot
from clew.proxy.policy import PortPolicy, decide

MODES = ("iptables", "nftables")
PORT = 8080
CLIENT_IP, NODE_C, NODE_E, ENDPOINTS_GW = "10.244.200.2", "10.244.200.1", "10.244.201.1", "10.244.201.2"
POD_RANGE = "10.244.0.0/17"  # synthetic endpoints: 10.244.0.10 onwards, 3 a Service (≤ ~10.8k Services)
MAX_SERVICES = (32768 - 10) // 3 - 1
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    """One target's connect() times, in µs."""

    target: str
    address: str
    service: str  # ns/name, or "" for a pod IP
    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    min_us: float


@dataclass(frozen=True)
class DataplaneBench:
    mode: str
    services: int
    connects: int
    load_s: float  # loading the N Services' rules into the empty node namespace
    first: Timing
    last: Timing
    direct: Timing
    no_rules: Timing
    last_vs_first: float  # p50 over p50
    last_vs_direct: float
    first_vs_direct: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def check_args(modes: list[str], services: list[int], connects: int) -> None:
    """ValueError naming the bad option (the CLI turns it into one line)."""
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    for n in services:
        if not 1 <= n <= MAX_SERVICES:
            raise ValueError(f"--services {n}: expected 1…{MAX_SERVICES} (the synthetic pods must fit {POD_RANGE})")
    if connects < 1:
        raise ValueError(f"--connects {connects}: expected at least 1")


def _topology(client: str, node: str, endpoints: str) -> None:
    for ns in (client, node, endpoints):
        netns.create(ns)
    netns.run_batch(node, ["link set lo up",
                           f"link add n-c type veth peer name c0 netns {client}",
                           f"link add n-e type veth peer name e0 netns {endpoints}",
                           f"addr add {NODE_C}/24 dev n-c", f"addr add {NODE_E}/24 dev n-e",
                           "link set n-c up", "link set n-e up"])  # fmt: skip
    netns.run_batch(node, [f"route add {POD_RANGE} via {ENDPOINTS_GW} dev n-e"])
    netns.set_sysctl(node, "net.ipv4.ip_forward", 1)
    netns.run_batch(client, ["link set lo up", f"addr add {CLIENT_IP}/24 dev c0", "link set c0 up",
                             f"route add default via {NODE_C} dev c0"])  # fmt: skip
    netns.run_batch(endpoints, ["link set lo up", f"addr add {ENDPOINTS_GW}/24 dev e0", "link set e0 up",
                                f"route add local {POD_RANGE} dev lo",
                                f"route add default via {NODE_E} dev e0"])  # fmt: skip


def _start_server(ns: str, deadline_s: float = 10.0) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "clew.bench.connect", "serve", "--port", str(PORT)]
    proc = netns.spawn(ns, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(deadline_s) or not proc.stdout.readline().startswith(b"ready"):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"connect server in {ns} did not start")
    return proc


def _time(client: str, targets: dict[str, str], connects: int) -> dict[str, dict[str, float]]:
    argv = [sys.executable, "-m", "clew.bench.connect", "time", "--count", str(connects)]
    for name, address in targets.items():
        argv += ["--target", f"{name}={address}"]
    out = netns.run(client, argv, timeout=60 + connects * len(targets) * 0.05).stdout
    result: dict[str, dict[str, float]] = json.loads(out)
    return result


def load_iptables(node: str, policies: list[PortPolicy]) -> None:
    from clew.proxy.iptables.full import compose
    from clew.proxy.iptables.render import render

    # filter and nat whole, with the jumps from the built-in chains (what a full sync writes)
    iptables.restore(node, compose({}, render(policies, CONFIG)), noflush=False, counters=True)


def load_nftables(node: str, policies: list[PortPolicy]) -> None:
    from clew.proxy.nftables.render import render, script

    netns.run(node, ["nft", "-f", "-"], input=script(render(policies, CONFIG)), timeout=600)


LOADERS: dict[str, Callable[[str, list[PortPolicy]], None]] = {"iptables": load_iptables, "nftables": load_nftables}


def _timing(name: str, address: str, service: str, stats: dict[str, float]) -> Timing:
    return Timing(name, address, service, int(stats["count"]), stats["p50_us"], stats["p90_us"], stats["p99_us"],
                  stats["mean_us"], stats["min_us"])  # fmt: skip


def run(
    mode: str, services: int, connects: int = 2000, *, progress: Progress | None = None, prefix: str = "clew-bdp"
) -> DataplaneBench:
    """One mode at one size, in namespaces ``<prefix>-<pid>-{c,n,e}`` (deleted, also on failure)."""
    check_args([mode], [services], connects)
    step = progress or (lambda what: None)
    policies = decide(build_snapshot(objects(services)), CONFIG)
    first, last = policies[0], policies[-1]
    pod = last.endpoints[0]
    direct_address = f"{pod.ip}:{pod.port}"
    base = f"{prefix}-{os.getpid()}"
    client, node, endpoints = f"{base}-c", f"{base}-n", f"{base}-e"
    server: subprocess.Popen[bytes] | None = None
    try:
        step("namespaces: client → node → endpoints")
        _topology(client, node, endpoints)
        server = _start_server(endpoints)
        step(f"{connects} connects straight to a pod, no rules yet")
        bare = _time(client, {"direct": direct_address}, connects)["direct"]
        step(f"loading {services} Services in {mode} mode")
        start = time.perf_counter()
        LOADERS[mode](node, policies)
        load_s = time.perf_counter() - start
        targets = {"first": f"{first.cluster_ip}:{first.port}", "last": f"{last.cluster_ip}:{last.port}",
                   "direct": direct_address}  # fmt: skip
        step(f"{connects} connects to each of the first and last Service and a pod, interleaved")
        timed = _time(client, targets, connects)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for ns in (client, node, endpoints):
            netns.delete(ns)
    t_first = _timing("first", targets["first"], first.service_key, timed["first"])
    t_last = _timing("last", targets["last"], last.service_key, timed["last"])
    t_direct = _timing("direct", direct_address, "", timed["direct"])
    return DataplaneBench(
        mode=mode,
        services=services,
        connects=connects,
        load_s=round(load_s, 3),
        first=t_first,
        last=t_last,
        direct=t_direct,
        no_rules=_timing("no_rules", direct_address, "", bare),
        last_vs_first=round(t_last.p50_us / t_first.p50_us, 3),
        last_vs_direct=round(t_last.p50_us / t_direct.p50_us, 3),
        first_vs_direct=round(t_first.p50_us / t_direct.p50_us, 3),
    )


def from_json(doc: dict[str, object]) -> DataplaneBench:
    """The inverse of `DataplaneBench.to_json` (for results that crossed a process boundary)."""
    fields = dict(doc)
    for key in ("first", "last", "direct", "no_rules"):
        fields[key] = Timing(**fields[key])  # type: ignore[arg-type]
    return DataplaneBench(**fields)  # type: ignore[arg-type]


def meets(r: DataplaneBench) -> bool | None:
    """Issue 8's target for nftables mode (None for iptables mode: no target, it shows growth)."""
    if r.mode != "nftables":
        return None
    return r.last_vs_first <= 1.10 and r.last_vs_direct <= 1.15
