"""Does a rule match a packet? Core options and the match modules, evaluated on a `State`.

`evaluate` returns the branches a rule splits a packet into: ``[(1.0, True)]`` or
``[(1.0, False)]`` for a plain match, ``[(p, True), (1-p, False)]`` for ``statistic``. A module
the tracer does not know is assumed to match, and a warning names the rule — never a silent
guess: every such decision is also recorded on the branch as an `Assumption` (`assume`), so the
outcome that rests on it says so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from clew.netfilter.rules import Match, Option, Rule
from clew.trace.node_view import NodeView
from clew.trace.packet import Assumption
from clew.trace.state import State

PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp"}
CT_STATES = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"}

Branches = list[tuple[float, bool]]
YES: Branches = [(1.0, True)]
NO: Branches = [(1.0, False)]


class Warn:
    """Collects warnings once each (a rule met on many branches warns once)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._seen: set[str] = set()

    def __call__(self, text: str) -> None:
        if text not in self._seen:
            self._seen.add(text)
            self.items.append(text)


def assume(st: State, warn: Warn, rule: Rule, what: str, index: int | None = None) -> None:
    """Decide a match the tracer cannot know: warn once (``line N: what``) and record it on ``st``."""
    warn(f"line {rule.line}: {what}")
    st.assume(Assumption(what, rule.table, rule.chain, index, rule.line))


def _in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        return False


def _iface(name: str | None, pattern: str) -> bool:
    if name is None:
        return False
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _port_in(port: int, spec: str) -> bool:
    lo, sep, hi = spec.partition(":")
    try:
        low = int(lo) if lo else 0
        high = int(hi) if hi else (65535 if sep else low)
    except ValueError:
        return False
    return low <= port <= high


def _neg(ok: bool, opt: Option) -> bool:
    return ok != opt.negated


def core_matches(rule: Rule, st: State, warn: Warn, index: int | None = None) -> bool:
    for opt in rule.core:
        if opt.name == "-s":
            ok = _in_cidr(st.src, opt.value)
        elif opt.name == "-d":
            ok = _in_cidr(st.dst, opt.value)
        elif opt.name == "-p":
            proto = PROTOCOL_NUMBERS.get(opt.value, opt.value.lower())
            ok = proto in ("all", "0") or proto == st.proto
        elif opt.name == "-i":
            if st.iif == "?":  # arriving, but on an interface nobody said (no routes, no --iif)
                ok = False
                assume(st, warn, rule, f"-i {opt.value} in chain {rule.chain}: the input interface is unknown"
                       f" (no routes; --iif sets it): assumed {'not ' if not opt.negated else ''}to be {opt.value}",
                       index)  # fmt: skip
            else:
                ok = _iface(st.iif, opt.value)
        elif opt.name == "-o":
            if st.oif == "?" and st.hook in ("FORWARD", "OUTPUT", "POSTROUTING"):
                ok = False
                assume(st, warn, rule, f"-o {opt.value} in chain {rule.chain}: the output interface is unknown"
                       f" (no routes; --oif sets it): assumed {'not ' if not opt.negated else ''}to be {opt.value}",
                       index)  # fmt: skip
            else:
                ok = _iface(st.oif, opt.value)
        elif opt.name == "-f":
            ok = False  # a first packet is never a later fragment
        else:  # pragma: no cover - the parser only produces the options above
            continue
        if not _neg(ok, opt):
            return False
    return True


def _ports(m: Match, st: State, rule: Rule, warn: Warn, index: int | None) -> bool:
    for opt in m.options:
        if opt.name in ("--dport", "--destination-port"):
            ok = _port_in(st.dport, opt.value)
        elif opt.name in ("--sport", "--source-port"):
            ok = _port_in(st.sport, opt.value)
        elif opt.name == "--syn" or opt.name == "--tcp-flags":
            ok = st.ctstate == "NEW"  # a new connection's first packet is a SYN
        else:
            what = f"{m.module} option {opt.name} in chain {rule.chain} not evaluated: assumed to match"
            assume(st, warn, rule, what, index)
            continue
        if not _neg(ok, opt):
            return False
    return st.proto == m.module or m.module not in ("tcp", "udp", "sctp")


def _multiport(m: Match, st: State, rule: Rule, warn: Warn) -> bool:
    for opt in m.options:
        ports = opt.value.split(",")
        if opt.name in ("--dports", "--destination-ports"):
            ok = any(_port_in(st.dport, p) for p in ports)
        elif opt.name in ("--sports", "--source-ports"):
            ok = any(_port_in(st.sport, p) for p in ports)
        elif opt.name == "--ports":
            ok = any(_port_in(st.dport, p) or _port_in(st.sport, p) for p in ports)
        else:
            continue
        if not _neg(ok, opt):
            return False
    return True


def _addrtype(m: Match, st: State, view: NodeView, rule: Rule, warn: Warn, index: int | None) -> bool:
    for opt in m.options:
        if opt.name not in ("--src-type", "--dst-type"):
            if opt.name.startswith("--limit-iface"):
                assume(st, warn, rule, f"addrtype {opt.name} in chain {rule.chain} ignored", index)
            continue
        ip = st.src if opt.name == "--src-type" else st.dst
        types = set(opt.value.split(","))
        have = _addr_types(ip, view)
        if "LOCAL" in types and not view.addresses and not ipaddress.IPv4Address(ip).is_loopback:
            assume(st, warn, rule, f"addrtype {opt.name} LOCAL in chain {rule.chain}: the node's addresses are not"
                   f" known (--local-ip gives them): {ip} assumed not local", index)  # fmt: skip
        ok = bool(types & have)
        if not _neg(ok, opt):
            return False
    return True


def _addr_types(ip: str, view: NodeView) -> set[str]:
    """The kernel's address types of ``ip`` from this node's point of view (addrtype match)."""
    addr = ipaddress.IPv4Address(ip)
    if addr.is_multicast:
        return {"MULTICAST"}
    if ip == "255.255.255.255" or any(
        ipaddress.IPv4Network(f"{a.ip}/{a.prefixlen}", strict=False).broadcast_address == addr
        for a in view.addresses
        if a.prefixlen < 31
    ):
        return {"BROADCAST"}
    if view.is_local(ip):
        return {"LOCAL"}
    return {"UNICAST"}


def _mark(m: Match, st: State) -> bool:
    for opt in m.options:
        if opt.name != "--mark":
            continue
        value, _, mask = opt.value.partition("/")
        mask_int = int(mask, 0) if mask else 0xFFFFFFFF
        ok = (st.mark & mask_int) == int(value, 0)
        if not _neg(ok, opt):
            return False
    return True


def _ctstate(m: Match, st: State) -> bool:
    for opt in m.options:
        if opt.name not in ("--ctstate", "--state"):
            continue
        states = set(opt.value.split(","))
        have = {st.ctstate}
        if st.dnat is not None:
            have.add("DNAT")
        if st.snat is not None or st.masquerade:
            have.add("SNAT")
        ok = bool(states & have)
        if not _neg(ok, opt):
            return False
    return True


def _recent(m: Match, st: State) -> bool:
    name = m.get("--name")
    listed = (name.value if name else "DEFAULT") in st.recent
    hits = m.get("--hitcount")
    if hits is not None and hits.value.isdigit() and int(hits.value) > 1:
        listed = False  # the trace knows at most one earlier packet of this client
    for opt in m.options:
        if opt.name in ("--rcheck", "--update"):
            return _neg(listed, opt)
        if opt.name == "--set":
            return not opt.negated
        if opt.name == "--remove":
            return _neg(listed, opt)
    return True


def _physdev(m: Match, st: State) -> bool:
    for opt in m.options:
        if opt.name in ("--physdev-is-in", "--physdev-is-bridged"):
            ok = st.bridged
        elif opt.name == "--physdev-is-out":
            ok = st.bridged and st.hook in ("FORWARD", "POSTROUTING")
        elif opt.name in ("--physdev-in", "--physdev-out"):
            ok = False  # the bridge port a frame uses is not modelled; a name never matches
        else:
            continue
        if not _neg(ok, opt):
            return False
    return True


def _set(m: Match, st: State, view: NodeView, rule: Rule, warn: Warn, index: int | None) -> bool | None:
    for opt in m.options:
        if opt.name != "--match-set":
            continue
        if len(opt.values) < 2:
            return None
        name, flags = opt.values[0], opt.values[1].split(",")
        members = view.ipsets.get(name)
        if members is None:
            assume(st, warn, rule, f"ipset {name} in chain {rule.chain} cannot be read: assumed not to match", index)
            return False
        ok = any(member_matches(member, flags, st) for member in members)
        if not _neg(ok, opt):
            return False
    return True


def member_matches(member: str, flags: list[str], st: State) -> bool:
    """One ``ipset save`` member against the packet, dimension by dimension: ``10.96.0.10,tcp:53``
    with ``dst,dst`` (hash:ip,port), ``30080`` or ``30000-30100`` (bitmap:port), ``10.0.0.0/8``
    (hash:net), ``10.244.1.5,tcp:8080,10.244.1.5`` with ``dst,dst,src`` (hash:ip,port,ip)."""
    for part, flag in zip(member.split(","), flags, strict=False):
        part = part.split(" ")[0]
        ip = st.src if flag == "src" else st.dst
        port = st.sport if flag == "src" else st.dport
        if ":" in part or part.isdigit() or (part.replace("-", "").isdigit() and "-" in part):
            proto, _, ports = part.rpartition(":")
            if proto and proto != st.proto:
                return False
            lo, _, hi = ports.partition("-")
            if not lo.isdigit() or not (int(lo) <= port <= int(hi if hi.isdigit() else lo)):
                return False
        elif "/" in part:
            if not _in_cidr(ip, part):
                return False
        elif "-" in part and part.count(".") == 6:  # an IP range a.b.c.d-e.f.g.h
            first, _, last = part.partition("-")
            try:
                a = ipaddress.IPv4Address(ip)
                if not ipaddress.IPv4Address(first) <= a <= ipaddress.IPv4Address(last):
                    return False
            except ValueError:
                return False
        elif part != ip:
            return False
    return True


ALWAYS = {"comment", "nfacct", "limit", "pkttype", "length", "ttl", "tos", "dscp"}
RATE = {"hashlimit", "connlimit"}  # a first packet is within any limit: "upto" matches, "above" does not


def _rpfilter(m: Match, st: State, view: NodeView, rule: Rule, warn: Warn, index: int | None) -> bool:
    """``-m rpfilter``: would the reply to the source leave by the interface the packet came in on?

    Decided from the routes (strict: the route back must use the input interface; ``--loose``:
    any route back will do; ``--accept-local``: a source of this node passes; ``--invert``
    negates). Without routes it cannot be known: assumed to pass, and said."""
    loose = m.get("--loose") is not None
    invert = m.get("--invert") is not None
    if st.iif is None:  # locally generated: rpfilter is for PREROUTING; a local source always passes
        ok = True
    elif not view.routes:
        assume(st, warn, rule, f"rpfilter in chain {rule.chain}: routes not given: the reverse path of {st.src} is"
               f" assumed valid", index)  # fmt: skip
        ok = True
    elif view.is_local(st.src):
        ok = m.get("--accept-local") is not None
    else:
        from clew.trace.routes import lookup

        back = lookup(view, st.src)
        usable = back is not None and back.type == "unicast"
        ok = usable and (loose or back is None or back.dev == st.iif or st.iif == "?")
        if usable and not loose and st.iif == "?":
            assume(st, warn, rule, f"rpfilter in chain {rule.chain}: the input interface is unknown: assumed to be"
                   f" {back.dev if back else '?'}, the reverse path's", index)  # fmt: skip
    return ok != invert


def evaluate(rule: Rule, st: State, view: NodeView, warn: Warn, index: int | None = None) -> Branches:
    """The branches this rule splits ``st`` into (probability, matched).

    A match that cannot be decided is decided one way and recorded on ``st`` (`assume`); ``index``
    is the rule's position in its chain, for the assumption's location."""
    if not core_matches(rule, st, warn, index):
        return NO
    split: float | None = None
    for m in rule.matches:
        mod = m.module
        ok: bool | None
        if mod in ALWAYS:
            if mod not in ("comment", "nfacct"):
                assume(st, warn, rule, f"{mod} match in chain {rule.chain}: assumed to match (a first packet)", index)
            continue
        if mod in RATE:
            above = any(o.name in ("--hashlimit-above", "--connlimit-above") for o in m.options)
            assume(st, warn, rule, f"{mod} match in chain {rule.chain}: a first packet is assumed within the limit"
                   f" (so it {'does not match' if above else 'matches'})", index)  # fmt: skip
            if above:
                return NO
            continue
        if mod in ("tcp", "udp", "sctp", "udplite"):
            ok = _ports(m, st, rule, warn, index)
        elif mod == "multiport":
            ok = _multiport(m, st, rule, warn)
        elif mod == "addrtype":
            ok = _addrtype(m, st, view, rule, warn, index)
        elif mod == "mark":
            ok = _mark(m, st)
        elif mod in ("conntrack", "state"):
            ok = _ctstate(m, st)
        elif mod == "recent":
            ok = _recent(m, st)
        elif mod == "physdev":
            ok = _physdev(m, st)
        elif mod == "set":
            ok = _set(m, st, view, rule, warn, index)
        elif mod == "rpfilter":
            ok = _rpfilter(m, st, view, rule, warn, index)
        elif mod == "icmp":
            ok = st.proto == "icmp"
        elif mod == "statistic":
            split = _statistic(m, rule, warn)
            continue
        else:
            assume(st, warn, rule, f"unrecognised match -m {mod} in chain {rule.chain}: assumed to match", index)
            continue
        if ok is False:
            return NO
    if split is None:
        return YES
    return [(split, True), (1.0 - split, False)]


def _statistic(m: Match, rule: Rule, warn: Warn) -> float:
    mode = m.get("--mode")
    if mode is not None and mode.value == "nth":
        every = m.get("--every")
        n = int(every.value) if every else 1
        warn(f"line {rule.line}: statistic --mode nth in chain {rule.chain}: counted as probability 1/{n}")
        p = 1.0 / n
    else:
        prob = m.get("--probability")
        p = float(prob.value) if prob else 1.0
        if prob is not None and prob.negated:
            p = 1.0 - p
    return p


Evaluator = Callable[[Rule, State, NodeView, Warn], Branches]


def _packet_side(module: str, st: State) -> str:
    """What the packet has that a module looks at, for "did not match" sentences."""
    if module == "mark":
        return f"mark {st.mark:#x}"
    if module in ("conntrack", "state"):
        return f"ctstate {st.ctstate}"
    if module in ("tcp", "udp", "sctp", "multiport"):
        return f"{st.proto} {st.sport} → {st.dport}"
    if module in ("set", "addrtype", "rpfilter"):
        return f"{st.src} → {st.dst}"
    if module == "physdev":
        return "bridged" if st.bridged else "not bridged"
    return f"{st.src} → {st.dst}"


def why_not(rule: Rule, st: State, view: NodeView) -> str:
    """The first condition of ``rule`` that ``st`` fails, with what the packet has instead
    ("-m mark --mark 0x4000/0x4000 [the packet: mark 0x0]"). Evaluated on a copy, silently."""
    from dataclasses import replace

    quiet = Warn()
    values = {"-s": st.src, "-d": st.dst, "-p": st.proto, "-i": st.iif, "-o": st.oif}
    for opt in rule.core:
        if not core_matches(replace(rule, core=(opt,)), st.fork(st.probability), quiet):
            neg = "! " if opt.negated else ""
            return f"{neg}{opt.name} {opt.value} [the packet: {values.get(opt.name) or '?'}]"
    for m in rule.matches:
        if evaluate(replace(rule, core=(), matches=(m,)), st.fork(st.probability), view, quiet) == NO:
            opts = " ".join(("! " if o.negated else "") + " ".join((o.name, *o.values)) for o in m.options)
            return f"-m {m.module} {opts} [the packet: {_packet_side(m.module, st)}]"
    return "its conditions"
