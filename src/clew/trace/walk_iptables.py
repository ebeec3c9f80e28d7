"""Walk one hook's chains: rules in order, jumps and gotos, RETURN, policies, targets.

`run_hook` runs every table registered on a hook in the kernel's priority order and returns
the branches that survive it (ACCEPT, to continue) or end in it (DROP, REJECT). Within a table a
branch ends at a terminal target, at a RETURN from the built-in chain, or at the chain's policy.
nat is consulted only for a connection's first packet, as conntrack does.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, replace

from clew.netfilter.rules import Chain, Rule, Ruleset
from clew.trace.index import build
from clew.trace.matches import Warn, assume, evaluate, why_not
from clew.trace.node_view import NodeView
from clew.trace.packet import Hop
from clew.trace.state import State

# Tables on each hook, in priority order (raw -300, mangle -150, nat DNAT -100, filter 0,
# security 50, nat SNAT 100).
HOOK_TABLES = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
}
MAX_DEPTH = 64
MAX_MISSED = 8
PASS_TARGETS = {"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CHECKSUM", "TCPMSS", "CLASSIFY", "DSCP", "TOS",
                "TTL", "IDLETIMER", "NFQUEUE_BYPASS"}  # fmt: skip
WARN_TARGETS = {"CONNMARK", "CT", "NFQUEUE", "TPROXY", "SECMARK", "CONNSECMARK", "SET", "HMARK"}
_SERVICE_COMMENT = re.compile(
    r"^(?P<spn>[a-z0-9.-]+/[a-z0-9.-]+(?::[a-z0-9-]*)?)"
    r"(?: cluster IP| external IP| loadbalancer IP| has no endpoints| has no local endpoints| -> \S+)?$"
)


LEGACY = "legacy "  # the label of the other backend's tables ("legacy filter"), when both hold rules


@dataclass(slots=True)
class Walker:
    view: NodeView
    warn: Warn
    masquerade_src: str | None = None  # set by the engine before POSTROUTING
    rs: Ruleset | None = None  # the ruleset being walked (the other backend's, for LEGACY tables)

    def _tables(self, hook: str) -> list[tuple[str, Ruleset]]:
        """(label, ruleset) of each table on ``hook`` in priority order; when both iptables backends
        hold rules, the other backend's table after the same table of the main one (their order at
        equal priority is the order they were registered in: an assumption, recorded by the engine)."""
        out: list[tuple[str, Ruleset]] = []
        for table in HOOK_TABLES[hook]:
            out.append((table, self.view.ruleset))
            if self.view.other_backend is not None:
                out.append((LEGACY + table, self.view.other_backend))
        return out

    def run_hook(self, hook: str, st: State) -> list[tuple[State, str]]:
        """Branches after the hook: ("ACCEPT", go on) or ("DROP"/"REJECT", ended here)."""
        st.hook = hook
        if self.view.nft is not None:  # nftables tables too: every base chain, by priority
            from clew.trace.walk_nft import run_stages

            return run_stages(self, hook, st, self._tables(hook))
        live = [st]
        done: list[tuple[State, str]] = []
        for table, rs in self._tables(hook):
            if rs.chain(table.removeprefix(LEGACY), hook) is None:
                continue
            if table.endswith("nat") and st.ctstate != "NEW":
                continue
            nxt: list[State] = []
            for s in live:
                for s2, result in self.table_pass(hook, table, s):
                    (nxt.append(s2) if result == "ACCEPT" else done.append((s2, result)))
            live = nxt
        return [(s, "ACCEPT") for s in live] + done

    def table_pass(self, hook: str, table: str, st: State) -> list[tuple[State, str]]:
        """One table's built-in chain for ``hook`` (``table`` may be the other backend's,
        ``legacy filter``): ACCEPT (go on), or DROP/REJECT (ended)."""
        rs = self.view.other_backend if table.startswith(LEGACY) else self.view.ruleset
        chain = rs.chain(table.removeprefix(LEGACY), hook) if rs is not None else None
        if chain is None or rs is None:
            return [(st, "ACCEPT")]
        self.rs = rs
        out: list[tuple[State, str]] = []
        for s2, result in self.walk(table, chain, st, 0, 0):
            if result in ("ACCEPT", "RETURN"):
                policy = chain.policy or "ACCEPT"
                if result == "RETURN" and policy != "ACCEPT":
                    s2.hops.append(Hop(hook, table, hook, f"policy {policy}", policy))
                    out.append((s2, policy))
                    continue
                out.append((s2, "ACCEPT"))
            else:
                out.append((s2, result))
        return out

    def walk(self, table: str, chain: Chain, st: State, start: int, depth: int) -> list[tuple[State, str]]:
        """Rules of ``chain`` from ``start``; results ACCEPT/DROP/REJECT, or RETURN (fell off / RETURN)."""
        if depth > MAX_DEPTH:
            self.warn(f"chain {chain.name} in {table}: more than {MAX_DEPTH} nested jumps (a loop?); branch dropped")
            return [(st, "DROP")]
        out: list[tuple[State, str]] = []
        rules = chain.rules
        order = self._order(table, chain, st)
        pos = bisect.bisect_left(order, start) if order is not None else start
        while True:
            if order is None:
                if pos >= len(rules):
                    break
                i = pos
            else:
                if pos >= len(order):
                    break
                i = order[pos]
            pos += 1
            rule = rules[i]
            branches = evaluate(rule, st, self.view, self.warn, i)
            if len(branches) == 1:
                if not branches[0][1]:
                    if rule.target is not None and "MARK-MASQ" in rule.target.name and st.masquerade_skipped is None:
                        st.masquerade_skipped = rule.text  # why no masquerade: the marking rule did not match
                    elif rule.target is not None and rule.target.name == "ACCEPT" and len(st.missed) < MAX_MISSED:
                        # for "why was it dropped": the accepting rule it missed, and the condition that decided it
                        why = why_not(rule, st, self.view)
                        st.missed = (*st.missed, f"{table}/{chain.name} line {rule.line}: {why} did not match")
                    continue
                dst = (st.dst, st.dport)
                cont = self._act(table, chain, rule, st, depth, out, None)
                if not cont:
                    return out
                if len(cont) == 1 and (cont[0].dst, cont[0].dport) == dst:
                    st = cont[0]
                    continue
                for s in cont:
                    out.extend(self.walk(table, chain, s, i + 1, depth))
                return out
            # statistic: the taken branch acts here; the other goes on with the next rule in this
            # loop (not by recursion: a Service with 1000 endpoints is 1000 such rules)
            (p, _), (q, _) = branches
            taken = st.fork(st.probability * p)
            for s2 in self._act(table, chain, rule, taken, depth, out, p):
                out.extend(self.walk(table, chain, s2, i + 1, depth))
            st = st.fork(st.probability * q)
        out.append((st, "RETURN"))
        return out

    def _order(self, table: str, chain: Chain, st: State) -> list[int] | None:
        """The rule indices worth testing for this packet (None: all of them)."""
        key = (table, chain.name)
        cache = self.view.indexes
        index = cache.get(key)
        if key not in cache or (index is not None and index.size != len(chain.rules)):
            index = cache[key] = build(chain)
        return index.candidates(st.dst, st.dport) if index is not None else None

    def _act(
        self, table: str, chain: Chain, rule: Rule, st: State, depth: int, out: list[tuple[State, str]], p: float | None
    ) -> list[State]:
        """Apply the rule's target. Terminal results go to ``out``; returns the states that go on."""
        self._note_service(rule, st)
        self._note_recent(rule, st)
        target = rule.target
        chance = f" (probability {p:.4f} of the packets reaching this rule)" if p is not None else ""
        if target is None:
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, f"matched, no target{chance}", rule.line))
            return [st]
        name = target.name
        sub = (self.rs or self.view.ruleset).chain(table.removeprefix(LEGACY), name)
        if sub is not None:
            verb = "goto" if target.goto else "jump"
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, f"{verb} {name}{chance}", rule.line))
            mark = len(st.hops)
            st.callers = (*st.callers, rule.text)
            results = self.walk(table, sub, st, 0, depth + 1)
            going_on: list[State] = []
            for s, result in results:
                s.callers = s.callers[:-1]
                if result == "RETURN" and not target.goto:
                    if p is None and all(h.quiet for h in s.hops[mark:]):  # passed through without effect
                        jump = s.hops[mark - 1]
                        s.hops[mark - 1] = replace(jump, action=f"{jump.action}: returned, no verdict", quiet=True)
                    going_on.append(s)
                else:
                    out.append((s, result))
            return going_on
        verdict = self._target(table, chain, rule, st)
        if verdict is None:
            return [st]
        out.append((st, verdict))
        return []

    def _target(self, table: str, chain: Chain, rule: Rule, st: State) -> str | None:
        """A built-in target: its verdict, or None to go on with the next rule."""
        assert rule.target is not None
        name = rule.target.name
        hop = Hop(st.hook, table, chain.name, rule.text, name, rule.line)
        if name in ("ACCEPT", "DROP", "REJECT", "RETURN"):
            st.hops.append(replace(hop, quiet=name == "RETURN"))
            if (
                name == "RETURN"
                and not (st.masquerade_skipped or "").startswith("-A KUBE")
                and any(r.target and r.target.name in ("MASQUERADE", "SNAT") for r in chain.rules)
            ):
                st.masquerade_skipped = rule.text  # returned before this chain could masquerade
            return name
        if name in ("DNAT", "SNAT"):
            return self._nat(table, chain, rule, st, name)
        if name == "MASQUERADE":
            st.masquerade = True
            st.masquerade_reason = st.mark_reason if st.mark_reason and self._on_mark(chain, rule, st) else rule.text
            src = self.masquerade_src or "the outgoing interface's address (routes not given)"
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, f"MASQUERADE to {src}", rule.line))
            st.src = self.masquerade_src or "?"
            return "ACCEPT"
        if name == "REDIRECT":
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, "REDIRECT to this node", rule.line))
            st.dnat = f"{st.dst}:{st.dport}"
            return "ACCEPT"
        if name == "MARK":
            before = st.mark
            st.mark = _apply_mark(rule, st.mark)
            if st.mark & ~before:
                st.mark_reason = st.callers[-1] if st.callers else rule.text
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, f"mark {before:#x} → {st.mark:#x}", rule.line))
            return None
        if name in PASS_TARGETS:
            return None
        if name == "NOTRACK" or (name == "CT" and rule.target.get("--notrack") is not None):
            st.ctstate = "UNTRACKED"  # conntrack skips it: no nat, ctstate UNTRACKED from here on
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, "not tracked (ctstate UNTRACKED)", rule.line))
            return None
        if name in WARN_TARGETS:
            assume(st, self.warn, rule, f"target {name} in {table}/{chain.name} not modelled: the trace goes on")
            return None
        assume(st, self.warn, rule, f"unknown target or missing chain {name!r} in {table}/{chain.name}: ignored")
        return None

    def _on_mark(self, chain: Chain, rule: Rule, st: State) -> bool:
        """Whether this MASQUERADE was reached because of the mark: it, an earlier rule of its chain
        (kube-proxy's ``-m mark ! --mark 0x4000/0x4000 -j RETURN``), or a rule that jumped here tests it."""
        if rule.match("mark") is not None or any("-m mark" in text for text in st.callers):
            return True
        for r in chain.rules:
            if r is rule:
                break
            if r.match("mark") is not None:
                return True
        return False

    def _nat(self, table: str, chain: Chain, rule: Rule, st: State, name: str) -> str | None:
        """DNAT/SNAT. ``--to-destination :8080`` changes only the port (Docker's embedded DNS rules
        do that); an empty or unreadable address is what iptables-restore refuses — a warning naming
        the line, and the packet goes on unchanged."""
        assert rule.target is not None
        flag = "--to-destination" if name == "DNAT" else "--to-source"
        to = rule.target.get(flag)
        text = to.value if to else ""
        port_of = st.dport if name == "DNAT" else st.sport
        host, port = _split_hostport(text, port_of)
        if not text or (host and not _is_ipv4(host)) or (not host and port == port_of and ":" not in text):
            assume(st, self.warn, rule, f"{name} without a usable {flag} ({text!r}) in {table}/{chain.name}"
                   f" (iptables-restore would refuse it; a mismatched iptables-save prints it): ignored, the"
                   f" {'destination' if name == 'DNAT' else 'source'} is kept")  # fmt: skip
            return None
        if name == "DNAT":
            ip = host or st.dst
            st.dst, st.dport, st.dnat = ip, port, f"{ip}:{port}"
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, f"DNAT to {ip}:{port}", rule.line))
        else:
            ip = host or st.src
            st.src, st.sport, st.snat = ip, port, ip
            st.hops.append(Hop(st.hook, table, chain.name, rule.text, f"SNAT to {ip}:{port}", rule.line))
        return "ACCEPT"

    @staticmethod
    def _note_service(rule: Rule, st: State) -> None:
        if st.service is not None or not rule.chain.startswith("KUBE-"):
            return
        comment = rule.comment
        if comment:
            m = _SERVICE_COMMENT.match(comment)
            if m:
                st.service = m.group("spn")

    @staticmethod
    def _note_recent(rule: Rule, st: State) -> None:
        m = rule.match("recent")
        if m is not None and m.get("--set") is not None and rule.chain.startswith("KUBE-SEP-"):
            name = m.get("--name")
            st.affinity_sets = (*st.affinity_sets, name.value if name else "DEFAULT")


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def _split_hostport(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.partition(":")
    host = host.split("-")[0]
    try:
        return host, int(port.split("-")[0]) if port else default_port
    except ValueError:
        return host, default_port


def _apply_mark(rule: Rule, mark: int) -> int:
    """MARK's forms as the kernel computes them: (mark AND NOT mask) XOR value."""
    assert rule.target is not None
    for opt in rule.target.options:
        value, _, mask = opt.value.partition("/")
        v = int(value, 0) if value else 0
        if opt.name == "--set-xmark":
            m = int(mask, 0) if mask else 0xFFFFFFFF
            return (mark & ~m & 0xFFFFFFFF) ^ v
        if opt.name == "--set-mark":
            m = int(mask, 0) if mask else 0xFFFFFFFF
            return (mark & ~m & 0xFFFFFFFF) ^ v
        if opt.name == "--or-mark":
            return mark | v
        if opt.name == "--and-mark":
            return mark & v
        if opt.name == "--xor-mark":
            return mark ^ v
    return mark
