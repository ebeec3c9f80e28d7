"""Kernel agreement on a node that mixes iptables-nft and native nftables tables.

The two-node topology of `topology.py`; ``node`` holds a mixed ruleset, as a modern node does:

* Docker-like iptables-nft rules (loaded with iptables-restore, so they are nftables tables
  ``ip filter`` / ``ip nat`` with xt expressions): FORWARD policy DROP, DOCKER-USER, a DOCKER
  chain publishing pod ``a``'s TCP 8080, pod traffic accepted out, MASQUERADE of pod traffic;
* a native table ``ip fw`` with a forward-hook chain of its own, ``policy drop``: established
  traffic, pod traffic, TCP 8080 to ``a`` and UDP to node2's pods accepted;
* a native ``inet extra`` table between them by priority: a prerouting chain at -200 marking ext's
  UDP, a forward chain at 5 dropping a concatenated set member (``c . a . tcp``) and marked packets
  for ``d`` (so marks cross tables, and the order of three forward chains matters);
* a kube-proxy-style nftables table (``ip kube-proxy``: nat chains, a ``service-ips`` verdict map,
  ``numgen random mod 3 vmap`` over endpoint chains, mark-and-masquerade) for Service
  10.96.0.10:80 (TCP and UDP) with endpoints ``a``, ``b`` (node) and ``d`` (node2).

The tracer reads the node live (`from_netns`: iptables-save and ``nft -j list ruleset``). Then
at least 300 seeded random packets (``CLEW_TRACE_SEED``, ``CLEW_TRACE_PACKETS``) — from ``ext``,
from the node itself and from pod ``c`` on node2, to the Service or straight to a pod, TCP or UDP
— are traced, sent for real, and what the client saw must be one of the outcomes: an answer from
the endpoint an ACCEPT outcome names with the source it predicts, or a timeout where a DROP is
predicted. Clients are never pods of ``node`` (their Service replies would bypass the node's
NAT, a known limit covered by test_trace_agreement).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from topology import EXT_IP, Topology, unique_prefix

from clew.kernel import netns
from clew.trace.engine import trace
from clew.trace.node_view import NodeView, from_netns
from clew.trace.packet import Outcome, Packet
from clew.trace.routes import lookup, source_address
from clew.trace.story import format_trace

pytestmark = pytest.mark.kernel

PODS = {"node": ["a", "b"], "node2": ["c", "d"]}
PORT = 8080
SVC = "10.96.0.10"
NODE_IP = "192.168.50.2"
PROBE_TIMEOUT_S = 0.4
WORKERS = 8
SEED_ENV, COUNT_ENV = "CLEW_TRACE_SEED", "CLEW_TRACE_PACKETS"
DEFAULT_SEED, DEFAULT_COUNT = 20261206, 300

DOCKER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o cni0 -j DOCKER
-A FORWARD -i cni0 ! -o cni0 -j ACCEPT
-A FORWARD -i cni0 -o cni0 -j ACCEPT
-A DOCKER -d {a}/32 ! -i cni0 -o cni0 -p tcp -m tcp --dport 8080 -j ACCEPT
-A DOCKER-USER -d 10.244.2.0/24 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.244.1.0/24 ! -o cni0 -j MASQUERADE
COMMIT
"""

NATIVE = """table ip fw {
  chain forward {
    type filter hook forward priority 10; policy drop;
    ct state established,related accept
    iifname "cni0" accept
    ip daddr {a} tcp dport 8080 accept
    ip daddr 10.244.2.0/24 udp dport 8080 accept
  }
}
"""

EXTRA = """table inet extra {
  set blocked { type ipv4_addr . ipv4_addr . inet_proto; elements = { {c} . {a} . tcp } }
  chain pre {
    type filter hook prerouting priority -200; policy accept;
    ip saddr 192.168.50.100 udp dport { 80, 8080 } meta mark set 0x10
  }
  chain through {
    type filter hook forward priority 5; policy accept;
    ip saddr . ip daddr . meta l4proto @blocked drop
    meta mark & 0x10 == 0x10 ip daddr {d} drop
  }
}
"""

KUBE_PROXY = """table ip kube-proxy {
  map service-ips {
    type ipv4_addr . inet_proto . inet_service : verdict
    elements = { 10.96.0.10 . tcp . 80 : goto service-ABCDEFGH-default/web/tcp/http,
                 10.96.0.10 . udp . 80 : goto service-ABCDEFGH-default/web/tcp/http }
  }
  chain nat-prerouting { type nat hook prerouting priority -100; policy accept; jump services; }
  chain nat-output { type nat hook output priority -100; policy accept; jump services; }
  chain nat-postrouting { type nat hook postrouting priority 100; policy accept; jump masquerading; }
  chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }
  chain mark-for-masquerade { mark set mark or 0x4000; }
  chain masquerading {
    mark and 0x4000 == 0 return
    mark set mark xor 0x4000
    masquerade fully-random
  }
  chain service-ABCDEFGH-default/web/tcp/http {
    ip daddr 10.96.0.10 ip saddr != 10.244.1.0/24 jump mark-for-masquerade
    numgen random mod 3 vmap { 0 : goto endpoint-AAAAAAAA-default/web/tcp/http__{a}/8080,
                               1 : goto endpoint-BBBBBBBB-default/web/tcp/http__{b}/8080,
                               2 : goto endpoint-DDDDDDDD-default/web/tcp/http__{d}/8080 }
  }
{endpoints}
}
"""

ENDPOINT = """  chain endpoint-{h}-default/web/tcp/http__{ip}/8080 {
    ip saddr {ip} jump mark-for-masquerade
    meta l4proto tcp dnat to {ip}:8080
    meta l4proto udp dnat to {ip}:8080
  }
"""


@dataclass
class Lab:
    topo: Topology
    view: NodeView


def _rules(topo: Topology) -> tuple[str, str, str, str]:
    ips = {p: topo.pod_ip(p) for p in ("a", "b", "c", "d")}
    endpoints = "".join(ENDPOINT.replace("{h}", p.upper() * 8).replace("{ip}", ips[p]) for p in ("a", "b", "d"))
    kube, extra = KUBE_PROXY.replace("{endpoints}", endpoints), EXTRA
    for p, ip in ips.items():
        kube, extra = kube.replace("{" + p + "}", ip), extra.replace("{" + p + "}", ip)
    return DOCKER.replace("{a}", ips["a"]), NATIVE.replace("{a}", ips["a"]), extra, kube


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Topology(unique_prefix("tn"), PODS) as topo:
        docker, native, extra, kube = _rules(topo)
        topo.load_rules("node", docker)
        netns.run(topo.ns("node"), ["nft", "-f", "-"], input=native)
        netns.run(topo.ns("node"), ["nft", "-f", "-"], input=extra)
        netns.run(topo.ns("node"), ["nft", "-f", "-"], input=kube)
        topo.add_route("ext", "10.96.0.0/12", via=NODE_IP)
        topo.add_route("ext", "10.244.0.0/16", via=NODE_IP)
        topo.add_route("node2", "10.96.0.0/12", via=NODE_IP)
        topo.add_route("node", "10.96.0.0/12", via=EXT_IP)  # a route, so the node's connect() works
        for pod in ("a", "b", "c", "d"):
            topo.start_echo(pod, [PORT])
        yield Lab(topo, from_netns(topo.ns("node")))


# ---------------------------------------------------------------------------- one packet


@dataclass(frozen=True)
class Draw:
    source: str  # ext | node | c
    dst: str
    dport: int
    proto: str


def draws(topo: Topology, rng: random.Random, count: int) -> list[Draw]:
    targets = [(SVC, 80), *((topo.pod_ip(p), PORT) for p in ("a", "b", "d"))]
    out: list[Draw] = []
    while len(out) < count:
        (dst, dport), source = rng.choice(targets), rng.choice(("ext", "node", "c"))
        if source == "c" and dst == topo.pod_ip("d"):
            continue  # c → d stays on node2's bridge: node never sees it
        out.append(Draw(source, dst, dport, rng.choice(("tcp", "udp"))))
    return out


def source_ip(lab: Lab, d: Draw) -> str:
    if d.source == "ext":
        return EXT_IP
    if d.source == "c":
        return lab.topo.pod_ip("c")
    src = source_address(lab.view, lookup(lab.view, d.dst))
    assert src is not None, d
    return src


@dataclass
class Seen:
    result: str  # reply | timeout | refused | other
    endpoint: str | None = None
    seen_ip: str | None = None
    detail: str = ""


def send(lab: Lab, d: Draw) -> Seen:
    ips = {p: lab.topo.pod_ip(p) for ps in PODS.values() for p in ps}
    who = "node" if d.source == "node" else d.source
    a = lab.topo.probe(who, d.dst, d.dport, d.proto, timeout=PROBE_TIMEOUT_S).attempts[0]
    if a.ok and a.server is not None and a.seen is not None:
        return Seen("reply", f"{ips[a.server]}:{PORT}", a.seen.rsplit(":", 1)[0])
    return Seen(a.error or "other", detail=a.error or "")


def judge(outcomes: list[Outcome], d: Draw, seen: Seen) -> str | None:
    total = sum(o.probability for o in outcomes)
    if abs(total - 1) > 1e-9:
        return f"probabilities sum to {total}"
    if seen.result == "reply":
        reached = [o for o in outcomes if o.verdict == "ACCEPT" and (o.dnat or f"{d.dst}:{d.dport}") == seen.endpoint]
        if not reached:
            return f"answered by {seen.endpoint}, which no ACCEPT outcome reaches"
        if not any(o.source_seen == seen.seen_ip for o in reached):
            return f"{seen.endpoint} saw {seen.seen_ip}; tracer says {sorted(str(o.source_seen) for o in reached)}"
        return None
    if seen.result == "timeout":
        return None if any(o.verdict == "DROP" for o in outcomes) else "timeout, but no DROP outcome"
    if seen.result == "refused":
        return None if any(o.verdict == "REJECT" for o in outcomes) else "refused, but no REJECT outcome"
    return f"probe error {seen.detail!r}"


def _text(outcomes: list[Outcome]) -> str:
    return "; ".join(
        f"{o.verdict} {o.probability:.3f}{' → ' + o.dnat if o.dnat else ''} seen-as {o.source_seen}" for o in outcomes
    )


# ---------------------------------------------------------------------------- tests


def test_forward_policy_drop_of_a_native_table_is_not_delivered(lab: Lab) -> None:
    """ext → d (TCP): iptables' DOCKER-USER accepts it, ``ip fw``'s forward chain drops it by
    policy; the kernel agrees (no answer)."""
    d = lab.topo.pod_ip("d")
    result = trace(lab.view, Packet(EXT_IP, d, dport=PORT))
    assert [o.verdict for o in result.outcomes] == ["DROP"], format_trace(result)
    (o,) = result.outcomes
    assert (o.hops[-1].table, o.hops[-1].chain, o.hops[-1].rule) == ("ip fw", "forward", "policy drop")
    assert lab.topo.probe("ext", d, PORT, timeout=PROBE_TIMEOUT_S).attempts[0].error == "timeout"
    udp = trace(lab.view, Packet(EXT_IP, d, proto="udp", dport=PORT))  # marked at -200 by inet extra
    assert [(o.verdict, o.hops[-1].table) for o in udp.outcomes] == [("DROP", "inet extra")], format_trace(udp)
    c_to_d = trace(lab.view, Packet(lab.topo.pod_ip("c"), d, proto="udp", dport=PORT, iif="eth0"))
    assert [o.verdict for o in c_to_d.outcomes] == ["ACCEPT"], format_trace(c_to_d)  # fw lets UDP to node2 pods


def test_iptables_nft_tables_walked_once(lab: Lab) -> None:
    assert lab.view.nft is not None and lab.view.nft.table("ip", "filter") is not None  # iptables-nft's
    result = trace(lab.view, Packet(EXT_IP, lab.topo.pod_ip("b"), dport=PORT))
    (o,) = result.outcomes
    assert o.verdict == "DROP" and o.hops[-1].table == "filter", format_trace(result)
    assert o.certain


def test_tracer_agrees_with_the_kernel_on_a_mixed_ruleset(lab: Lab) -> None:
    seed = int(os.environ.get(SEED_ENV, DEFAULT_SEED))
    count = int(os.environ.get(COUNT_ENV, DEFAULT_COUNT))
    todo = draws(lab.topo, random.Random(seed), count)
    preds = [trace(lab.view, Packet(source_ip(lab, d), d.dst, proto=d.proto, dport=d.dport)).outcomes for d in todo]
    with ThreadPoolExecutor(WORKERS) as pool:
        seens = list(pool.map(lambda d: send(lab, d), todo))
    bad = []
    for d, outcomes, seen in zip(todo, preds, seens, strict=True):
        problem = judge(outcomes, d, seen)
        if problem:
            bad.append(f"{d}: {problem}\n    tracer: {_text(outcomes)}\n    kernel: {seen}")
    bad = sorted(set(bad))
    kinds = Counter(s.result for s in seens)
    print(f"\nnft agreement: seed {seed}, {len(todo)} packets, kernel {dict(kinds)}")
    assert not bad, f"{len(bad)} of {len(todo)} disagree (seed {seed}):\n" + "\n".join(bad[:20])
    assert {"reply", "timeout"} <= set(kinds), kinds  # not vacuous
    verdicts = Counter(o.verdict for outs in preds for o in outs)
    assert verdicts["DROP"] and verdicts["ACCEPT"], verdicts
    assert any(o.masquerade for outs in preds for o in outs)


def _clew(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("clew")
    argv = [str(exe)] if exe.is_file() else [sys.executable, "-m", "clew"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False)


def test_dump_carries_nft_and_cli_traces_and_explains_it(lab: Lab, tmp_path: Path) -> None:
    """``clew dump`` keeps ``nft -j list ruleset``; ``clew trace --from-dump`` and ``--netns`` see the
    native drop chain; ``clew explain service`` reads kube-proxy's nftables layout live."""
    ns, d = lab.topo.ns("node"), lab.topo.pod_ip("d")
    dump = _clew("dump", "--netns", ns, "--sample", "0", str(tmp_path / "dump"))
    assert dump.returncode == 0, dump.stderr
    assert (tmp_path / "dump" / "nft-ruleset.json").is_file()
    args = ["--src", EXT_IP, "--dst", d, "--dport", str(PORT), "--json"]
    for source in (["--from-dump", str(tmp_path / "dump")], ["--netns", ns]):
        out = _clew("trace", *source, *args)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert [o["verdict"] for o in doc["outcomes"]] == ["DROP"], out.stdout
    explained = _clew("explain", "service", "default/web", "--netns", ns, "--json")
    assert explained.returncode == 0, explained.stderr
    (port,) = json.loads(explained.stdout)["ports"]
    (chain,) = port["chains"]
    assert sorted((b["endpoint"], round(b["share"], 4)) for b in chain["branches"]) == sorted(
        (f"{lab.topo.pod_ip(p)}:{PORT}", 0.3333) for p in ("a", "b", "d")
    )


VERIFY_SAMPLE = 8


def test_verify_a_sample_with_the_kernels_nftables_trace(lab: Lab) -> None:
    """``clew trace --verify``'s halves on a sample of the draws from ext: the packet sent again with
    nftables tracing, the kernel's decisive steps (native chains, iptables-nft's, kube-proxy's vmap
    gotos, DNAT, policy drops) equal to one outcome's."""
    from clew.kernel.nft_trace import send_traced
    from clew.trace.verify import compare, format_comparison

    node = lab.topo.ns("node")
    ext = [d for d in draws(lab.topo, random.Random(DEFAULT_SEED), 200) if d.source == "ext"]
    half = VERIFY_SAMPLE // 2
    sample = [d for d in ext if d.dst == SVC][:half] + [d for d in ext if d.dst != SVC][:half]
    problems = []
    steps: set[tuple[str, str, str]] = set()
    for d in sample:
        sent = send_traced(node, src=EXT_IP, dst=d.dst, proto=d.proto, dport=d.dport, local=False)
        result = trace(lab.view, Packet(EXT_IP, d.dst, proto=d.proto, dport=d.dport, iif=sent.iif))
        comparison = compare(result, sent.lines)
        steps.update(comparison.kernel)
        if not comparison.agree or not sent.lines:
            problems.append(f"{d}:\n{format_trace(result)}{format_comparison(comparison, sent.via, sent.sender)}")
    assert not problems, "\n".join(problems)
    print(f"\nverified {len(sample)} packets; kernel steps seen: {sorted(steps)}")
    tables = {t for t, _, _ in steps}
    assert {"fw", "kube-proxy", "filter"} <= tables, steps  # native, kube-proxy-style and iptables-nft chains
    assert "clew_verify" not in netns.run(node, ["nft", "list", "tables"]).stdout
