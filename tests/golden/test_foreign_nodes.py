"""Foreign nodes built from public documentation, checked against the kernel with real packets.

Each fixture in ``foreign/`` (made by ``foreign/source/capture.sh`` from the inputs beside it,
whose headers cite their sources) is loaded into a throwaway namespace that has the interfaces
and addresses its rules expect (`foreign_net.Net`); echo servers answer in the node and its
peers; each case is sent once for real and must end as written here, and ``clew trace`` must
predict it:

* read live from the namespace (``from_netns``, as ``clew trace --netns``), one of the outcomes
  is what the client saw — no wrong answer at all;
* read from the ruleset file alone (``clew trace --ruleset``: no routes, no ipset members), the
  most probable outcome is either what the client saw or rests on an assumption it states — no
  wrong answer that is not marked as one — and there is never a traceback.

Fixtures: Docker 28 with a published port and FORWARD DROP, a kind node (kind's DNS rewrite and
masquerade agent under kube-proxy's rules), kube-proxy in IPVS mode (recognised and said),
weave-npc with its ipsets, and a strict rpfilter in raw (NixOS's firewall).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from foreign_net import Net, Peer, kernel_result

from clew.kernel import netns
from clew.netfilter.iptables_save import parse
from clew.trace.engine import trace
from clew.trace.node_view import ipsets_from_save
from clew.trace.packet import Outcome, Packet, TraceResult
from clew.trace.sources import from_ruleset
from clew.trace.story import format_trace

FOREIGN = Path(__file__).parent / "foreign"
SOURCE = FOREIGN / "source"


@dataclass(frozen=True)
class Case:
    who: str  # the namespace that sends ("node": a process on the node)
    src: str
    dst: str
    dport: int
    expect: str  # "answer:NAME seen:IP", "timeout" or "refused"
    proto: str = "tcp"
    iif: str | None = None  # for the trace: where it arrives (None: inferred from the routes)


@dataclass(frozen=True)
class Fixture:
    name: str
    peers: tuple[Peer, ...]
    echo: dict[str, tuple[int, ...]]  # namespace → ports
    servers: dict[str, str]  # address → echo server name (the node's own: "node")
    cases: tuple[Case, ...]
    ipset: bool = False


CLIENT = Peer("client", "eth0", "192.168.1.11/24", ("192.168.1.50/24",), routes=("default",))

DOCKER = Fixture(
    "docker_published",
    (CLIENT, Peer("ctr", "docker0", "172.17.0.1/16", ("172.17.0.2/16",))),
    {"node": (7000,), "ctr": (80, 22), "client": (7000,)},
    {"172.17.0.2": "ctr", "192.168.1.50": "client"},
    (
        Case("client", "192.168.1.50", "192.168.1.11", 8080, "answer:ctr seen:192.168.1.50"),  # published
        Case("client", "192.168.1.50", "172.17.0.2", 80, "answer:ctr seen:192.168.1.50"),  # the published port, direct
        Case("client", "192.168.1.50", "172.17.0.2", 22, "timeout"),  # Docker 28: no other direct access
        Case("client", "192.168.1.50", "192.168.1.11", 7000, "answer:node seen:192.168.1.50"),
        Case("ctr", "172.17.0.2", "192.168.1.50", 7000, "answer:client seen:192.168.1.11"),  # masqueraded
    ),
)

KIND = Fixture(
    "kind_node",
    (
        Peer("gw", "eth0", "172.18.0.2/16", ("172.18.0.1/16",), routes=("10.244.0.0/16", "10.96.0.0/12")),
        Peer("api", "vethapi", "10.244.1.1/24", ("10.244.1.5/24",)),
    ),
    {"node": (41879,), "api": (8080,), "gw": (8080,)},
    {"10.244.1.5": "api", "172.18.0.1": "gw"},
    (
        Case("gw", "172.18.0.1", "172.18.0.2", 30081, "answer:api seen:10.244.1.1"),  # NodePort, eTP Cluster
        Case("api", "10.244.1.5", "172.18.0.1", 8080, "answer:gw seen:172.18.0.2"),  # KIND-MASQ-AGENT
        Case("api", "10.244.1.5", "10.96.0.60", 80, "answer:api seen:10.244.1.1"),  # hairpin to itself
        # kind's DNS (TCP: a UDP echo bound to 0.0.0.0 would answer from the wrong address, unlike Docker's)
        Case("node", "172.18.0.2", "172.18.0.1", 53, "answer:node seen:172.18.0.2"),
    ),
)

IPVS = Fixture(
    "ipvs_node",
    (
        CLIENT,
        Peer("ipvs", "kube-ipvs0", "10.96.0.10/32", ("169.254.0.2/32",), routes=(), node_extra=("10.96.0.50/32",)),
    ),
    {"node": (80, 32000, 7000)},
    {},
    (
        Case("client", "192.168.1.50", "10.96.0.50", 80, "answer:node seen:192.168.1.50", iif="eth0"),
        Case("client", "192.168.1.50", "192.168.1.11", 32000, "answer:node seen:192.168.1.50", iif="eth0"),
    ),
    ipset=True,
)

WEAVE = Fixture(
    "weave_npc",
    (
        CLIENT,
        Peer("db", "weave", "10.32.0.1/12", ("10.32.0.5/32",)),  # /32: its replies to 10.32.0.9 go via the node
        Peer("fe", "eth1", "192.168.2.1/24", ("192.168.2.9/24", "10.32.0.9/32"), node_routes=("10.32.0.9/32",)),
    ),
    {"db": (5432, 80), "client": (7000,)},
    {"10.32.0.5": "db", "192.168.1.50": "client"},
    (
        Case("fe", "10.32.0.9", "10.32.0.5", 5432, "answer:db seen:10.32.0.9"),  # the policy allows it
        Case("fe", "10.32.0.9", "10.32.0.5", 80, "timeout"),  # not that port
        Case("client", "192.168.1.50", "10.32.0.5", 5432, "timeout"),  # not that source
        Case("db", "10.32.0.5", "192.168.1.50", 7000, "answer:client seen:192.168.1.11"),  # out, masqueraded
    ),
    ipset=True,
)

RPFILTER = Fixture(
    "rpfilter_raw",
    (
        Peer("client", "eth0", "192.168.1.11/24", ("192.168.1.50/24", "10.9.9.9/32")),
        Peer("lan2", "eth1", "10.9.9.1/24", ("10.9.9.2/24",)),
    ),
    {"node": (7000,)},
    {},
    (
        Case("client", "192.168.1.50", "192.168.1.11", 7000, "answer:node seen:192.168.1.50", iif="eth0"),
        Case("client", "10.9.9.9", "192.168.1.11", 7000, "timeout", iif="eth0"),  # spoofed: the way back is eth1
        Case("lan2", "10.9.9.2", "192.168.1.11", 7000, "answer:node seen:10.9.9.2", iif="eth1"),
    ),
)

FIXTURES = [DOCKER, KIND, IPVS, WEAVE, RPFILTER]


def predictions(result: TraceResult, servers: dict[str, str]) -> dict[str, Outcome]:
    """What the client would see for each outcome (``answer:NAME seen:IP`` / timeout / refused)."""
    out: dict[str, Outcome] = {}
    for o in result.outcomes:
        if o.verdict == "DROP":
            out.setdefault("timeout", o)
        elif o.verdict == "REJECT":
            out.setdefault("refused", o)
        else:
            to = (o.dnat or result.packet.dst).rsplit(":", 1)[0] if o.dnat else result.packet.dst
            server = "node" if o.egress is not None and o.egress.kind == "local" else servers.get(to, to)
            out.setdefault(f"answer:{server} seen:{o.source_seen}", o)
    return out


def packet(c: Case, *, iif: str | None) -> Packet:
    return Packet(c.src, c.dst, proto=c.proto, dport=c.dport, iif=iif)


# ---------------------------------------------------------------- from the file alone (pure)


def node_ips(f: Fixture) -> list[str]:
    return [p.node_addr.split("/")[0] for p in f.peers]


@pytest.mark.parametrize("f", FIXTURES, ids=lambda f: f.name)
def test_fixture_is_iptables_save_output_read_without_warnings(f: Fixture) -> None:
    body = (FOREIGN / f"{f.name}.iptables").read_text()
    assert body.startswith("# Generated by iptables-save v1.8.9 (nf_tables)")
    assert parse(body, origin=f.name).warnings == []


@pytest.mark.parametrize("f", FIXTURES, ids=lambda f: f.name)
def test_from_the_file_alone_no_wrong_answer_is_unmarked(f: Fixture) -> None:
    view = from_ruleset(FOREIGN / f"{f.name}.iptables", node_ips(f))
    by_peer = {p.name: p.node_if for p in f.peers}
    for c in f.cases:
        result = trace(view, packet(c, iif=c.iif or by_peer.get(c.who)))
        format_trace(result)  # no traceback in the story either
        first = result.outcomes[0]
        said = next((k for k, o in predictions(result, f.servers).items() if o is first), None)
        if said != c.expect:
            assert not first.certain, (c, said, format_trace(result))


def test_ipvs_node_is_recognised_and_said() -> None:
    view = from_ruleset(FOREIGN / "ipvs_node.iptables", ["192.168.1.11"])
    result = trace(view, Packet("192.168.1.50", "192.168.1.11", dport=30080, iif="eth0"))
    assert any("IPVS mode" in w for w in result.warnings)
    (o,) = result.outcomes
    assert o.verdict == "ACCEPT" and not o.certain
    assert any("IPVS virtual service" in a.what for a in o.assumptions)
    assert "kube-proxy in IPVS mode" in format_trace(result)


def test_ipvs_ipsets_known_decide_the_masquerade_mark() -> None:
    view = from_ruleset(FOREIGN / "ipvs_node.iptables", ["192.168.1.11", "10.96.0.50"])
    view.ipsets = ipsets_from_save((SOURCE / "ipvs_node.ipset").read_text())
    (o,) = trace(view, Packet("192.168.1.50", "10.96.0.50", dport=80, iif="eth0")).outcomes
    marked = [h for h in o.hops if h.chain == "KUBE-MARK-MASQ"]
    assert marked, o.hops  # KUBE-CLUSTER-IP 10.96.0.50,tcp:80 matched dst,dst: marked for masquerade
    assert any("IPVS virtual service" in a.what for a in o.assumptions)
    (o2,) = trace(view, Packet("192.168.1.50", "10.96.0.50", dport=81, iif="eth0")).outcomes
    assert not any(h.chain == "KUBE-MARK-MASQ" for h in o2.hops)  # port 81 is not in the set


def test_weave_unknown_ipsets_are_assumptions_naming_the_set() -> None:
    view = from_ruleset(FOREIGN / "weave_npc.iptables", ["10.32.0.1", "192.168.1.11"])
    result = trace(view, Packet("10.32.0.9", "10.32.0.5", dport=5432, iif="eth1", oif="weave"))
    first = result.outcomes[0]
    assert not first.certain
    assert any("weave-local-pods" in a.what for a in first.assumptions)


# ---------------------------------------------------------------- against the kernel

NO_KERNEL = os.geteuid() != 0 or any(shutil.which(t) is None for t in ("ip", "ipset", "iptables-restore"))


@pytest.fixture
def net(request: pytest.FixtureRequest) -> Iterator[Net]:
    f: Fixture = request.param
    n = Net(f.peers)
    try:
        n.build()
        ipsets = (SOURCE / f"{f.name}.ipset").read_text() if f.ipset else None
        n.load((FOREIGN / f"{f.name}.iptables").read_text(), ipsets)
        for who, ports in f.echo.items():
            n.echo(who, *ports)
        yield n
    finally:
        n.close()


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL, reason="needs root, ip, ipset and iptables-restore")
@pytest.mark.parametrize("net", FIXTURES, ids=lambda f: f.name, indirect=True)
def test_real_packets_end_as_the_live_trace_predicts(net: Net, request: pytest.FixtureRequest) -> None:
    f: Fixture = request.node.callspec.params["net"]
    view = net.view()
    problems = []
    for c in f.cases:
        seen = kernel_result(net.probe(c.who, c.dst, c.dport, c.proto, src=c.src))
        result = trace(view, packet(c, iif=c.iif))
        said = predictions(result, f.servers)
        if seen != c.expect or seen not in said:
            problems.append(f"{c}: kernel {seen!r}, trace {sorted(said)}\n{format_trace(result)}")
    assert not problems, "\n".join(problems)


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL or shutil.which("nft") is None, reason="needs root, nft, ip, ipset, iptables-restore")
@pytest.mark.parametrize("net", FIXTURES, ids=lambda f: f.name, indirect=True)
def test_verify_the_kernels_nftables_trace_agrees_with_the_prediction(net: Net, request: pytest.FixtureRequest) -> None:
    """``clew trace --verify``'s two halves on every case: the packet is sent again with nftables
    tracing (from the node, or from a throwaway namespace on a new veth: predicted for that
    interface), and the kernel's decisive steps equal one outcome's. Nothing is left behind."""
    from clew.kernel.nft_trace import send_traced
    from clew.trace.verify import compare, format_comparison

    f: Fixture = request.node.callspec.params["net"]
    view = net.view()
    before = net.run("node", "ip", "-o", "link")
    problems = []
    thrown = []
    for c in f.cases:
        local = c.who == "node"
        sent = send_traced(net.node, src=c.src, dst=c.dst, proto=c.proto, dport=c.dport, local=local)
        thrown += [sent.thrown] if sent.thrown else []
        result = trace(view, packet(c, iif=sent.iif))
        comparison = compare(result, sent.lines)
        if not comparison.agree or not sent.lines:
            problems.append(f"{c}:\n{format_trace(result)}{format_comparison(comparison, sent.via, sent.sender)}")
    assert not problems, "\n".join(problems)
    assert "clew_verify" not in net.run("node", "nft", "list", "tables")
    assert net.run("node", "ip", "-o", "link") == before
    assert thrown and not [n for n in thrown if netns.exists(n)]  # (other sessions may run their own)
