"""Walk nftables chains (``nft -j list ruleset``) the way the kernel runs them, on a `State`.

At each hook the kernel runs every base chain of every table (families ``ip`` and ``inet`` for
IPv4), and the iptables tables, in priority order (`hook_stages`). nat chains are special: the
NAT core runs all of them at its own hook priority (-100 before routing, 100 after), in their
priority order, for a connection's first packet only, and stops at the first that maps the
connection. iptables-nft's tables (``ip filter``, ``ip nat``… with chains named INPUT, FORWARD…)
are nftables tables too: when the iptables view already holds a table of that name it is walked
once, through that view, and its nft copy is skipped.

A rule's statements run left to right. Matches may split the packet (``numgen`` compared with a
number, a ``vmap`` or a data ``map`` keyed by ``numgen``: one branch per value, each with its
share); nat statements end the base chain with accept, as the kernel's do; ``limit`` and
``quota`` are assumed not limiting; anything the tracer cannot decide is named with its
location and recorded as an assumption on the branch (`assume`), never silently guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from clew.netfilter.nft_json import NftChain, NftRule, NftRuleset, NftSet
from clew.netfilter.nft_text import rule_text, statement
from clew.netfilter.rules import Ruleset
from clew.trace.matches import Warn, _addr_types
from clew.trace.nft_values import (
    ABSENT,
    PROTO,
    UNKNOWN,
    atom,
    concat_atom,
    contains,
    exact_key,
    int_ip,
    ip_int,
    kind_of,
    type_kind,
)
from clew.trace.node_view import NodeView
from clew.trace.packet import Assumption, Hop
from clew.trace.routes import lookup
from clew.trace.state import State

if TYPE_CHECKING:
    from clew.trace.walk_iptables import Walker

NFT_HOOK = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
            "POSTROUTING": "postrouting"}  # fmt: skip
IPT_PRIO = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
NAT_PRIO = {"PREROUTING": -100, "OUTPUT": -100, "POSTROUTING": 100, "INPUT": 100}
IPT_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
MAX_DEPTH = 64
_KUBE_CHAIN = re.compile(r"^(?:service|external|local|endpoint|firewall)-[A-Z0-9]{8}-([^/]+)/([^/]+)/[a-z]+/([^_/]*)")


class Dist(list[tuple[float, Any]]):
    """A random value: (probability, value) pairs (``numgen random``)."""


@dataclass(frozen=True, slots=True)
class MapHit:
    """What a data map gave for a key: the data (an IP string, or (IP, port)) and the element's
    comment (clew's layout names the Service port there)."""

    data: Any
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a hook: an iptables table, an nft base chain, or the NAT core's group."""

    prio: int
    kind: str  # ipt | nft | nat
    table: str = ""
    chain: NftChain | None = None
    members: tuple[tuple[int, str, NftChain | None], ...] = ()  # nat: (prio, ipt table or "", chain)


def assume(st: State, warn: Warn, rule: NftRule, what: str) -> None:
    """Decide what the tracer cannot know: warn once (naming the rule) and record the
    assumption on this branch (`Assumption`: its outcome is then never told as certain)."""
    warn(f"{rule.where}: {what}")
    st.assume(Assumption(what, f"{rule.family} {rule.table}", rule.chain, rule.position - 1))


def mirrored_tables(view: NodeView) -> set[tuple[str, str]]:
    """iptables-nft tables the iptables view already shows (walked once, as iptables)."""
    nft = view.nft
    if nft is None:
        return set()
    cached = nft.cache.get(0)
    if cached is not None and cached[0] is view.ruleset:
        return cached[1]  # type: ignore[no-any-return]
    out = set()
    seen = set(view.ruleset.tables) | set(view.other_backend.tables if view.other_backend else ())
    for (family, name), table in nft.tables.items():
        if family != "ip" or name not in seen:
            continue
        base = [c for c in table.chains.values() if c.is_base]
        if base and all(c.name in IPT_CHAINS for c in base):
            out.add((family, name))
    nft.cache[0] = (view.ruleset, out)
    return out


def hook_stages(view: NodeView, hook: str, ipt_tables: Sequence[tuple[str, Ruleset]]) -> list[Stage]:
    """Everything registered on ``hook``, in the order the kernel runs it. ``ipt_tables`` are the
    iptables tables as the iptables walker labels them (``filter``, or ``legacy filter`` for the
    other backend's) with the ruleset holding each."""
    stages: list[Stage] = []
    nat: list[tuple[int, str, NftChain | None]] = []
    for label, rs in ipt_tables:
        table = label.split()[-1]
        if rs.chain(table, hook) is None:
            continue
        if table == "nat":
            nat.append((NAT_PRIO[hook], label, None))
        else:
            stages.append(Stage(IPT_PRIO[table], "ipt", table=label))
    if view.nft is not None:
        skip = mirrored_tables(view)
        want = NFT_HOOK[hook]
        for c in view.nft.base_chains():
            if c.hook != want or c.family not in ("ip", "inet") or (c.family, c.table) in skip:
                continue
            if c.type == "nat":
                nat.append((c.prio, "", c))
            else:
                stages.append(Stage(c.prio, "nft", chain=c))
    if nat:
        nat.sort(key=lambda m: m[0])  # stable: iptables' nat (and the other backend's) first on a tie
        stages.append(Stage(NAT_PRIO[hook], "nat", members=tuple(nat)))
    stages.sort(key=lambda s: (s.prio, 0 if s.kind != "nft" else 1))  # stable: iptables first on a tie
    return stages


def run_stages(
    walker: Walker, hook: str, st: State, ipt_tables: Sequence[tuple[str, Ruleset]]
) -> list[tuple[State, str]]:
    """The branches after ``hook``: ("ACCEPT", go on) or ("DROP"/"REJECT", ended here)."""
    nft = NftWalker(walker)
    live = [st]
    done: list[tuple[State, str]] = []
    for stage in hook_stages(walker.view, hook, ipt_tables):
        nxt: list[State] = []
        for s in live:
            if stage.kind == "ipt":
                results = walker.table_pass(hook, stage.table, s)
            elif stage.kind == "nft":
                assert stage.chain is not None
                results = nft.chain_pass(stage.chain, s)
            else:
                results = _nat_group(walker, nft, hook, stage, s)
            for s2, verdict in results:
                (nxt.append(s2) if verdict == "ACCEPT" else done.append((s2, verdict)))
        live = nxt
    return [(s, "ACCEPT") for s in live] + done


def _nat_group(walker: Walker, nft: NftWalker, hook: str, stage: Stage, st: State) -> list[tuple[State, str]]:
    if st.ctstate != "NEW":
        return [(st, "ACCEPT")]
    live = [st]
    out: list[tuple[State, str]] = []
    for _, table, chain in stage.members:
        nxt: list[State] = []
        for s in live:
            results = walker.table_pass(hook, table, s) if chain is None else nft.chain_pass(chain, s)
            for s2, verdict in results:
                if verdict != "ACCEPT" or _mapped(hook, s2):
                    out.append((s2, verdict))  # the NAT core stops at the first chain that maps it
                else:
                    nxt.append(s2)
        live = nxt
    return out + [(s, "ACCEPT") for s in live]


def _mapped(hook: str, st: State) -> bool:
    if hook in ("PREROUTING", "OUTPUT"):
        return st.dnat is not None
    return st.masquerade or st.snat is not None


Result = tuple[State, str, str | None]  # (branch, NEXT | ACCEPT | DROP | REJECT | RETURN | JUMP | GOTO, target)


class NftWalker:
    def __init__(self, walker: Walker) -> None:
        self.walker = walker
        self.view = walker.view
        self.warn = walker.warn
        nft = walker.view.nft
        assert nft is not None
        self.nft: NftRuleset = nft

    # ------------------------------------------------------------------ chains

    def chain_pass(self, chain: NftChain, st: State) -> list[tuple[State, str]]:
        out = []
        for s, result in self.walk(chain, st, 0):
            if result == "RETURN":
                policy = chain.policy.upper()
                if policy != "ACCEPT":
                    s.hops.append(Hop(s.hook, _label(chain), chain.name, f"policy {chain.policy}", policy))
                out.append((s, policy if policy in ("DROP", "REJECT") else "ACCEPT"))
            else:
                out.append((s, result))
        return out

    def walk(self, chain: NftChain, st: State, depth: int) -> list[tuple[State, str]]:
        """ACCEPT/DROP/REJECT, or RETURN (fell off the end, or ``return``)."""
        if depth > MAX_DEPTH:
            self.warn(f"{_label(chain)} {chain.name}: more than {MAX_DEPTH} nested jumps (a loop?); branch dropped")
            return [(st, "DROP")]
        self._note_service_chain(chain.name, st)
        out: list[tuple[State, str]] = []
        todo: list[tuple[State, int]] = [(st, 0)]
        rules = chain.rules
        while todo:
            s, i = todo.pop()
            while i < len(rules):
                rule = rules[i]
                results = self.rule(rule, s)
                cont: State | None = None
                for s2, verdict, target in results:
                    if verdict == "NEXT":
                        if cont is None:
                            cont = s2
                        else:
                            todo.append((s2, i + 1))
                    elif verdict in ("JUMP", "GOTO"):
                        sub = self.nft.chain(rule.family, rule.table, target or "")
                        if sub is None:
                            self.warn(f"{rule.where}: {verdict.lower()} to unknown chain {target}: ignored")
                            todo.append((s2, i + 1))
                            continue
                        s2.callers = (*s2.callers, rule_text(rule))
                        mark = len(s2.hops)
                        for s3, r3 in self.walk(sub, s2, depth + 1):
                            s3.callers = s3.callers[:-1]
                            if r3 == "RETURN" and verdict == "JUMP":
                                if mark and all(h.quiet for h in s3.hops[mark:]):  # passed through, no effect
                                    jump = s3.hops[mark - 1]
                                    s3.hops[mark - 1] = replace(jump, action=f"{jump.action}: returned", quiet=True)
                                todo.append((s3, i + 1))
                            else:
                                out.append((s3, r3))
                    else:
                        out.append((s2, verdict))
                if cont is None:
                    break
                s = cont
                i += 1
            else:
                out.append((s, "RETURN"))
        return out

    # ------------------------------------------------------------------ one rule

    def rule(self, rule: NftRule, st: State) -> list[Result]:
        branches = [st]
        results: list[Result] = []
        for stmt in rule.exprs:
            nxt: list[State] = []
            for s in branches:
                for s2, status, target in self._statement(rule, stmt, s):
                    if status == "GO":
                        nxt.append(s2)
                    elif status == "NOMATCH":
                        results.append((s2, "NEXT", None))
                    else:
                        results.append((s2, status, target))
            branches = nxt
            if not branches:
                break
        results.extend((s, "NEXT", None) for s in branches)
        return results

    def _hop(self, rule: NftRule, st: State, action: str, *, quiet: bool = False) -> None:
        label = f"{rule.family} {rule.table}"
        st.hops.append(Hop(st.hook, label, rule.chain, rule_text(rule), action, rule.handle, quiet))

    def _statement(self, rule: NftRule, stmt: Any, st: State) -> list[Result]:
        if not isinstance(stmt, dict) or len(stmt) != 1:
            assume(st, self.warn, rule, f"statement {stmt!r} not understood: passed over")
            return [(st, "GO", None)]
        key, v = next(iter(stmt.items()))
        if key == "match":
            return self._match(rule, v, st)
        if key in ("counter", "log", "comment", "meter"):
            return [(st, "GO", None)]
        if key in ("limit", "quota"):
            over = isinstance(v, dict) and bool(v.get("inv"))
            assume(st, self.warn, rule, f"{statement(stmt)}: assumed not limiting (a first packet)")
            return [(st, "NOMATCH" if over else "GO", None)]
        if key in ("accept", "drop", "return", "continue"):
            verdict = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN", "continue": "NEXT"}[key]
            if key != "continue":
                self._hop(rule, st, key.upper(), quiet=key == "return")
            return [(st, verdict, None)]
        if key == "reject":
            self._hop(rule, st, "REJECT")
            return [(st, "REJECT", None)]
        if key in ("jump", "goto"):
            self._hop(rule, st, f"{key} {v['target']}")
            return [(st, key.upper(), str(v["target"]))]
        if key == "vmap":
            return self._vmap(rule, v, st)
        if key in ("dnat", "snat", "redirect"):
            return self._nat(rule, key, v if isinstance(v, dict) else {}, st)
        if key == "masquerade":
            return self._masquerade(rule, st)
        if key == "mangle":
            return self._mangle(rule, v, st)
        if key == "notrack":
            st.ctstate = "UNTRACKED"
            self._hop(rule, st, "not tracked (ct state untracked)")
            return [(st, "GO", None)]
        if key == "set" and isinstance(v, dict) and v.get("op") in ("add", "update"):
            name = str(v.get("set", "")).lstrip("@")
            st.affinity_sets = (*st.affinity_sets, name)
            return [(st, "GO", None)]
        if key == "xt":
            what = f"{v.get('type', '?')} {v.get('name', '?')}" if isinstance(v, dict) else "?"
            said = f"iptables-nft compat {what} (no details in nft's JSON): assumed to match"
            assume(st, self.warn, rule, said)
            return [(st, "GO", None)]
        assume(st, self.warn, rule, f"statement {statement(stmt)!r} not modelled: passed over")
        return [(st, "GO", None)]

    # ------------------------------------------------------------------ matches

    def _match(self, rule: NftRule, m: dict[str, Any], st: State) -> list[Result]:
        left = self.value(m.get("left"), st, rule)
        if left is ABSENT:
            return [(st, "NOMATCH", None)]
        if left is UNKNOWN and _oif_missing(m):
            # rpfilter (`fib saddr . iif oif missing drop`) without routes: assumed to pass, as -m rpfilter is
            said = f"{statement({'match': m})!r}: routes not given: the reverse path of {st.src} is assumed valid"
            assume(st, self.warn, rule, said)
            return [(st, "GO" if m.get("op") == "!=" else "NOMATCH", None)]
        if left is UNKNOWN:
            assume(st, self.warn, rule, f"{statement({'match': m})!r} cannot be decided here: assumed to match")
            return [(st, "GO", None)]
        test = self._tester(rule, m, st)
        p = sum(q for q, val in left if test(val)) if isinstance(left, Dist) else (1.0 if test(left) else 0.0)
        if p >= 1.0:
            return [(st, "GO", None)]
        if p <= 0.0:
            return [(st, "NOMATCH", None)]
        yes, no = st.fork(st.probability * p), st.fork(st.probability * (1 - p))
        self._hop(rule, yes, f"matched with probability {p:.4f}")
        return [(yes, "GO", None), (no, "NOMATCH", None)]

    def _tester(self, rule: NftRule, m: dict[str, Any], st: State) -> Callable[[Any], bool]:
        op = m.get("op", "==")
        right = m.get("right")
        kind = kind_of(m.get("left"))
        if op in ("<", ">", "<=", ">="):
            bound = atom(right, kind)
            limit = bound[0] if isinstance(bound, tuple) else bound
            cmp: dict[str, Callable[[Any], bool]] = {
                "<": lambda v: isinstance(v, int) and v < limit,
                ">": lambda v: isinstance(v, int) and v > limit,
                "<=": lambda v: isinstance(v, int) and v <= limit,
                ">=": lambda v: isinstance(v, int) and v >= limit,
            }
            return cmp[op]
        negate = op == "!="
        left = m.get("left")
        if isinstance(left, dict) and "fib" in left and right in (False, 0, "missing"):  # fib … oif missing
            return lambda v: (v == "") != negate
        if kind == "flags" and right in (0, "0"):  # "ct status & dnat == 0": no such flag
            return lambda v: (isinstance(v, frozenset) and not v) != negate
        if isinstance(right, str) and right.startswith("@"):
            named = self._set(rule, right[1:])
            if named is None:
                self.warn(f"{rule.where}: set {right} not in the ruleset: assumed not to match")
                return lambda v: negate
            return lambda v: self._in_set(named, v, st) != negate
        atoms = self._anon(right, m.get("left"))
        return lambda v: any(contains(v, a) for a in atoms) != negate

    def _anon(self, right: Any, left: Any) -> list[Any]:
        cache = self.nft.cache
        key = id(right)
        hit = cache.get(key)
        if hit is not None and hit[0] is right:
            return list(hit[1])
        kinds = _kinds(left)
        if isinstance(right, dict) and "set" in right:
            items = right["set"] if isinstance(right["set"], list) else [right["set"]]
            atoms = [concat_atom(x, kinds) for x in items]
        elif kind_of(left) == "flags" and isinstance(right, list):
            atoms = [frozenset(right)]
        else:
            atoms = [concat_atom(right, kinds)]
        cache[key] = (right, atoms)
        return atoms

    def _set(self, rule: NftRule, name: str) -> NftSet | None:
        table = self.nft.table(rule.family, rule.table)
        return table.sets.get(name) if table else None

    def _in_set(self, s: NftSet, value: Any, st: State) -> bool:
        if s.dynamic and s.name in st.recent:
            return True
        return self.lookup(s, value) is not None

    def lookup(self, s: NftSet, value: Any) -> tuple[Any, str | None] | None:
        """(data, element comment) for ``value`` in set or map ``s``; None if not in it."""
        if s._index is None:
            _index(s)
        assert s._index is not None and s._ranges is not None
        hit = s._index.get(value)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        for a, data, comment in s._ranges:
            if contains(value, a):
                return data, comment
        return None

    # ------------------------------------------------------------------ values

    def value(self, e: Any, st: State, rule: NftRule) -> Any:
        if not isinstance(e, dict) or len(e) != 1:
            return e
        key, v = next(iter(e.items()))
        if key == "payload":
            return self._payload(v, st)
        if key == "meta":
            return self._meta(str(v.get("key")), st)
        if key == "ct":
            return self._ct(str(v.get("key")), st)
        if key == "fib":
            return self._fib(v, st)
        if key == "numgen":
            n, off = int(v.get("mod", 1)), int(v.get("offset", 0))
            if v.get("mode", "random") != "random":
                self.warn(f"{rule.where}: numgen {v.get('mode')} keeps a counter: each value taken as equally likely")
            return Dist((1.0 / n, off + i) for i in range(n)) if n > 1 else off
        if key == "concat":
            parts = [self.value(x, st, rule) for x in v]
            if any(p is ABSENT for p in parts):
                return ABSENT
            if any(p is UNKNOWN for p in parts):
                return UNKNOWN
            return _product(parts)
        if key in ("&", "|", "^", "<<", ">>"):
            a = self.value(v[0], st, rule)
            if isinstance(a, frozenset) and key == "&":  # ct status & dnat: the flags in common
                return a & frozenset(v[1] if isinstance(v[1], list) else [v[1]])
            b = v[1] if isinstance(v[1], int) else self.value(v[1], st, rule)
            if a is ABSENT or a is UNKNOWN or not isinstance(b, int):
                return a if a is ABSENT or a is UNKNOWN else UNKNOWN
            fn: Callable[[int], int] = {
                "&": lambda x: x & b,
                "|": lambda x: x | b,
                "^": lambda x: x ^ b,
                "<<": lambda x: (x << b) & 0xFFFFFFFF,
                ">>": lambda x: x >> b,
            }[key]
            if isinstance(a, Dist):
                return Dist((p, fn(x)) for p, x in a)
            return fn(a) if isinstance(a, int) else UNKNOWN
        if key == "rt":
            if v.get("key") == "nexthop" and self.view.routes:
                route = lookup(self.view, st.dst)
                return ip_int(route.gateway or st.dst) if route is not None else UNKNOWN
            return UNKNOWN
        if key == "map":
            return self._map_value(v, st, rule)
        return UNKNOWN

    def _payload(self, v: dict[str, Any], st: State) -> Any:
        proto, field = v.get("protocol"), v.get("field")
        if proto == "ip":
            if field == "saddr":
                return ip_int(st.src)
            if field == "daddr":
                return ip_int(st.dst)
            if field == "protocol":
                return PROTO.get(st.proto, -1)
            return UNKNOWN
        if proto in ("tcp", "udp", "sctp", "th", "udplite"):
            if proto != "th" and proto != st.proto:
                return ABSENT  # nft's implied "meta l4proto <proto>" fails
            if field == "dport":
                return st.dport
            if field == "sport":
                return st.sport
            if field == "flags" and proto == "tcp":
                return frozenset({"syn"}) if st.ctstate == "NEW" else frozenset({"ack"})
            return UNKNOWN
        if proto in ("icmp", "ip6", "icmpv6", "arp", "vlan", "ether"):
            return ABSENT if proto != "ether" else UNKNOWN
        return UNKNOWN

    def _meta(self, key: str, st: State) -> Any:
        if key == "l4proto":
            return PROTO.get(st.proto, -1)
        if key == "mark":
            return st.mark
        if key == "nfproto":
            return "ipv4"
        if key == "protocol":
            return "ip"
        if key in ("iifname", "iif"):
            return UNKNOWN if st.iif == "?" else (st.iif or "")
        if key in ("oifname", "oif"):
            if st.oif is None and st.hook in ("PREROUTING", "INPUT"):
                return ""
            return UNKNOWN if st.oif in (None, "?") else st.oif
        if key == "pkttype":
            types = _addr_types(st.dst, self.view)
            return "broadcast" if "BROADCAST" in types else ("multicast" if "MULTICAST" in types else "host")
        return UNKNOWN

    def _ct(self, key: str, st: State) -> Any:
        if key == "state":
            return frozenset({st.ctstate.lower()})
        if key == "status":
            flags = set()
            if st.dnat is not None:
                flags.add("dnat")
            if st.snat is not None or st.masquerade:
                flags.add("snat")
            if st.ctstate not in ("NEW", "UNTRACKED"):
                flags |= {"seen-reply", "confirmed"}
            return frozenset(flags)
        if key == "mark":
            return st.ctmark
        if key == "direction":
            return "original"
        if key == "l3proto":
            return "ipv4"
        if key in ("protocol", "proto"):
            return PROTO.get(st.proto, -1)
        return UNKNOWN

    def _fib(self, v: dict[str, Any], st: State) -> Any:
        flags = v.get("flags", [])
        flags = flags if isinstance(flags, list) else [flags]
        result = v.get("result")
        addr = st.src if "saddr" in flags else st.dst
        if result == "type":
            types = _addr_types(addr, self.view)
            return next(iter(types)).lower()
        if result in ("oif", "oifname"):
            if not self.view.routes:
                return UNKNOWN
            route = lookup(self.view, addr)
            dev = (route.dev or "") if route is not None and route.type not in ("blackhole", "unreachable") else ""
            if "iif" in flags:  # the lookup is bound to the input interface: reverse path filtering
                return dev if dev == (st.iif or "") else ""
            return dev
        return UNKNOWN

    def _map_value(self, v: dict[str, Any], st: State, rule: NftRule) -> Any:
        """``KEY map @m`` as a value: the data per key (a Dist when the key is random);
        ABSENT when no element matches (the rule stops there)."""
        key = self.value(v.get("key"), st, rule)
        if key is ABSENT or key is UNKNOWN:
            return key
        data = v.get("data")
        if isinstance(data, str) and data.startswith("@"):
            named = self._set(rule, data[1:])
            if named is None:
                return ABSENT
            found: Callable[[Any], Any] = lambda k: _hit(self.lookup(named, k))  # noqa: E731
        else:
            pairs = self._anon_map(data, v.get("key"))
            found = lambda k: next((MapHit(_data_value(d)) for a, d in pairs if contains(k, a)), None)  # noqa: E731
        if isinstance(key, Dist):
            out = Dist()
            for p, k in key:
                d = found(k)
                out.append((p, ABSENT if d is None else d))
            return out
        d = found(key)
        return ABSENT if d is None else d

    def _anon_map(self, data: Any, key_expr: Any) -> list[tuple[Any, Any]]:
        items = data.get("set", []) if isinstance(data, dict) else []
        kinds = _kinds(key_expr)
        return [(concat_atom(k, kinds), d) for k, d in items]

    # ------------------------------------------------------------------ actions

    def _vmap(self, rule: NftRule, v: dict[str, Any], st: State) -> list[Result]:
        key = self.value(v.get("key"), st, rule)
        if key is ABSENT:
            return [(st, "NOMATCH", None)]
        data = v.get("data")
        if key is UNKNOWN:
            assume(st, self.warn, rule, "the vmap's key cannot be decided here: no element assumed to match")
            return [(st, "NOMATCH", None)]
        if isinstance(data, str) and data.startswith("@"):
            named = self._set(rule, data[1:])
            if named is None:
                self.warn(f"{rule.where}: map {data} not in the ruleset: no match")
                return [(st, "NOMATCH", None)]

            def verdict_of(k: Any) -> tuple[Any, str | None] | None:
                return self.lookup(named, k)
        else:
            kinds = _kinds(v.get("key"))
            items = data.get("set", []) if isinstance(data, dict) else []
            pairs = [(concat_atom(k, kinds), d) for k, d in items]

            def verdict_of(k: Any) -> tuple[Any, str | None] | None:
                return next(((d, None) for a, d in pairs if contains(k, a)), None)

        draws = key if isinstance(key, Dist) else [(1.0, key)]
        out: list[Result] = []
        for p, k in draws:
            hit = verdict_of(k)
            s = st if len(draws) == 1 else st.fork(st.probability * p)
            if hit is None:
                out.append((s, "NOMATCH", None))
                continue
            verdict, comment = hit
            if comment and s.service is None and _SPN.match(comment):
                s.service = comment
            chance = f", probability {p:.4f}" if len(draws) > 1 else ""
            out.append(self._verdict(rule, verdict, s, chance))
        return out

    def _verdict(self, rule: NftRule, verdict: Any, st: State, chance: str) -> Result:
        if isinstance(verdict, dict) and len(verdict) == 1:
            key, v = next(iter(verdict.items()))
            if key in ("jump", "goto"):
                self._hop(rule, st, f"{key} {v['target']} (vmap{chance})")
                return (st, key.upper(), str(v["target"]))
            if key in ("accept", "drop", "return", "continue"):
                if key != "continue":
                    self._hop(rule, st, f"{key.upper()} (vmap{chance})")
                return (st, {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN", "continue": "NEXT"}[key], None)
        assume(st, self.warn, rule, f"vmap verdict {verdict!r} not understood: passed over")
        return (st, "NEXT", None)

    def _nat(self, rule: NftRule, key: str, v: dict[str, Any], st: State) -> list[Result]:
        if key == "redirect":
            port = v.get("port")
            if isinstance(port, int):
                st.dport = port
            st.dnat = f"{st.dst}:{st.dport}"
            self._hop(rule, st, f"REDIRECT to this node, port {st.dport}")
            return [(st, "ACCEPT", None)]
        addr = v.get("addr")
        target = self.value(addr, st, rule) if isinstance(addr, dict) else addr
        port = v.get("port")
        port_value = self.value(port, st, rule) if isinstance(port, dict) else port
        draws = target if isinstance(target, Dist) else [(1.0, target)]
        out: list[Result] = []
        for p, t in draws:
            s = st if len(draws) == 1 else st.fork(st.probability * p)
            if t is ABSENT:
                out.append((s, "NOMATCH", None))
                continue
            if t is UNKNOWN or t is None:
                assume(s, self.warn, rule, f"{key} target cannot be decided here: address kept")
                out.append((s, "ACCEPT", None))
                continue
            comment = None
            if isinstance(t, MapHit):
                t, comment = t.data, t.comment
            ip, new_port = _addr_port(t, port_value)
            if comment and s.service is None and _SPN.match(comment):
                s.service = comment
            chance = f" (probability {p:.4f})" if len(draws) > 1 else ""
            if key == "dnat":
                s.dst, s.dport = ip, new_port if new_port is not None else s.dport
                s.dnat = f"{s.dst}:{s.dport}"
                self._hop(rule, s, f"DNAT to {s.dnat}{chance}")
            else:
                s.src = ip
                if new_port is not None:
                    s.sport = new_port
                s.snat = ip
                self._hop(rule, s, f"SNAT to {ip}{chance}")
            out.append((s, "ACCEPT", None))
        return out

    def _masquerade(self, rule: NftRule, st: State) -> list[Result]:
        src = self.walker.masquerade_src
        st.masquerade = True
        st.masquerade_reason = st.mark_reason or rule_text(rule)
        self._hop(rule, st, f"MASQUERADE to {src or 'the outgoing interface address (routes not given)'}")
        st.src = src or "?"
        return [(st, "ACCEPT", None)]

    def _mangle(self, rule: NftRule, v: dict[str, Any], st: State) -> list[Result]:
        target = v.get("key", {})
        which = next(iter(target)) if isinstance(target, dict) and target else ""
        field = target.get(which, {}).get("key") if which in ("meta", "ct") else None
        if (which, field) not in (("meta", "mark"), ("ct", "mark")):
            if not (which == "meta" and field in ("nftrace", "priority")):
                self.warn(f"{rule.where}: {statement({'mangle': v})!r} not modelled (does not change the path)")
            return [(st, "GO", None)]
        new = self.value(v.get("value"), st, rule)
        if not isinstance(new, int):
            assume(st, self.warn, rule, f"{statement({'mangle': v})!r}: value unknown, mark kept")
            return [(st, "GO", None)]
        if which == "meta":
            before = st.mark
            st.mark = new & 0xFFFFFFFF
            if st.mark & ~before:
                st.mark_reason = st.callers[-1] if st.callers else rule_text(rule)
            self._hop(rule, st, f"mark {before:#x} → {st.mark:#x}")
        else:
            before = st.ctmark
            st.ctmark = new & 0xFFFFFFFF
            self._hop(rule, st, f"ct mark {before:#x} → {st.ctmark:#x}")
        return [(st, "GO", None)]

    # ------------------------------------------------------------------ naming

    @staticmethod
    def _note_service_chain(name: str, st: State) -> None:
        if st.service is not None:
            return
        m = _KUBE_CHAIN.match(name)
        if m:
            st.service = f"{m.group(1)}/{m.group(2)}:{m.group(3)}"


_SPN = re.compile(r"^[a-z0-9.-]+/[a-z0-9.-]+(?::[a-z0-9-]*)?$")


def _label(chain: NftChain) -> str:
    return f"{chain.family} {chain.table}"


def _kinds(e: Any) -> tuple[str, ...]:
    if isinstance(e, dict) and "concat" in e:
        return tuple(kind_of(x) for x in e["concat"])
    return (kind_of(e),)


def _product(parts: list[Any]) -> Any:
    if not any(isinstance(p, Dist) for p in parts):
        return tuple(parts)
    out = Dist([(1.0, ())])
    for part in parts:
        options = part if isinstance(part, Dist) else [(1.0, part)]
        out = Dist((p * q, (*acc, x)) for p, acc in out for q, x in options)
    return out


def _hit(found: tuple[Any, str | None] | None) -> MapHit | None:
    return None if found is None else MapHit(_data_value(found[0]), found[1])


def _data_value(d: Any) -> Any:
    """A map's data as the tracer applies it: an IP string, or (IP, port)."""
    if isinstance(d, dict) and "concat" in d:
        parts = d["concat"]
        ip = str(parts[0])
        port = int(parts[1]) if len(parts) > 1 and str(parts[1]).isdigit() else None
        return (ip, port)
    if isinstance(d, dict) and "elem" in d:
        return _data_value(d["elem"].get("val"))
    return d


def _addr_port(t: Any, port: Any) -> tuple[str, int | None]:
    p = port if isinstance(port, int) else None
    if isinstance(t, tuple) and len(t) == 2:
        ip, mapped = t
        return (int_ip(ip) if isinstance(ip, int) else str(ip)), (mapped if isinstance(mapped, int) else p)
    return (int_ip(t) if isinstance(t, int) else str(t)), p


def _index(s: NftSet) -> None:
    kinds = tuple(type_kind(t) for t in s.key_types)
    index: dict[Any, Any] = {}
    ranges: list[Any] = []
    for key, data in s.elements:
        comment = key["elem"].get("comment") if isinstance(key, dict) and "elem" in key else None
        a = concat_atom(key, kinds)
        exact = exact_key(a)
        if exact is None:
            ranges.append((a, data, comment))
        else:
            index.setdefault(exact, (data, comment))
    s._index, s._ranges = index, ranges


def _oif_missing(m: dict[str, Any]) -> bool:
    """``fib … oif missing`` / ``oifname missing``: is there no route for the address (the rpfilter test)?"""
    left = m.get("left")
    fib = left.get("fib") if isinstance(left, dict) else None
    return isinstance(fib, dict) and fib.get("result") in ("oif", "oifname") and m.get("right") in (False, 0, "missing")
