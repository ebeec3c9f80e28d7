"""What a trace takes and what it returns: a packet, the hops it made, and its outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a connection unless ``ctstate`` says otherwise.

    ``iif`` None means "infer it": a source that is one of the node's addresses is locally
    generated (OUTPUT); any other source arrives on the interface its return route uses.
    ``oif`` None means "from the routes"; without routes, ``-o`` matches are then assumptions.
    """

    src: str
    dst: str
    proto: str = "tcp"
    dport: int = 80
    sport: int = 40000
    iif: str | None = None
    ctstate: str = "NEW"
    oif: str | None = None  # the interface it leaves by, when routes are not given (--oif)

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "proto": self.proto,
            "sport": self.sport,
            "dport": self.dport,
            "iif": self.iif,
            "oif": self.oif,
            "ctstate": self.ctstate,
        }


@dataclass(frozen=True, slots=True)
class Assumption:
    """What a trace took for granted at one place because it could not know it.

    The shared model of every walker (iptables here, nftables in ``walk_nft``): a match the
    tracer cannot decide from what it was given — an unknown module or expression, a set whose
    members are unknown, an output interface without routes, LOCAL without the node's addresses —
    is decided one way and recorded here, on the branch that rests on it. An outcome carrying any
    is never told as a plain certainty (`story`), and JSON lists them per outcome.

    ``table``/``chain``/``index`` locate a rule (``index`` 0-based in its chain, None when not
    known); ``line`` is its line in ``origin`` (the file it was read from) when it has one. For a
    fact that is no rule's (routes not given), ``table`` and ``chain`` are empty and ``origin``
    says what is missing.
    """

    what: str  # what was assumed, in words: "ipset blocklist (members unknown) assumed not to match"
    table: str = ""  # "filter", or an nft table as "inet fw"
    chain: str = ""
    index: int | None = None
    line: int = 0
    origin: str = ""

    @property
    def location(self) -> str:
        """``filter/INPUT rule 3, line 17`` / ``inet fw/forward rule 2`` / ``routes``."""
        parts = []
        if self.table or self.chain:
            where = f"{self.table}/{self.chain}" if self.table else self.chain
            parts.append(where + (f" rule {self.index + 1}" if self.index is not None else ""))
        if self.line:
            parts.append(f"{self.origin}:{self.line}" if self.origin else f"line {self.line}")
        elif self.origin:
            parts.append(self.origin)
        return ", ".join(parts) or "?"

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "table": self.table or None,
            "chain": self.chain or None,
            "index": self.index,
            "line": self.line or None,
            "what": self.what,
        }


@dataclass(frozen=True, slots=True)
class Hop:
    """One step that mattered: a rule that matched and acted, a policy, or a routing decision."""

    hook: str
    table: str
    chain: str
    rule: str  # the rule's text, "policy ACCEPT", or a routing sentence
    action: str  # what it did, in words ("jump KUBE-SVC-…", "DNAT to 10.244.1.5:8080", "p=0.3333")
    line: int = 0
    quiet: bool = False  # a chain passed through without effect: told only when explaining a drop

    def to_json(self) -> dict[str, Any]:
        return {"hook": self.hook, "table": self.table, "chain": self.chain, "rule": self.rule, "action": self.action}


@dataclass(frozen=True, slots=True)
class Egress:
    """Where the packet leaves the node (or that it stays, or has no way out)."""

    kind: str  # local | bridge | vxlan | route | default | unreachable | blackhole
    dev: str | None = None
    via: str | None = None
    detail: str = ""
    remote: str | None = None  # vxlan: the remote VTEP's underlay IP
    node: str | None = None  # the remote node's name, when known
    vni: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "dev": self.dev, "via": self.via, "detail": self.detail}
        if self.kind == "vxlan":
            doc.update({"remote": self.remote, "node": self.node, "vni": self.vni})
        elif self.node is not None:  # a BGP-learned route: the node that announced the subnet
            doc["node"] = self.node
        return doc


@dataclass(slots=True)
class Outcome:
    probability: float
    verdict: str  # ACCEPT | DROP | REJECT
    dnat: str | None  # "IP:PORT" when the destination was rewritten
    masquerade: bool
    service: str | None  # "ns/name:port" from kube-proxy's comments
    egress: Egress | None
    hops: list[Hop]
    reason: str
    source_seen: str | None = None  # the source address the destination will see
    masquerade_reason: str | None = None
    masquerade_skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    affinity: tuple[str, ...] = ()  # recent lists (ClientIP affinity) this outcome adds the client to
    assumptions: list[Assumption] = field(default_factory=list)  # what this outcome rests on (empty: certain)
    not_accepted_by: list[str] = field(default_factory=list)  # DROP/REJECT: ACCEPT rules missed, and why

    @property
    def certain(self) -> bool:
        return not self.assumptions

    def add_assumptions(self, more: list[Assumption] | tuple[Assumption, ...]) -> None:
        """Merge another branch's assumptions in (same outcome reached another way), once each."""
        for a in more:
            if a not in self.assumptions:
                self.assumptions.append(a)

    def key(self) -> tuple[object, ...]:
        """Outcomes that end the same way are one outcome (their probabilities add up)."""
        egress = (self.egress.kind, self.egress.dev, self.egress.via) if self.egress else None
        return (self.verdict, self.dnat, self.masquerade, self.service, egress, self.source_seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "probability": round(self.probability, 10),
            "verdict": self.verdict,
            "dnat": self.dnat,
            "masquerade": self.masquerade,
            "service": self.service,
            "egress": self.egress.to_json() if self.egress else None,
            "hops": [h.to_json() for h in self.hops],
            "reason": self.reason,
            "source_seen": self.source_seen,
            "masquerade_reason": self.masquerade_reason,
            "masquerade_skipped": self.masquerade_skipped,
            "notes": self.notes,
            "not_accepted_by": self.not_accepted_by,
            "certain": self.certain,
            "assumptions": [a.to_json() for a in self.assumptions],
        }


@dataclass(slots=True)
class TraceResult:
    packet: Packet
    entry: str  # how the packet entered: "arrives on eth0" / "sent by a local process"
    outcomes: list[Outcome]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "packet": self.packet.to_json(),
            "entry": self.entry,
            "outcomes": [o.to_json() for o in self.outcomes],
            "warnings": self.warnings,
        }
