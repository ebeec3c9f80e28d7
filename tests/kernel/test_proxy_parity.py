"""Parity: the same random packets through a cluster in iptables mode and one in nftables mode,
loaded from the same objects, end the same way.

Two two-node topologies, alike to the address (``pt-…`` namespaces): in one both nodes run
clew's iptables-mode rules, in the other its nftables-mode rules, each rendered for its node
from the same Services by the same policy module (``proxy_modes.load``). Echo servers answer in
pods a, b (node) and c, d (node2); ``cl`` (node) is a client that is no endpoint. The Services
cover multi-endpoint TCP and UDP, eTP and iTP Local (with and without a local endpoint),
ClientIP affinity, loadBalancerSourceRanges, externalIPs, LoadBalancer IPs and Services without
endpoints.

At least 300 random packets (seed ``CLEW_PARITY_SEED``, count ``CLEW_PARITY_PACKETS``): a random
Service port reached by a random way in (ClusterIP, NodePort on node or node2, externalIP,
LoadBalancer IP, and NodePort on node's cni0 address, outside nodePortAddresses in the second
configuration) from a random source (a pod on node or node2, a process on node, the outside
client ``ext`` from either of its addresses). Each is sent once, for real, through both
clusters. 127.0.0.1:NodePort is left out: localhost NodePorts are off in nftables mode by design
(kube-proxy's too; ``test_proxy_modes.test_localhost_nodeport`` holds both expectations).

An outcome is what the client saw (reply, refused, timeout, EPERM from sendmsg) plus what
conntrack on the nodes says about the flow (read once per round with ``conntrack -L``, looked up
by the client's own address and port): the endpoint it was DNATed to, whether it was tracked at
all (a DROP leaves no confirmed entry; a packet forwarded un-DNATed does), whether it was
source-NATed, and the source address the endpoint saw. The endpoint is random, so outcomes are
compared as *sets* per packet kind (source, bound address, protocol, destination): a kind whose
sets differ is sent again in both clusters (12, then 30 more times) until they agree; a
difference that survives is reported. With ClientIP affinity the endpoint is random but fixed
per client, so there stickiness (one endpoint per client), how it ended and the masquerade
decision where it does not hang on the endpoint are compared (`Outcome.masquerade_seen`).
ICMP error rate limiting is off on the nodes (``icmp_ratelimit=0``), so a REJECT is never
mistaken for a DROP.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest
from proxy_modes import MODES, Flow, conntrack_entries, load, with_mode
from service_set import NODE_IP, PORT, Svc, destinations, objects
from topology import EXT_IP, Topology, unique_prefix

from clew.lab.echo import Attempt, ProbeResult
from clew.model.proxy_config import DetectLocal, ProxyConfig

pytestmark = pytest.mark.kernel

PODS = {"node": ["a", "b", "cl"], "node2": ["c", "d"]}
ECHO_PODS = ("a", "b", "c", "d")
NODES = ("node", "node2")
EXT_IP2 = "192.168.50.101"  # ext's second address, outside every loadBalancerSourceRanges
SERVICE_RANGE = "10.96.0.0/12"

SEED_ENV, COUNT_ENV = "CLEW_PARITY_SEED", "CLEW_PARITY_PACKETS"
DEFAULT_SEED, DEFAULT_COUNT = 20261206, 300
PROBE_TIMEOUT_S = 0.5
TOP_UPS = (12, 30)  # extra attempts per kind whose outcome sets differ, round by round
WORKERS = 8
SOURCE_PORTS = itertools.count(10000)  # fixed source ports, one per attempt, below the ephemeral range (32768)
CHUNK = 8  # probes per process

SERVICES = (
    Svc("web", "10.96.2.10", (("TCP", 0), ("UDP", 0)), ("a", "b", "c")),
    Svc("wide", "10.96.2.11", (("TCP", 0),), ("a", "b", "c", "d")),
    Svc("pair", "10.96.2.12", (("TCP", 0), ("UDP", 0)), ("b", "d")),
    Svc("nodeport", "10.96.2.13", (("TCP", 30080), ("UDP", 30080)), ("a", "c"), type="NodePort"),
    Svc("local", "10.96.2.14", (("TCP", 30081), ("UDP", 30081)), ("b", "c"), type="NodePort", etp="Local"),
    Svc("remote-local", "10.96.2.15", (("TCP", 30082),), ("d",), type="NodePort", etp="Local"),
    Svc(
        "public",
        "10.96.2.16",
        (("TCP", 30083),),
        ("a", "c"),
        type="LoadBalancer",
        external_ips=("203.0.113.10", "203.0.113.11"),
        lb_ip="198.51.100.10",
    ),
    Svc(
        "firewalled",
        "10.96.2.17",
        (("TCP", 30084),),
        ("a", "d"),
        type="LoadBalancer",
        lb_ip="198.51.100.20",
        source_ranges=(f"{EXT_IP}/32",),
    ),
    Svc(  # a range holding a node's address: the LB IP itself is an allowed source too (kube-proxy)
        "fw-node",
        "10.96.2.24",
        (("TCP", 30088), ("UDP", 30088)),
        ("b", "c"),
        type="LoadBalancer",
        lb_ip="198.51.100.40",
        source_ranges=("192.168.50.2/32",),
    ),
    Svc("sticky", "10.96.2.18", (("TCP", 30085),), ("a", "b", "c"), type="NodePort", affinity=True),
    Svc("sticky-udp", "10.96.2.19", (("UDP", 0),), ("b", "c", "d"), affinity=True),
    Svc(
        "empty",
        "10.96.2.20",
        (("TCP", 30086), ("UDP", 30086)),
        (),
        type="NodePort",
        external_ips=("203.0.113.20",),
    ),
    Svc(
        "local-lb", "10.96.2.21", (("TCP", 30087),), ("b", "d"), type="LoadBalancer", etp="Local", lb_ip="198.51.100.30"
    ),
    Svc("itp-local", "10.96.2.22", (("TCP", 0), ("UDP", 0)), ("a", "c"), itp="Local"),
    Svc("itp-remote", "10.96.2.23", (("TCP", 0),), ("d",), itp="Local"),
)
AFFINITY = {s.name for s in SERVICES if s.affinity}
SERVICE_PODS = {s.name: s.pods for s in SERVICES}
NODE_POD_PREFIX = "10.244.1."  # node's pods


# Two node configurations: kube-proxy's usual, and one that changes what else the renderers read
# besides the Services — detector, nodePortAddresses, mark bit. Both masquerade fully random:
# plain masquerade keeps a client's port, so two flows from one port through two Service IPs to
# one endpoint reach it as the same 4-tuple, and the endpoint, still in TIME_WAIT from the first
# (it closes first), may take the second SYN for an old duplicate (its sequence number comes from
# another 4-tuple): a timeout by chance, in either mode. test_proxy_modes covers plain masquerade.
CONFIGS = {
    "cluster-cidr": {},
    "bridge-npa-bit5": {
        "detect_local": DetectLocal.BRIDGE_INTERFACE,
        "bridge_interface": "cni0",
        "nodeport_addresses": ("192.168.50.0/24",),
        "masquerade_bit": 5,
    },
}


def node_config(node: str, mode: str, variant: str = "cluster-cidr") -> ProxyConfig:
    base = ProxyConfig(
        node_name=node,
        node_ips=(NODE_IP[node],),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
    )
    return with_mode(replace(base, **CONFIGS[variant]), mode)


# ---------------------------------------------------------------------------- fixture


def build(mode: str, variant: str = "cluster-cidr") -> Topology:
    t = Topology(unique_prefix("pt"), PODS)
    try:
        for pod in ECHO_PODS:
            t.start_echo(pod, [PORT])
        t.run("ext", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])  # the nodes' "gateway" sends nothing back
        t.run("ext", ["ip", "addr", "add", f"{EXT_IP2}/24", "dev", "eth0"])
        t.add_route("ext", SERVICE_RANGE, via=NODE_IP["node"])  # ClusterIPs from outside, as a router would
        for node in NODES:
            # a real node's default route: un-DNATed Service traffic is forwarded and meets the filter rules
            t.add_route(node, "default", via=EXT_IP)
            t.run(node, ["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])  # every REJECT answered
            load(t, node, objects(SERVICES, t), node_config(node, mode, variant))
    except BaseException:
        t.close()
        raise
    return t


@pytest.fixture(params=list(CONFIGS))
def clusters(request: pytest.FixtureRequest) -> Iterator[dict[str, Topology]]:
    made: dict[str, Topology] = {}
    try:
        for mode in MODES:
            made[mode] = build(mode, str(request.param))
        yield made
    finally:
        for t in made.values():
            t.close()


# ---------------------------------------------------------------------------- drawing packets

KINDS = ("clusterip", "nodeport", "nodeport2", "nodeport-cni0", "externalip", "lb")
SOURCE_KINDS = ("pod@node", "pod@node2", "node", "ext")


@dataclass(frozen=True)
class Kind:
    """A packet up to its source port: what decides its outcome set."""

    source: str  # the role or pod the probe runs in
    bind: str | None  # the probe's --src (ext's addresses)
    proto: str
    dst: str
    dport: int
    service: str

    def label(self) -> str:
        who = f"{self.source}({self.bind})" if self.bind else self.source
        return f"{who} {self.proto} → {self.dst}:{self.dport} [{self.service}]"


def draw_packets(rng: random.Random, count: int) -> list[tuple[str, str, Kind]]:
    """(way in, source kind, packet kind) for ``count`` random packets."""
    out = []
    for _ in range(count):
        way = rng.choice(KINDS)
        svc = rng.choice([s for s in SERVICES if destinations(s, way)])
        proto, dst, dport = rng.choice(destinations(svc, way))
        source_kind = rng.choice(SOURCE_KINDS)
        bind = None
        if source_kind == "pod@node":
            source = rng.choice(PODS["node"])
        elif source_kind == "pod@node2":
            source = rng.choice(PODS["node2"])
        elif source_kind == "node":
            source = "node"
        else:
            source, bind = "ext", rng.choice((EXT_IP, EXT_IP2))
        out.append((way, source_kind, Kind(source, bind, proto, dst, dport, svc.name)))
    return out


# ---------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, order=True)
class Outcome:
    result: str  # reply | refused | timeout | unreachable | eperm | other
    endpoint: str | None  # IP:PORT it was DNATed to (conntrack), or the echo server that answered
    tracked: bool | None  # a confirmed conntrack entry exists on some node (None: no local port known)
    snat: bool  # the DNATing node's entry is source-NATed too
    seen: str | None  # the source address the endpoint saw

    def masquerade_seen(self, kind: Kind) -> bool | None:
        """Whether the source was NATed, where that does not depend on which endpoint was
        chosen: None when the client is itself an endpoint (hairpin or not is the endpoint's
        choice) and for the node's own connections to an endpoint on another node (masqueraded
        to the node's own address, if at all: no address changes either way)."""
        if kind.source in SERVICE_PODS[kind.service]:
            return None
        if kind.source == "node" and not (self.endpoint or "").startswith(NODE_POD_PREFIX):
            return None
        return self.snat

    def text(self) -> str:
        parts = [self.result]
        if self.endpoint:
            parts.append(f"→ {self.endpoint}")
        parts.append("tracked" if self.tracked else "untracked" if self.tracked is False else "?")
        if self.snat:
            parts.append("snat")
        if self.seen:
            parts.append(f"seen-as {self.seen}")
        return " ".join(parts)


def _result(attempt: Attempt) -> str:
    if attempt.ok:
        return "reply"
    error = attempt.error or "other"
    if error in ("refused", "timeout", "unreachable"):
        return error
    return "eperm" if "Operation not permitted" in error else "other"


FlowIndex = dict[tuple[str, str, int, str, int], list[Flow]]  # a client port reused later: both


def read_flows(topo: Topology, index: FlowIndex) -> None:
    """Add every node's conntrack entries to ``index``, by original (proto, src, sport, dst,
    dport). Read right after each round of packets: a UDP entry lives 30 s without traffic."""
    for node in NODES:
        for f in conntrack_entries(topo, node):
            found = index.setdefault((f.proto, f.src, f.sport, f.dst, f.dport), [])
            if f not in found:
                found.append(f)


def outcome(kind: Kind, attempt: Attempt, flows: FlowIndex, pod_ips: dict[str, str]) -> Outcome:
    seen = attempt.seen.rsplit(":", 1)[0] if attempt.seen else None
    endpoint = f"{pod_ips[attempt.server]}:{PORT}" if attempt.server in pod_ips else None
    tracked, snat = None, False
    if attempt.local:
        ip, port = attempt.local.rsplit(":", 1)
        found = flows.get((kind.proto, ip, int(port), kind.dst, kind.dport), [])
        tracked = bool(found)
        nat = [f for f in found if f.dnat]
        if endpoint is not None:
            # answered: the echo server says who; conntrack says how, if it holds this very flow
            # (a client port may come back in a later attempt and its entry replace this one's)
            mine = [f for f in nat if f.dnat == endpoint]
            tracked = True
            snat = seen != ip if not mine else mine[0].snat
        elif nat:
            endpoint, snat = nat[0].dnat, nat[0].snat
    return Outcome(_result(attempt), endpoint, tracked, snat, seen)


# ---------------------------------------------------------------------------- sending


def send_all(topo: Topology, jobs: Sequence[tuple[Kind, int]]) -> list[list[Attempt]]:
    """Each (kind, count) sent ``count`` times; one probe process per source and chunk of jobs
    (not per packet: starting Python is most of a packet's cost), the chunks in parallel."""
    chunks: dict[tuple[str, int], list[int]] = defaultdict(list)
    per_source: Counter[str] = Counter()
    for i, (k, _) in enumerate(jobs):
        chunks[(k.source, per_source[k.source] // CHUNK)].append(i)
        per_source[k.source] += 1

    # Every attempt gets a source port of its own (below the ephemeral range, never reused in the
    # module): with ports the kernel picks, two flows of one client to two Service IPs DNATed to
    # one endpoint may reach it as one 4-tuple, and its TIME_WAIT swallows the second — a timeout by
    # chance that differs between the two clusters' random draws.
    sports: list[list[int]] = []
    for _, count in jobs:
        sports.append([next(SOURCE_PORTS) for _ in range(count)])

    def one(indices: list[int]) -> list[ProbeResult]:
        batch = []
        for i in indices:
            k, _ = jobs[i]
            batch.append({"dst": k.dst, "port": k.dport, "proto": k.proto, "sports": sports[i], "src": k.bind})
        return topo.probe_batch(jobs[indices[0]][0].source, batch, timeout=PROBE_TIMEOUT_S)

    out: list[list[Attempt]] = [[] for _ in jobs]
    with ThreadPoolExecutor(WORKERS) as pool:
        for indices, results in zip(chunks.values(), pool.map(one, chunks.values()), strict=True):
            for i, result in zip(indices, results, strict=True):
                out[i] = result.attempts
    return out


@dataclass
class Seen:
    """Per mode, per packet kind: the attempts and the client address of each."""

    attempts: dict[Kind, list[Attempt]]

    def outcomes(self, kind: Kind, flows: FlowIndex, pod_ips: dict[str, str]) -> list[Outcome]:
        return [outcome(kind, a, flows, pod_ips) for a in self.attempts[kind]]


def differences(
    kinds: Sequence[Kind], seen: dict[str, Seen], flows: dict[str, FlowIndex], pod_ips: dict[str, str]
) -> dict[Kind, str]:
    """The kinds whose outcomes differ between the modes, with the two sides."""
    out = {}
    for k in kinds:
        per_mode = {m: seen[m].outcomes(k, flows[m], pod_ips) for m in MODES}
        if k.service in AFFINITY:
            # the endpoint is random but sticky: compare how it ended, and the masquerade
            # decision where both clusters show it (see Outcome.masquerade_seen)
            ends = {m: sorted({(o.result, o.tracked) for o in per_mode[m]}, key=str) for m in MODES}
            masq = {m: {o.masquerade_seen(k) for o in per_mode[m]} - {None} for m in MODES}
            sticky = {m: len({o.endpoint for o in per_mode[m] if o.endpoint}) <= 1 for m in MODES}
            if (
                ends["iptables"] != ends["nftables"]
                or (all(masq.values()) and masq["iptables"] != masq["nftables"])
                or not all(sticky.values())
            ):
                out[k] = " | ".join(f"{m}: {ends[m]} masquerade {masq[m]} sticky={sticky[m]}" for m in MODES)
            continue
        sets = {m: sorted(set(per_mode[m])) for m in MODES}
        if sets["iptables"] != sets["nftables"]:
            out[k] = "\n".join(f"      {m:8}: " + "; ".join(o.text() for o in sets[m]) for m in MODES)
    return out


def test_iptables_and_nftables_modes_agree(clusters: dict[str, Topology]) -> None:
    seed = int(os.environ.get(SEED_ENV, DEFAULT_SEED))
    count = int(os.environ.get(COUNT_ENV, DEFAULT_COUNT))
    print(f"\nmode parity: seed {seed} (set {SEED_ENV} to repeat another), {count} packets")
    start = time.monotonic()
    draws = draw_packets(random.Random(seed), count)
    kinds = list(dict.fromkeys(k for _, _, k in draws))
    pod_ips = {p: clusters["iptables"].pod_ip(p) for p in ECHO_PODS}
    seen: dict[str, Seen] = {}
    flows: dict[str, FlowIndex] = {m: {} for m in MODES}
    for mode, topo in clusters.items():
        attempts = send_all(topo, [(k, 1) for _, _, k in draws])
        read_flows(topo, flows[mode])
        by_kind: dict[Kind, list[Attempt]] = defaultdict(list)
        for (_, _, k), a in zip(draws, attempts, strict=True):
            by_kind[k] += a
        seen[mode] = Seen(by_kind)
    diff = differences(kinds, seen, flows, pod_ips)
    first_diff = len(diff)
    for extra in TOP_UPS:  # random endpoints: send the kinds that differ again, in both clusters
        if not diff:
            break
        for mode, topo in clusters.items():
            for k, a in zip(diff, send_all(topo, [(k, extra) for k in diff]), strict=True):
                seen[mode].attempts[k] += a
            read_flows(topo, flows[mode])
        diff = differences(list(diff), seen, flows, pod_ips)
    elapsed = time.monotonic() - start

    first: dict[str, list[Outcome]] = {}
    for m in MODES:  # each draw's own attempt (top-ups come after them)
        first[m] = []
        used: Counter[Kind] = Counter()
        for _, _, k in draws:
            first[m].append(seen[m].outcomes(k, flows[m], pod_ips)[used[k]])
            used[k] += 1
    results = {m: Counter(o.result for o in first[m]) for m in MODES}
    masq = {m: Counter("masq" if o.seen and o.snat else "kept" for o in first[m] if o.result == "reply") for m in MODES}
    summary = "\n".join(
        [
            f"seed {seed} ({SEED_ENV}), {count} packets ({COUNT_ENV}), {len(kinds)} kinds, {elapsed:.1f}s",
            f"  ways in:  {dict(sorted(Counter(w for w, _, _ in draws).items()))}",
            f"  sources:  {dict(sorted(Counter(s for _, s, _ in draws).items()))}",
            *(f"  {m:9} {dict(sorted(results[m].items()))}, replies {dict(sorted(masq[m].items()))}" for m in MODES),
            f"  kinds sent again (random endpoints): {first_diff}; still different: {len(diff)}",
        ]
    )
    print(summary)
    report = "\n".join(f"  {k.label()}\n{v}" for k, v in diff.items())
    assert not diff, f"{len(diff)} packet kinds end differently (seed {seed}):\n{report}\n{summary}"
    # not vacuous: every way in and source, and every ending, was exercised
    assert {w for w, _, _ in draws} == set(KINDS)
    assert {s for _, s, _ in draws} == set(SOURCE_KINDS)
    for m in MODES:
        assert {"reply", "refused", "timeout"} <= set(results[m]), summary
        assert set(masq[m]) == {"masq", "kept"}, summary
