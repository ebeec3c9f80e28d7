"""Where a packet ends in native nftables base chains on one hook: the nft twin of `probe`.

iptables-nft's own tables (``ip filter`` and the like) are read through ``iptables-save`` by
`probe`; this module reads every *other* table from ``nft -j list ruleset`` (firewalld's ``inet
firewalld``, a hand-made ``inet filter``, …). In nftables a packet must pass every base chain on
its hook: an accept ends one chain only, a drop anywhere is final. So each base chain is walked
on its own, and any DROP is the packet's end.

Conservative like `probe`: a rule whose expressions are not all understood (sets by name, maps,
marks by expression, …) is passed over and listed as not evaluated; DROP comes only from a rule
that surely matches or from the chain's policy.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from clew.doctor.probe import Packet

# tables iptables-nft writes (read through iptables-save already)
XTABLES = {"filter", "nat", "mangle", "raw", "security"}
_IGNORED = {"counter", "log", "limit", "notrack", "comment"}


@dataclass(frozen=True, slots=True)
class BaseChain:
    family: str
    table: str
    name: str
    hook: str
    prio: int
    policy: str
    devices: tuple[str, ...] = ()  # netdev / inet ingress: the devices the chain is attached to

    @property
    def label(self) -> str:
        return f"table {self.family} {self.table} chain {self.name}"


@dataclass(slots=True)
class NftVerdict:
    verdict: str  # ACCEPT | DROP
    by: str
    uncertain: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Ruleset:
    """The parts of ``nft -j list ruleset`` the walk needs."""

    chains: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    tables: set[tuple[str, str]] = field(default_factory=set)  # (family, name)
    sets: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # sets and maps, with elements

    def base_chains(self, hook: str, families: tuple[str, ...] = ("ip", "inet")) -> list[BaseChain]:
        """Base chains on ``hook`` of ``families`` outside iptables-nft's tables, in priority order
        (routed IPv4 crosses ip and inet tables; bridged frames the bridge family's; a device's
        ingress the netdev and inet families' ``ingress`` chains)."""
        found = []
        for (family, table, name), c in self.chains.items():
            if c.get("hook") != hook or (family in ("ip", "ip6") and table in XTABLES):
                continue
            if family not in families:
                continue
            prio = c.get("prio", 0)
            policy = str(c.get("policy", "accept"))
            dev = c.get("dev", ())
            devices = (dev,) if isinstance(dev, str) else tuple(d for d in dev if isinstance(d, str))
            found.append(BaseChain(family, table, name, hook, prio if isinstance(prio, int) else 0, policy, devices))
        return sorted(found, key=lambda b: (b.prio, b.family, b.table, b.name))


def ruleset_from_json(doc: dict[str, Any]) -> Ruleset:
    rs = Ruleset()
    for item in doc.get("nftables", []):
        if "table" in item:
            rs.tables.add((item["table"]["family"], item["table"]["name"]))
        elif "set" in item or "map" in item:
            x = item.get("set") or item["map"]
            rs.sets[(x["family"], x["table"], x["name"])] = x
        elif "chain" in item:
            c = item["chain"]
            rs.chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            rs.rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    return rs


_TABLE = re.compile(r"^table (\w+) (\S+) \{")
_CHAIN = re.compile(r"^\s+chain (\S+) \{")
_DEVICES = re.compile(r'hook ingress (?:device "?([^"\s;]+)"?|devices = \{ ([^}]*) \})')


def fill_devices(rs: Ruleset, text: str) -> None:
    """Ingress chains' devices from ``nft list ruleset``'s text: nft 1.0.6's JSON leaves them out."""
    table: tuple[str, str] | None = None
    chain = None
    for line in text.splitlines():
        if m := _TABLE.match(line):
            table, chain = (m.group(1), m.group(2)), None
        elif m := _CHAIN.match(line):
            chain = m.group(1)
        elif table is not None and chain is not None and (m := _DEVICES.search(line)):
            c = rs.chains.get((table[0], table[1], chain))
            if c is not None and not c.get("dev"):
                names = [m.group(1)] if m.group(1) else [d.strip().strip('"') for d in m.group(2).split(",")]
                c["dev"] = [n for n in names if n]


def _in(value: Any, ip: str) -> bool | None:
    """Is ``ip`` in an nft right-hand side (address, prefix, range, anonymous set)?"""
    if isinstance(value, dict) and "set" in value:
        hits = [_in(v, ip) for v in value["set"]]
        if any(h is True for h in hits):
            return True
        return None if any(h is None for h in hits) else False
    try:
        addr = ipaddress.IPv4Address(ip)
        if isinstance(value, str):
            return addr in ipaddress.IPv4Network(value, strict=False)
        if isinstance(value, dict) and "prefix" in value:
            p = value["prefix"]
            return addr in ipaddress.IPv4Network(f"{p['addr']}/{p['len']}", strict=False)
        if isinstance(value, dict) and "range" in value:
            lo, hi = (ipaddress.IPv4Address(x) for x in value["range"])
            return lo <= addr <= hi
    except (ValueError, KeyError, TypeError):
        return None
    return None


def _names(value: Any) -> list[Any] | None:
    if isinstance(value, dict) and "set" in value:
        return list(value["set"])
    if isinstance(value, list):
        return list(value)
    if isinstance(value, (str, int)):
        return [value]
    return None


def _iface(value: Any, dev: str | None) -> bool | None:
    names = _names(value)
    if names is None or dev is None or not all(isinstance(n, str) for n in names):
        return None
    return any(dev.startswith(n[:-1]) if n.endswith("*") else dev == n for n in names)


def _match(m: dict[str, Any], p: Packet) -> bool | None:
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    hit: bool | None = None
    if isinstance(left, dict) and "payload" in left:
        pl = left["payload"]
        proto, fld = pl.get("protocol"), pl.get("field")
        if proto == "ip" and fld in ("saddr", "daddr"):
            hit = _in(right, p.src if fld == "saddr" else p.dst)
        elif proto in ("tcp", "udp") and fld == "dport":
            ports = _names(right)
            if proto != p.proto:
                hit = False  # the payload match implies the protocol
            elif ports is not None and all(isinstance(x, int) for x in ports):
                hit = p.dport in ports
    elif isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key in ("iifname", "oifname"):
            hit = _iface(right, p.iif if key == "iifname" else p.oif)
        elif key == "l4proto":
            protos = _names(right)
            hit = None if protos is None else p.proto in protos
        elif key == "nfproto":
            protos = _names(right)
            hit = None if protos is None else "ipv4" in protos
    elif isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
        states = _names(right)
        hit = None if states is None else p.state.lower() in [str(s).lower() for s in states]
    elif _ct_status(left) and p.state == "NEW":
        # a new packet from outside carries no conntrack status bit (dnat, snat, …) yet
        bits = _names(right)
        if op == "!" and bits is not None:
            return True  # "ct status ! dnat": none of the bits set
        if op == "in" and bits is not None:
            return False
        if isinstance(left, dict) and "&" in left and right == 0 and op == "==":
            return True  # "ct status & dnat == 0"
    if hit is None:
        return None
    if op in ("==", "in"):
        return hit
    if op == "!=":
        return not hit
    return None


def _ct_status(left: Any) -> bool:
    """``ct status`` alone, or ``ct status & BITS``."""
    if isinstance(left, dict) and "&" in left and isinstance(left["&"], list) and left["&"]:
        left = left["&"][0]
    return isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "status"


def _rule_label(r: dict[str, Any]) -> str:
    return f"table {r['family']} {r['table']} chain {r['chain']} handle {r.get('handle', '?')}"


def walk(rs: Ruleset, base: BaseChain, p: Packet) -> NftVerdict:
    """The verdict of one base chain for ``p``."""
    uncertain: list[str] = []

    def visit(chain: str, depth: int) -> NftVerdict | None:
        if depth > 16:
            return None
        for r in rs.rules.get((base.family, base.table, chain), []):
            certain: bool | None = True
            outcome: tuple[str, str | None] | None = None  # (verdict, jump target)
            for e in r.get("expr", []):
                (kind, body), *_ = e.items()
                if kind == "match":
                    hit = _match(body, p)
                    if hit is False:
                        certain = False
                        break
                    if hit is None:
                        certain = None
                elif kind in _IGNORED:
                    continue
                elif kind in ("accept", "drop", "reject", "return"):
                    outcome = (kind, None)
                    break
                elif kind in ("jump", "goto"):
                    outcome = (kind, body.get("target"))
                    break
                else:
                    certain = None  # an expression not modelled (mark set, nat, lookup by name…)
            if certain is False or outcome is None:
                if certain is None and outcome is None:
                    uncertain.append(_rule_label(r))
                continue
            if certain is None:
                uncertain.append(_rule_label(r))
                continue
            kind, target = outcome
            if kind == "accept":
                return NftVerdict("ACCEPT", _rule_label(r), uncertain)
            if kind in ("drop", "reject"):
                return NftVerdict("DROP", _rule_label(r), uncertain)
            if kind == "return":
                return None
            found = visit(str(target), depth + 1)
            if found is not None or kind == "goto":
                return found
        return None

    found = visit(base.name, 0)
    if found is not None:
        return found
    verdict = "DROP" if base.policy == "drop" else "ACCEPT"
    return NftVerdict(verdict, f"policy {base.policy} of {base.label}", uncertain)
