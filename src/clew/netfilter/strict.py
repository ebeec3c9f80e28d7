"""``iptables-restore`` as the kernel takes it: strict and all-or-nothing, on top of a ruleset.

`iptables_save.parse` reads a dump and never refuses anything (a chain used before it is
declared is created, a bad line is skipped with a warning) — right for explaining a node, wrong
for a stand-in kernel. `restore` uses the same grammar (the same reader, line by line) but
refuses what iptables-restore and the kernel refuse, naming the line as iptables-restore does
("line 4 failed"):

* any line the lenient parser would warn about (bad syntax, an undeclared user chain, a policy
  on a user chain, an unknown table, a table without COMMIT);
* ``-A``/``-I``/``-R`` with a jump to a chain that does not exist (at that line) or an unknown
  target; ``-D`` of a rule that is not there; ``-N`` of an existing chain;
* ``-X`` of a built-in chain, a chain that still has rules, or one a rule still jumps to.

Without ``noflush`` a table named in the input is replaced whole (user chains gone, built-in
chains empty with policy ACCEPT unless declared). The base ruleset is never modified: the result
is a new one, so a failure changes nothing. Pure.
"""

from __future__ import annotations

from clew.netfilter.iptables_save import BUILTIN_CHAINS, _lines, _Parser
from clew.netfilter.rules import Chain, Rule, Ruleset, Table

# Targets that are not chains: the standard verdicts and the extensions a node uses.
TARGETS = frozenset(
    {"ACCEPT", "DROP", "RETURN", "QUEUE", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP", "MARK", "CONNMARK",
     "REJECT", "LOG", "NFLOG", "NFQUEUE", "NOTRACK", "CT", "TCPMSS", "TPROXY", "CHECKSUM", "TTL", "DSCP", "TOS",
     "CLASSIFY", "SET", "AUDIT", "TRACE", "CONNSECMARK", "SECMARK", "TEE", "IDLETIMER", "LED", "SYNPROXY", "HMARK"}
)  # fmt: skip


class RestoreFailed(Exception):
    """The input was refused at ``line`` (1-based); nothing of it was applied."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line} failed: {reason}")


def copy_ruleset(rules: Ruleset) -> Ruleset:
    """A copy whose tables, chains and rule lists can change without touching ``rules``
    (rules themselves are immutable and shared)."""
    return Ruleset(
        {
            name: Table(name, {c.name: Chain(c.name, c.policy, list(c.rules)) for c in t.chains.values()})
            for name, t in rules.tables.items()
        }
    )


def empty_table(name: str) -> Table:
    """A table as the kernel creates it: its built-in chains, policy ACCEPT, no rules."""
    return Table(name, {c: Chain(c, "ACCEPT") for c in BUILTIN_CHAINS[name]})


def references(table: Table, chain: str) -> list[Rule]:
    """The rules of ``table`` that jump (or go) to ``chain``."""
    return [r for c in table.chains.values() for r in c.rules if r.target is not None and r.target.name == chain]


class _Strict(_Parser):
    def __init__(self, base: Ruleset, *, noflush: bool, origin: str) -> None:
        super().__init__(origin)
        self.ruleset = copy_ruleset(base)
        self.noflush = noflush
        self.opened: set[str] = set()

    def warn(self, lineno: int, text: str) -> None:
        raise RestoreFailed(lineno, text.removesuffix(": line skipped"))

    def open_table(self, lineno: int, name: str) -> None:
        if self.table is not None:
            self.warn(lineno, f"table {self.table.name} has no COMMIT before *{name}")
        if name not in BUILTIN_CHAINS:
            self.warn(lineno, f"unknown table {name!r}")
        tables = self.ruleset.tables
        if name not in tables or (not self.noflush and name not in self.opened):
            tables[name] = empty_table(name)
        self.opened.add(name)
        self.table, self.table_line = tables[name], lineno

    def declare(self, lineno: int, text: str) -> None:
        """A built-in chain's declaration only sets its policy (its rules stay, as with
        ``--noflush``); a user chain's creates or flushes it."""
        assert self.table is not None
        parts = text[1:].split()
        old = self.table.chains.get(parts[0]) if parts else None
        super().declare(lineno, text)
        if old is not None and parts[0] in BUILTIN_CHAINS[self.table.name]:
            self.table.chains[parts[0]].rules = old.rules

    def added(self, lineno: int, table: Table, rule: Rule) -> None:
        target = rule.target
        if target is None or target.name in TARGETS or target.name in table.chains:
            return
        self.warn(lineno, f"Couldn't load target `{target.name}': no such chain in table {table.name}")

    def chain_command(self, cmd: str, lineno: int, words: list[str], table: Table) -> None:
        if cmd == "-X" and len(words) > 1:
            name = words[1]
            if name in table.chains and name not in BUILTIN_CHAINS[table.name]:
                used = references(table, name)
                if used:
                    self.warn(lineno, f"-X {name}: still referenced by a rule in chain {used[0].chain}")
        super().chain_command(cmd, lineno, words, table)


def restore(base: Ruleset, text: str, *, noflush: bool = True, origin: str = "<restore>") -> Ruleset:
    """``base`` with ``text`` (iptables-restore input) applied, as a new ruleset; raises
    :class:`RestoreFailed` (and ``base`` is unchanged) if any line is refused."""
    p = _Strict(base, noflush=noflush, origin=origin)
    lines = text.split("\n")
    last = lines.pop()
    _lines(p, [*lines, last] if last.strip() else lines)
    if p.table is not None:
        p.warn(len(lines) + 1, f"COMMIT expected: table {p.table.name} (line {p.table_line}) is not committed")
    return p.ruleset
