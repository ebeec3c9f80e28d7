"""A firewalld host (native nftables: ``table inet firewalld`` and ``table ip firewalld``), checked
like the other foreign fixtures (test_foreign_nodes.py): no traceback, and no wrong answer that is
not marked as an assumption.

The ruleset is ``foreign/source/firewalld.nft`` (its header cites the real dump it follows: a RHEL 8
host's firewalld 0.8 with zones public and libvirt, plus firewalld ≥ 0.9's ``ct status dnat
accept``, a forward-port, masquerade and the IPv4 twin of firewalld's strict rpfilter rule);
``foreign/firewalld.nft.json`` is nft's JSON listing of it, what ``clew trace --ruleset`` reads.

* From the file alone (no routes): the most probable outcome is what the client sees, or it rests
  on an assumption it states (``fib saddr . iif oif missing`` needs the routes).
* Against the kernel: the ruleset is loaded with ``nft -f`` into a throwaway node whose interfaces
  are the zones' (eth0 and eth1: public, virbr0: libvirt), each case is sent once for real and must
  end as written here, and the live trace (``from_netns``) predicts it; ``--verify``'s halves agree
  with the kernel's ``nft monitor trace`` on every case.

firewalld rejects with ``icmpx admin-prohibited`` (the client's connect() fails with "no route to
host": ``prohibited`` here) and the libvirt zone's ``_post`` chain with a plain ``reject`` (port
unreachable: ``refused``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from foreign_net import Net, Peer

from clew.kernel import netns
from clew.lab.echo import Attempt
from clew.trace.engine import trace
from clew.trace.packet import Outcome, Packet, TraceResult
from clew.trace.sources import from_ruleset
from clew.trace.story import format_short, format_trace, reject_with

FOREIGN = Path(__file__).parent / "foreign"
RULES = FOREIGN / "source" / "firewalld.nft"
LISTING = FOREIGN / "firewalld.nft.json"
NODE_IPS = ["192.168.1.11", "10.9.9.1", "192.168.122.1"]

PEERS = (
    Peer("client", "eth0", "192.168.1.11/24", ("192.168.1.50/24", "10.9.9.9/32")),  # zone public
    Peer("lan2", "eth1", "10.9.9.1/24", ("10.9.9.2/24",)),  # no zone of its own: the default, public
    Peer("vm", "virbr0", "192.168.122.1/24", ("192.168.122.50/24",)),  # zone libvirt
)
ECHO = {"node": (22, 7000), "vm": (80, 7000), "client": (7000,)}
SERVERS = {"192.168.122.50": "vm", "192.168.1.50": "client", "10.9.9.2": "lan2"}


@dataclass(frozen=True)
class Case:
    who: str  # the namespace that sends
    src: str
    dst: str
    dport: int
    expect: str  # "answer:NAME seen:IP", "timeout", "refused" or "prohibited"
    iif: str


CASES = (
    Case("client", "192.168.1.50", "192.168.1.11", 22, "answer:node seen:192.168.1.50", "eth0"),  # ssh: public allows
    Case("client", "192.168.1.50", "192.168.1.11", 7000, "prohibited", "eth0"),  # filter_INPUT's final reject
    # into the libvirt zone, forwarded (ct status dnat / filter_FWDO_libvirt accept) and masqueraded: the
    # libvirt zone is dispatched with `jump`, so nat_POSTROUTING_ZONES goes on to its final `goto
    # nat_POST_public`, whose masquerade applies to every zone's traffic (firewalld 0.8's dispatch)
    Case("client", "192.168.1.50", "192.168.1.11", 8080, "answer:vm seen:192.168.122.1", "eth0"),  # forward-port
    Case("client", "192.168.1.50", "192.168.122.50", 80, "answer:vm seen:192.168.122.1", "eth0"),
    Case("client", "10.9.9.9", "192.168.1.11", 22, "timeout", "eth0"),  # spoofed: the way back is eth1 (rpfilter)
    Case("lan2", "10.9.9.2", "192.168.1.11", 22, "answer:node seen:10.9.9.2", "eth1"),  # default zone public
    Case("lan2", "10.9.9.2", "192.168.1.50", 7000, "prohibited", "eth1"),  # public → public: not forwarded
    Case("vm", "192.168.122.50", "192.168.1.11", 22, "answer:node seen:192.168.122.50", "virbr0"),  # libvirt: ssh
    Case("vm", "192.168.122.50", "192.168.1.11", 7000, "refused", "virbr0"),  # filter_IN_libvirt_post: reject
    Case("vm", "192.168.122.50", "192.168.1.50", 7000, "answer:client seen:192.168.1.11", "virbr0"),  # masqueraded
)


def _rejects_as(o: Outcome) -> str:
    """What the client sees of a REJECT (`story.reject_with`): ``prohibited`` for ICMP admin-prohibited
    and the like ("no route to host"), ``refused`` for a port unreachable or a TCP reset."""
    return "refused" if reject_with(o) in ("port-unreachable", "tcp-reset") else "prohibited"


def predictions(result: TraceResult) -> dict[str, Outcome]:
    """What the client would see for each outcome."""
    out: dict[str, Outcome] = {}
    for o in result.outcomes:
        if o.verdict == "DROP":
            out.setdefault("timeout", o)
        elif o.verdict == "REJECT":
            out.setdefault(_rejects_as(o), o)
        else:
            to = o.dnat.rsplit(":", 1)[0] if o.dnat else result.packet.dst
            server = "node" if o.egress is not None and o.egress.kind == "local" else SERVERS.get(to, to)
            out.setdefault(f"answer:{server} seen:{o.source_seen}", o)
    return out


def seen_by_client(a: Attempt) -> str:
    if a.ok:
        return f"answer:{a.server} seen:{(a.seen or '?').rsplit(':', 1)[0]}"
    kind = (a.error or "other").split(":")[0]
    return {"unreachable": "prohibited"}.get(kind, kind)


def packet(c: Case) -> Packet:
    return Packet(c.src, c.dst, dport=c.dport, iif=c.iif)


# ---------------------------------------------------------------- from the file alone (pure)


def test_the_listing_is_read_without_warnings() -> None:
    view = from_ruleset(LISTING, NODE_IPS)
    assert view.nft is not None and view.warnings == []
    assert {(t.family, t.name) for t in view.nft.tables.values()} == {("inet", "firewalld"), ("ip", "firewalld")}


def test_from_the_file_alone_no_wrong_answer_is_unmarked() -> None:
    view = from_ruleset(LISTING, NODE_IPS)
    wrong = []
    for c in CASES:
        result = trace(view, packet(c))
        format_trace(result)  # no traceback in the story either
        first = result.outcomes[0]
        said = next((k for k, o in predictions(result).items() if o is first), None)
        if said != c.expect and first.certain:
            wrong.append(f"{c}: said {said} for certain\n{format_trace(result)}")
    assert not wrong, "\n".join(wrong)


def test_the_spoofed_source_rests_on_the_routes_it_does_not_have() -> None:
    """Without routes the rpfilter rule cannot be decided: the trace says what it assumed, by rule."""
    spoofed = next(c for c in CASES if c.src == "10.9.9.9")
    (o,) = trace(from_ruleset(LISTING, NODE_IPS), packet(spoofed)).outcomes
    assert not o.certain
    assert any("raw_PREROUTING" in a.location and "reverse path of 10.9.9.9" in a.what for a in o.assumptions)


def test_the_story_says_an_admin_prohibited_reject_is_no_route_to_host() -> None:
    view = from_ruleset(LISTING, NODE_IPS)
    prohibited = format_short(trace(view, packet(CASES[1])), width=200)
    assert "no route to host (REJECT with ICMP admin-prohibited)" in prohibited, prohibited
    refused = format_short(trace(view, packet(next(c for c in CASES if c.expect == "refused"))), width=200)
    assert "refused at once (REJECT: ICMP port unreachable)" in refused, refused


def test_zone_dispatch_is_told_hop_by_hop() -> None:
    """The story names the zone chains the packet went through: iifname goto, then the zone's allow."""
    result = trace(from_ruleset(LISTING, NODE_IPS), packet(CASES[0]))
    chains = [h.chain for o in result.outcomes for h in o.hops]
    assert "filter_IN_public_allow" in chains, format_trace(result)


# ---------------------------------------------------------------- against the kernel

NO_KERNEL = os.geteuid() != 0 or any(shutil.which(t) is None for t in ("ip", "nft"))


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    n = Net(PEERS, prefix=f"tl-fx{secrets.token_hex(2)}")
    try:
        n.build()
        n.run("node", "nft", "-f", "-", stdin=RULES.read_text())
        for who, ports in ECHO.items():
            n.echo(who, *ports)
        yield n
    finally:
        n.close()


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL, reason="needs root, ip and nft")
def test_the_json_fixture_is_nfts_listing_of_the_rules(net: Net) -> None:
    live = json.loads(net.run("node", "nft", "-j", "list", "ruleset"))["nftables"][1:]  # after metainfo
    assert json.loads(LISTING.read_text())["nftables"][1:] == live, "refresh: sudo bash .../source/capture.sh"


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL, reason="needs root, ip and nft")
def test_real_packets_end_as_the_live_trace_predicts(net: Net) -> None:
    view = net.view()
    assert view.nft is not None
    problems = []
    for c in CASES:
        seen = seen_by_client(net.probe(c.who, c.dst, c.dport, src=c.src))
        result = trace(view, packet(c))
        said = predictions(result)
        if seen != c.expect or seen not in said:
            problems.append(f"{c}: kernel {seen!r}, trace {sorted(said)}\n{format_trace(result)}")
    assert not problems, "\n".join(problems)


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL, reason="needs root, ip and nft")
def test_verify_the_kernels_nftables_trace_agrees_with_the_prediction(net: Net) -> None:
    """``clew trace --verify``'s halves on every case: sent again with nftables tracing from a
    throwaway namespace on a new veth (predicted for that interface: the default zone's chains), the
    kernel's decisive steps equal one outcome's. Nothing of the check is left."""
    from clew.kernel.nft_trace import send_traced
    from clew.trace.verify import compare, format_comparison

    view = net.view()
    before = net.run("node", "ip", "-o", "link")
    problems, thrown = [], []
    for c in CASES:
        sent = send_traced(net.node, src=c.src, dst=c.dst, proto="tcp", dport=c.dport, local=False)
        thrown += [sent.thrown] if sent.thrown else []
        result = trace(view, Packet(c.src, c.dst, dport=c.dport, iif=sent.iif))
        comparison = compare(result, sent.lines)
        if not comparison.agree or not sent.lines:
            problems.append(f"{c}:\n{format_trace(result)}{format_comparison(comparison, sent.via, sent.sender)}")
    assert not problems, "\n".join(problems)
    assert "clew_verify" not in net.run("node", "nft", "list", "tables")
    assert net.run("node", "ip", "-o", "link") == before
    assert thrown and not [n for n in thrown if netns.exists(n)]
