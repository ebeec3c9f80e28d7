"""The rule model shared by the renderers' tests, the iptables-save parser and the tracer.

A rule is its core options (``-s -d -p -i -o -f``), an ordered list of match modules each with
its options, and a target with its options. Options keep their negation (``! --mark …``) and
their values as written; `canonical` gives a form in which a rule as clew rendered it and the
same rule as ``iptables-save`` prints it back compare equal (iptables-save adds ``/32``, moves
core options first, spells ``MARK --or-mark`` as ``--set-xmark``, adds module defaults, and
prints probabilities with 11 decimals).
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass, field

CORE_OPTIONS = {
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-p": "-p", "--protocol": "-p",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
    "-f": "-f", "--fragment": "-f",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Option:
    """``[!] --name value…``; ``values`` is empty for a flag like ``--rcheck``."""

    name: str
    values: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""


@dataclass(frozen=True, slots=True)
class Match:
    """One ``-m MODULE`` with its options, in the order written."""

    module: str
    options: tuple[Option, ...] = ()

    def get(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True, slots=True)
class Target:
    """``-j NAME`` (or ``-g NAME`` when ``goto``) with the target's options."""

    name: str
    options: tuple[Option, ...] = ()
    goto: bool = False

    def get(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of one chain. ``line`` is its line in the text it was parsed from (1-based)."""

    table: str
    chain: str
    core: tuple[Option, ...] = ()
    matches: tuple[Match, ...] = ()
    target: Target | None = None
    line: int = 0
    text: str = field(default="", compare=False)

    def core_option(self, name: str) -> Option | None:
        return next((o for o in self.core if o.name == name), None)

    def match(self, module: str) -> Match | None:
        return next((m for m in self.matches if m.module == module), None)

    @property
    def comment(self) -> str | None:
        m = self.match("comment")
        opt = m.get("--comment") if m else None
        return opt.value if opt else None


@dataclass(slots=True)
class Chain:
    """A chain: its policy (built-in chains only; None for user chains) and rules in order."""

    name: str
    policy: str | None = None
    rules: list[Rule] = field(default_factory=list)


@dataclass(slots=True)
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)


@dataclass(slots=True)
class Ruleset:
    """Parsed ``iptables-save`` output (or restore input): tables by name, plus parse warnings."""

    tables: dict[str, Table] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t else None


# ---------------------------------------------------------------------------- canonical form

# Matches iptables loads by itself for ``-p PROTO --dport …``, and protocol numbers by name.
PROTO_MODULES = frozenset({"tcp", "udp", "sctp", "dccp", "udplite", "icmp"})
PROTO_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "132": "sctp", "33": "dccp", "136": "udplite"}

_CORE_ORDER = {"-s": 0, "-d": 1, "-i": 2, "-o": 3, "-p": 4, "-f": 5}
_PORT_OPTIONS = {
    "--dport": "--dport", "--destination-port": "--dport", "--sport": "--sport", "--source-port": "--sport",
}  # fmt: skip
_MULTIPORT_OPTIONS = {
    "--dports": "--dports", "--destination-ports": "--dports", "--sports": "--sports", "--source-ports": "--sports",
    "--ports": "--ports",
}  # fmt: skip
_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")
_CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
_ICMP_TYPES = {
    "echo-reply": "0", "pong": "0", "destination-unreachable": "3", "network-unreachable": "3/0",
    "host-unreachable": "3/1", "protocol-unreachable": "3/2", "port-unreachable": "3/3",
    "fragmentation-needed": "3/4", "source-route-failed": "3/5", "network-unknown": "3/6", "host-unknown": "3/7",
    "network-prohibited": "3/9", "host-prohibited": "3/10", "TOS-network-unreachable": "3/11",
    "TOS-host-unreachable": "3/12", "communication-prohibited": "3/13", "host-precedence-violation": "3/14",
    "precedence-cutoff": "3/15", "source-quench": "4", "redirect": "5", "network-redirect": "5/0",
    "host-redirect": "5/1", "TOS-network-redirect": "5/2", "TOS-host-redirect": "5/3", "echo-request": "8",
    "ping": "8", "router-advertisement": "9", "router-solicitation": "10", "time-exceeded": "11",
    "ttl-exceeded": "11", "ttl-zero-during-transit": "11/0", "ttl-zero-during-reassembly": "11/1",
    "parameter-problem": "12", "ip-header-bad": "12/0", "required-option-missing": "12/1",
    "timestamp-request": "13", "timestamp-reply": "14", "address-mask-request": "17", "address-mask-reply": "18",
}  # fmt: skip
_REJECT_WITH = {
    "net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
    "proto-unreach": "icmp-proto-unreachable", "port-unreach": "icmp-port-unreachable",
    "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited", "admin-prohib": "icmp-admin-prohibited",
    "tcp-rst": "tcp-reset",
}  # fmt: skip
_ALL_ONES = frozenset({"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"})
_U32 = 0xFFFFFFFF

COption = tuple[str, tuple[str, ...], bool]


@functools.lru_cache(maxsize=65536)
def _address(value: str) -> str:
    """``10.0.0.1`` → ``10.0.0.1/32``, ``10.1.2.3/24`` → ``10.1.2.0/24``, a netmask → a prefix."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _int(value: str) -> int | str:
    try:
        return int(value, 0)
    except ValueError:
        return value


def _value_mask(value: str) -> str:
    """``0x4000/0x4000`` and ``16`` (mask all ones) → one spelling: ``0x4000/0x4000``, ``0x10/0xffffffff``."""
    v, _, m = value.partition("/")
    vi, mi = _int(v), _int(m) if m else _U32
    return f"0x{vi:x}/0x{mi:x}" if isinstance(vi, int) and isinstance(mi, int) else value


def _port(value: str) -> str:
    lo, sep, hi = value.partition(":")
    if not sep:
        return lo
    lo, hi = lo or "0", hi or "65535"
    return lo if lo == hi else f"{lo}:{hi}"


def _ordered(value: str, order: tuple[str, ...]) -> str:
    """A comma set in iptables' print order (``ESTABLISHED,RELATED`` → ``RELATED,ESTABLISHED``)."""
    items = {"ALL": set(order)}.get(value.upper(), set(value.upper().split(",")) - {"NONE"})
    known = [x for x in order if x in items]
    return ",".join(known + sorted(items - set(order))) or "NONE"


def _match_option(module: str, o: Option) -> COption:
    name, values = o.name, o.values
    if module in PROTO_MODULES and name in _PORT_OPTIONS:
        name, values = _PORT_OPTIONS[name], tuple(_port(v) for v in values)
    elif module == "tcp" and name == "--syn":
        name, values = "--tcp-flags", ("FIN,SYN,RST,ACK", "SYN")
    elif module == "tcp" and name == "--tcp-flags":
        values = tuple(_ordered(v, _TCP_FLAGS) for v in values)
    elif module == "multiport" and name in _MULTIPORT_OPTIONS:
        name, values = _MULTIPORT_OPTIONS[name], tuple(",".join(_port(p) for p in v.split(",")) for v in values)
    elif module == "icmp" and name == "--icmp-type":
        values = tuple(_ICMP_TYPES.get(v, v) for v in values)
    elif name in ("--ctstate", "--state"):
        values = tuple(_ordered(v, _CT_STATES) for v in values)
    elif module in ("mark", "connmark") and name == "--mark":
        values = tuple(_value_mask(v) for v in values)
    elif module == "statistic" and name == "--probability":
        values = tuple(_probability(v) for v in values)
    elif module == "recent" and name == "--mask":
        values = tuple("ALL" if v.lower() in _ALL_ONES else v for v in values)
    return name, values, o.negated


def _probability(value: str) -> str:
    """The kernel keeps ``round(p * 2**31)``: ``0.3333333333`` and ``0.33333333349`` are one rule."""
    try:
        return str(math.floor(float(value) * 0x80000000 + 0.5))
    except ValueError:
        return value


def _canonical_match(m: Match) -> tuple[str, tuple[COption, ...]]:
    opts = [_match_option(m.module, o) for o in m.options]
    if m.module == "recent":  # defaults iptables-save prints
        names = {o[0] for o in opts}
        if "--name" not in names:
            opts.append(("--name", ("DEFAULT",), False))
        if "--mask" not in names:
            opts.append(("--mask", ("ALL",), False))
        if "--rdest" not in names and "--rsource" not in names:
            opts.append(("--rsource", (), False))
    return m.module, tuple(sorted(opts))


def _mark_target(options: tuple[Option, ...]) -> tuple[COption, ...]:
    """Every ``-j MARK`` spelling as ``--set-xmark XOR/MASK`` (libxt_MARK revision 2)."""
    out: list[COption] = []
    for o in options:
        v, _, m = o.value.partition("/")
        vi, mi = _int(v), _int(m) if m else _U32
        if not isinstance(vi, int) or not isinstance(mi, int):
            out.append((o.name, o.values, o.negated))
            continue
        xor, mask = {
            "--set-xmark": (vi, mi),
            "--set-mark": (vi, vi | mi),
            "--and-mark": (0, ~vi & _U32),
            "--or-mark": (vi, vi),
            "--xor-mark": (vi, 0),
        }.get(o.name, (-1, -1))
        out.append(("--set-xmark", (f"0x{xor:x}/0x{mask:x}",), False) if xor >= 0 else (o.name, o.values, o.negated))
    return tuple(sorted(out))


def _canonical_target(t: Target | None) -> tuple[str, bool, tuple[COption, ...]] | None:
    if t is None:
        return None
    if t.name == "MARK":
        return t.name, t.goto, _mark_target(t.options)
    opts = [(o.name, o.values, o.negated) for o in t.options]
    if t.name == "REJECT":
        opts = [(n, tuple(_REJECT_WITH.get(v, v) for v in vs), neg) for n, vs, neg in opts]
        if not any(n == "--reject-with" for n, _, _ in opts):
            opts.append(("--reject-with", ("icmp-port-unreachable",), False))
    return t.name, t.goto, tuple(sorted(opts))


def canonical(rule: Rule) -> tuple[object, ...]:
    """A hashable normal form of ``rule``: equal for a rule as clew renders it and as
    ``iptables-save`` (1.8.9) prints it back. Core options sorted (``-s -d -i -o -p -f``),
    addresses as networks (``/32`` added, host bits cleared), protocol numbers as names and
    ``-p all`` dropped; match order kept, options within a match sorted, module defaults added
    (``recent``), values normalised (ports, TCP flags, conntrack states, ICMP type names, marks as
    ``0xV/0xM``, probabilities as the kernel's ``round(p * 2**31)``); ``MARK`` targets as
    ``--set-xmark``, ``REJECT``'s default ``--reject-with``. Line and text are left out."""
    core: list[COption] = []
    for o in rule.core:
        values = o.values
        if o.name in ("-s", "-d"):
            values = tuple(_address(v) for v in values)
        elif o.name == "-p":
            proto = PROTO_NAMES.get(o.value, o.value.lower())
            if proto in ("all", "0") and not o.negated:
                continue
            values = (proto,)
        core.append((o.name, values, o.negated))
    core.sort(key=lambda c: (_CORE_ORDER.get(c[0], 9), c))
    return (
        rule.table,
        rule.chain,
        tuple(core),
        tuple(_canonical_match(m) for m in rule.matches),
        _canonical_target(rule.target),
    )
