"""What clew owns in the shared chains, and what differs from it in the kernel. Pure.

The per-Service chains (KUBE-SVC/SEP/…) are clew's alone: nobody else writes or flushes them.
The chains every Service shares (KUBE-SERVICES, KUBE-NODEPORTS, …), the fixed ones
(KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD, KUBE-FIREWALL), the canaries and the jumps from
the built-in chains are the ones a firewall reload, an ``iptables -F CHAIN`` or an ``iptables -D
INPUT …`` hits. `expected` says what they must hold after the last sync; `compare` takes what a
read of those chains found and says, per chain, what changed. The agent reads and compares only
when the kernel's ruleset generation moved (``kernel/nfgen.py``), so an idle check costs one
netlink round trip.

Comparing a rendered rule with what ``iptables -S`` prints needs `canonical` (iptables adds
``/32``, reorders options…), which costs ~60 µs a rule: 0.6 s for KUBE-SERVICES at 10k Services.
So rules are first paired by a cheap key (`quick_key`: the rule's option groups, sorted, with
``/32`` dropped), and only the ones left unpaired go through `canonical`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import canonical
from clew.proxy import names as n
from clew.proxy.iptables.full import owned
from clew.proxy.iptables.jumps import JumpRule, jump_rules
from clew.proxy.iptables.render import NAT_TOP_CHAINS, Rendered

CANARY_TABLES = ("mangle", "nat", "filter")
BUILTIN_TABLES = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}

_PROBABILITY = re.compile(r"--probability (\S+) ")
ChainKey = tuple[str, str]  # (table, chain)
Keys = Counter[tuple[str, ...]]  # quick keys of rules, counted
Read = Mapping[ChainKey, Sequence[str] | None]  # per chain: its -A lines as read, None if missing


@dataclass(slots=True)
class ChainExpect:
    """The rules one shared chain must hold, exactly (``-A CHAIN …`` as rendered).

    ``ordered``: the order carries meaning (fixed chains: RETURN before MASQUERADE); otherwise
    the rules are one per Service port and never overlap, so only the ``tail`` (KUBE-SERVICES'
    final jump to KUBE-NODEPORTS) must stay last, in order."""

    rules: tuple[str, ...]
    ordered: bool
    tail: tuple[str, ...] = ()
    _keys: Keys | None = field(default=None, compare=False, repr=False)

    def keys(self) -> Keys:
        """The rules' quick keys, counted (made once, when first needed)."""
        if self._keys is None:
            self._keys = Counter(quick_key(r) for r in self.rules)
        return self._keys


@dataclass(frozen=True, slots=True)
class Expected:
    """What the guarded chains hold after the last sync."""

    chains: Mapping[ChainKey, ChainExpect]
    jumps: tuple[JumpRule, ...]
    canaries: tuple[str, ...] = CANARY_TABLES

    def reads(self) -> list[ChainKey]:
        """Every (table, chain) a check must read: the shared chains, the built-in chains the
        jumps are in, the canaries."""
        keys = list(self.chains)
        keys += [(j.table, j.chain) for j in self.jumps]
        keys += [(t, n.KUBE_PROXY_CANARY) for t in self.canaries]
        return list(dict.fromkeys(keys))


@dataclass(frozen=True, slots=True)
class Difference:
    """One chain that is not as clew left it; ``change`` says what, in words."""

    table: str
    chain: str
    change: str

    def __str__(self) -> str:
        return f"{self.table}/{self.chain}: {self.change}"


def expected(rendered: Rendered, *, whole: bool = False) -> Expected:
    """The guarded chains' rules from a render (the per-port pieces in any order). ``whole``:
    every chain clew owns, the per-Service ones too (ordered: their probabilities chain up) —
    what a full sync would write."""
    chains: dict[ChainKey, ChainExpect] = {}
    by_chain: dict[ChainKey, list[str]] = {}
    for table in rendered.tables(only_services=None if whole else ()):
        wanted = set(rendered.filter_chains) if table.name == "filter" else set(NAT_TOP_CHAINS)
        for chain in table.chains:
            if whole or chain in wanted:
                by_chain.setdefault((table.name, chain), [])
        for rule in table.rules:
            chain = rule.split(" ", 2)[1]
            key = (table.name, chain)
            if key in by_chain:
                by_chain[key].append(rule)
    per_port = {rule.split(" ", 2)[1] for p in rendered.ports for rule in (*p.filter_rules, *p.nat_top_rules)}
    per_port |= {n.KUBE_SERVICES, n.KUBE_NODEPORTS, n.KUBE_EXTERNAL_SERVICES, n.KUBE_PROXY_FIREWALL}
    for key, rules in by_chain.items():
        tail = rendered.nat_tail if key == ("nat", n.KUBE_SERVICES) else ()
        chains[key] = ChainExpect(tuple(rules), ordered=key[1] not in per_port, tail=tuple(tail))
    return Expected(chains, jump_rules(rendered.config))


def quick_key(rule: str) -> tuple[str, ...]:
    """A cheap key equal for a rule as rendered and as ``iptables -S`` prints it back, in the
    common case: its option groups (split at `` -``, a ``!`` kept with the option it negates)
    sorted, ``/32`` and quotes dropped (iptables quotes every comment). Two rules with equal keys
    hold the same options, possibly in another order; unequal keys fall back to `canonical`, so
    a miss costs time, never a wrong answer."""
    text = f"{rule} ".replace('"', "").replace("/32 ", " ").replace(" ! -", " -!")
    if "--probability " in text:  # 0.3333333333 rendered, 0.33333333349 printed (a 32-bit fraction)
        text = _PROBABILITY.sub(lambda m: f"--probability {float(m.group(1)):.6f} ", text)
    return tuple(sorted(text.split(" -")))


def _canonical_keys(table: str, chain: str, rules: Sequence[str]) -> list[tuple[object, ...] | str]:
    """`canonical` of each rule; a rule that does not parse keeps its text (it then differs)."""
    if not rules:
        return []
    parsed = parse("\n".join([f"*{table}", f":{chain} - [0:0]", *rules, "COMMIT"]))
    got = parsed.chain(table, chain)
    if got is None or len(got.rules) != len(rules):
        return list(rules)
    return [canonical(r) for r in got.rules]


def _unmatched(
    table: str, chain: str, want: Sequence[str], have: Sequence[str], want_counts: Keys | None = None
) -> tuple[int, int]:
    """(rules of ``want`` missing from ``have``, rules of ``have`` not in ``want``), as multisets.
    ``want_counts``: the quick keys of ``want``, when already counted."""
    have_keys = [quick_key(r) for r in have]
    left_want = Counter(quick_key(r) for r in want) if want_counts is None else want_counts.copy()
    left_have = Counter(have_keys)
    common = left_want & left_have
    left_want -= common
    left_have -= common
    if not left_want and not left_have:
        return 0, 0
    want_keys = [quick_key(r) for r in want]
    cw = Counter(_canonical_keys(table, chain, _leftover(want, want_keys, left_want)))
    ch = Counter(_canonical_keys(table, chain, _leftover(have, have_keys, left_have)))
    return sum((cw - ch).values()), sum((ch - cw).values())


def _leftover(rules: Sequence[str], keys: Sequence[tuple[str, ...]], left: Keys) -> list[str]:
    """The rules whose quick key found no partner (``left`` counts them per key)."""
    left = Counter(left)
    out = []
    for rule, key in zip(rules, keys, strict=True):
        if left[key] > 0:
            left[key] -= 1
            out.append(rule)
    return out


def _same_order(table: str, chain: str, want: Sequence[str], have: Sequence[str]) -> bool:
    if [quick_key(r) for r in want] == [quick_key(r) for r in have]:
        return True
    return _canonical_keys(table, chain, want) == _canonical_keys(table, chain, have)


def _describe(missing: int, extra: int) -> str:
    parts = []
    if missing:
        parts.append(f"{missing} rule{'s' if missing != 1 else ''} missing")
    if extra:
        parts.append(f"{extra} unexpected rule{'s' if extra != 1 else ''}")
    return ", ".join(parts)


Seen = dict[ChainKey, tuple[int, int]]  # chain → hashes of (rules as rendered, lines as read) found equal


def compare(
    want: Expected, read: Mapping[ChainKey, Sequence[str] | None], seen: Seen | None = None
) -> list[Difference]:
    """What differs between ``want`` and ``read``: per (table, chain), the ``-A`` lines a read
    found, or None when the chain does not exist. Only what clew owns is compared: in the
    built-in chains, only that clew's jumps are there.

    ``seen`` (kept by the caller between calls) remembers the chains found equal: a chain whose
    rendered rules and read lines are both the same text as then is equal again without a key
    made (a full sync's check of 116k rules at 10k Services: 0.9 s → ~0.1 s)."""
    diffs: list[Difference] = []
    for table in want.canaries:
        if read.get((table, n.KUBE_PROXY_CANARY)) is None:
            diffs.append(Difference(table, n.KUBE_PROXY_CANARY, "chain missing"))
    for key, exp in want.chains.items():
        have = read.get(key)
        if have is None:
            diffs.append(Difference(*key, "chain missing"))
            continue
        fingerprint = (hash(exp.rules), hash(tuple(have))) if seen is not None else (0, 0)
        if seen is not None and seen.get(key) == fingerprint:
            continue
        change = _chain_change(key, exp, have)
        if change:
            diffs.append(Difference(*key, change))
        elif seen is not None:
            seen[key] = fingerprint
    diffs += _missing_jumps(want.jumps, read)
    if seen is not None:
        for gone in [k for k in seen if k not in want.chains]:
            del seen[gone]
    return diffs


def _chain_change(key: ChainKey, exp: ChainExpect, have: Sequence[str]) -> str:
    """What differs in one chain, in words ("" when nothing does)."""
    table, chain = key
    missing, extra = _unmatched(table, chain, exp.rules, have, exp.keys())
    if missing or extra:
        return _describe(missing, extra)
    if exp.ordered and not _same_order(table, chain, exp.rules, have):
        return "rules out of order"
    if exp.tail and not _same_order(table, chain, exp.tail, have[len(have) - len(exp.tail) :]):
        return f"{chain}'s final rule is no longer last"
    return ""


def stale_chains(want: Expected, read: Mapping[ChainKey, Sequence[str] | None]) -> list[Difference]:
    """Chains clew owns that ``read`` found but ``want`` does not hold (a full sync deletes them)."""
    return [
        Difference(table, chain, "chain not expected")
        for (table, chain), rules in read.items()
        if rules is not None and table in ("filter", "nat") and owned(chain) and (table, chain) not in want.chains
        and chain != n.KUBE_PROXY_CANARY
    ]  # fmt: skip


def _missing_jumps(jumps: Iterable[JumpRule], read: Mapping[ChainKey, Sequence[str] | None]) -> list[Difference]:
    by_chain: dict[ChainKey, list[JumpRule]] = {}
    for j in jumps:
        by_chain.setdefault((j.table, j.chain), []).append(j)
    diffs = []
    for (table, chain), rules in by_chain.items():
        have = read.get((table, chain)) or []
        wanted = [f"-A {chain} {' '.join(_quoted(j.args))}" for j in rules]
        present = Counter(quick_key(r) for r in have)
        absent = [w for w in wanted if present[quick_key(w)] == 0]
        if absent:  # the quick key missed: confirm with the canonical form
            keys = set(_canonical_keys(table, chain, have))
            absent = [w for w in absent if _canonical_keys(table, chain, [w])[0] not in keys]
        for w in absent:
            target = w.rsplit(" ", 1)[-1]
            diffs.append(Difference(table, chain, f"jump to {target} missing"))
    return diffs


def _quoted(args: Iterable[str]) -> list[str]:
    return [f'"{a}"' if " " in a else a for a in args]


def parse_spec(lines: Iterable[str]) -> list[str]:
    """The ``-A`` lines of ``iptables -S CHAIN`` output (its ``-N``/``-P`` line dropped)."""
    return [line for line in lines if line.startswith("-A ")]
