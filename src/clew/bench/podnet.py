"""``clew bench podnet``: pod-to-pod TCP throughput and round-trip latency over host-gw, vxlan and
bgp, beside plain routing between two namespaces, all measured in one run.

Three paths are built side by side before anything is measured:

* **plain**: two namespaces joined by one veth pair, each with an address on its loopback and a
  static route to the other's through the pair. Routing with no bridge, no pod veth and no
  overlay: the floor the pod network is measured against.
* **host-gw** and **vxlan**: a 2-node lab each (:mod:`clew.lab`: l2 underlay, real agents), one
  pod per node made by clew-cni; the pod on node-1 talks to the pod on node-2 (pod veth, cni0,
  node routing, the underlay, and for vxlan the ``flannel.1`` encapsulation).
* **bgp**: a 2-node lab on the *routed* underlay (each node on its own segment behind the
  router namespace, which runs BIRD as the nodes' route reflector) — where bgp is used and
  host-gw can't go. The path is host-gw's plus one routed hop through the router; the routes
  are BIRD's (``proto bird``), no encapsulation. Measured only when ``bird`` is installed.

In each path a :mod:`clew.bench.netperf` server runs in the receiving namespace and the clients
in the sending one: one TCP stream of 1 MiB writes for ``seconds``, then ``pings`` 1-byte
request/response round trips on one connection. Paths take turns within each round (plain,
host-gw, vxlan, plain, …) so machine noise hits them alike; each figure is the median over
rounds. By default client and server share one CPU (``pin="same"``, see :func:`_pinning`):
the figures are then what each path costs the CPU, which is what differs between them. Every
namespace is named after the run (``b<4 hex>…``) and removed afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from clew.kernel import netns
from clew.lab import bgp, build, controlplane
from clew.lab.plan import LabConfig
from clew.lab.state import LabState, state_dir
from clew.lab.teardown import down

PORT = 5201
BACKENDS = ("host-gw", "vxlan", "bgp")
PINS = ("same", "split", "off")
PLAIN_A, PLAIN_B = "10.77.1.1", "10.77.2.1"  # loopback addresses, routed over 192.168.77.0/30


@dataclass(frozen=True)
class BenchPath:
    """One measured path: where the server and the client run, and between which addresses."""

    name: str
    description: str
    client_ns: str
    server_ns: str
    server_ip: str
    mtu: int


@dataclass
class PathResult:
    path: str
    description: str
    mtu: int
    gbit_s: float = 0.0
    rtt_p50_us: float = 0.0
    rtt_p99_us: float = 0.0
    vs_plain: float = 0.0  # throughput / plain's
    rounds: list[dict[str, float]] = field(default_factory=list)


@dataclass
class PodnetBench:
    seconds: float
    pings: int
    rounds: int
    pin: str  # same | split | off
    placement: str  # where the client and the server ran, in words
    results: list[PathResult]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _mtu(ns: str, dev: str) -> int:
    mtu: int = json.loads(netns.run(ns, ["ip", "-j", "link", "show", dev]).stdout)[0]["mtu"]
    return mtu


def _plain(base: str) -> BenchPath:
    a, b = f"{base}-plain-a", f"{base}-plain-b"
    netns.create(a)
    netns.create(b)
    netns.run_batch(a, ["link set lo up", f"addr add {PLAIN_A}/32 dev lo",
                        f"link add veth-ab type veth peer name veth-ba netns {b}",
                        "addr add 192.168.77.1/30 dev veth-ab", "link set veth-ab up"])  # fmt: skip
    netns.run_batch(b, ["link set lo up", f"addr add {PLAIN_B}/32 dev lo",
                        "addr add 192.168.77.2/30 dev veth-ba", "link set veth-ba up"])  # fmt: skip
    netns.run_batch(a, [f"route add 10.77.2.0/24 via 192.168.77.2 dev veth-ab src {PLAIN_A}"])
    netns.run_batch(b, [f"route add 10.77.1.0/24 via 192.168.77.1 dev veth-ba src {PLAIN_B}"])
    return BenchPath("plain", "plain routing, one veth pair", a, b, PLAIN_B, _mtu(a, "veth-ab"))


def backends() -> tuple[str, ...]:
    """The lab paths this machine can build: bgp needs BIRD (Debian ``bird2``)."""
    return tuple(b for b in BACKENDS if b != "bgp" or shutil.which("bird") is not None)


def _lab_path(name: str, backend: str) -> BenchPath:
    underlay = "routed" if backend == "bgp" else "l2"
    state = LabState(LabConfig(name=name, nodes=2, underlay=underlay, backend=backend, per_segment=1))
    root = state_dir(name)
    build.up(state, root)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "perf", "namespace": "bench"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "perf"}}}},
    }
    controlplane.apply(state, root, [deployment])
    build.wait_synced(state, root)
    if backend == "bgp":
        bgp.wait_routes(state.plan)
    client, server = state.pods["perf-0"], state.pods["perf-1"]
    if client.node == server.node:
        raise RuntimeError(f"lab {name}: both pods landed on {client.node}")
    via = " via the router" if underlay == "routed" else ""
    what = f"pod on {client.node} → pod on {server.node}{via}"
    return BenchPath(backend, what, client.netns, server.netns, server.ip, _mtu(client.netns, "eth0"))


def _pinning(pin: str) -> tuple[list[str], list[str], str]:
    """netperf arguments for the client and the server, and the placement in words.

    ``same``: both on the last CPU this process may use, so a figure is the CPU cost of the
    path, free of cross-CPU wake-ups (on a VM those add tens of µs at random). ``split``: the
    client on the first CPU, the server on the last, like two nodes. ``off``: the scheduler's.
    """
    if pin not in PINS:
        raise ValueError(f"pin: {pin!r} is not one of {', '.join(PINS)}")
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "off" or (pin == "split" and len(cpus) < 2):
        return [], [], f"client and server unpinned, {len(cpus)} CPUs"
    client = cpus[-1] if pin == "same" else cpus[0]
    where = f"client and server on CPU {client}" if pin == "same" else f"client on CPU {client}, server on {cpus[-1]}"
    return ["--cpu", str(client)], ["--cpu", str(cpus[-1])], where


def _start_server(path: BenchPath, pin: list[str], deadline_s: float = 10.0) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "clew.bench.netperf", *pin, "serve", "--port", str(PORT)]
    proc = netns.spawn(path.server_ns, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(deadline_s) or not proc.stdout.readline().startswith(b"ready"):
            proc.kill()
            raise RuntimeError(f"netperf server in {path.server_ns} did not start")
    return proc


def _client(path: BenchPath, pin: list[str], *args: str, timeout: float) -> dict[str, float]:
    argv = [sys.executable, "-m", "clew.bench.netperf", *pin, *args]
    argv += ["--dst", path.server_ip, "--port", str(PORT)]
    result: dict[str, float] = json.loads(netns.run(path.client_ns, argv, timeout=timeout).stdout)
    return result


def _measure(path: BenchPath, pin: list[str], seconds: float, pings: int) -> dict[str, float]:
    st = _client(path, pin, "stream", "--seconds", str(seconds), timeout=seconds + 30)
    rt = _client(path, pin, "rtt", "--count", str(pings), timeout=60)
    return {"gbit_s": st["gbit_s"], "rtt_p50_us": rt["p50_us"], "rtt_p99_us": rt["p99_us"]}


def _summarise(path: BenchPath, rounds: list[dict[str, float]]) -> PathResult:
    return PathResult(
        path.name,
        path.description,
        path.mtu,
        gbit_s=round(statistics.median(r["gbit_s"] for r in rounds), 3),
        rtt_p50_us=round(statistics.median(r["rtt_p50_us"] for r in rounds), 1),
        rtt_p99_us=round(statistics.median(r["rtt_p99_us"] for r in rounds), 1),
        rounds=rounds,
    )


def _free_base() -> str:
    for _ in range(100):
        base = f"b{secrets.token_hex(2)}"
        names = [base, *(base + b[0] for b in BACKENDS)]
        if not any(netns.list_names(n + "-") or state_dir(n).exists() for n in names):
            return base
    raise RuntimeError("no free b<4 hex> bench name")


def run(seconds: float = 2.0, pings: int = 2000, rounds: int = 1, pin: str = "same") -> PodnetBench:
    """Build the paths, measure them in turns for ``rounds`` rounds, remove everything."""
    client_pin, server_pin, placement = _pinning(pin)
    base = _free_base()
    labs = {backend: base + backend[0] for backend in backends()}  # b1a2bh, b1a2bv, b1a2bb
    servers: list[subprocess.Popen[bytes]] = []
    try:
        paths = [_plain(base), *(_lab_path(labs[b], b) for b in labs)]
        servers = [_start_server(p, server_pin) for p in paths]
        samples: dict[str, list[dict[str, float]]] = {p.name: [] for p in paths}
        for _ in range(rounds):
            for p in paths:
                samples[p.name].append(_measure(p, client_pin, seconds, pings))
        results = [_summarise(p, samples[p.name]) for p in paths]
    finally:
        for name in labs.values():
            down(name)
        for ns in netns.list_names(f"{base}-plain-"):
            netns.delete(ns)
        for proc in servers:
            proc.wait(timeout=10)
    plain = results[0].gbit_s
    for r in results:
        r.vs_plain = round(r.gbit_s / plain, 3) if plain else 0.0
    return PodnetBench(seconds, pings, rounds, pin, placement, results)
