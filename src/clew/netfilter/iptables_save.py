"""Parse ``iptables-save`` output (and ``iptables-restore`` input) into a `Ruleset`.

Grammar (iptables-save(8), iptables-restore(8), iptables 1.8.9): ``*table`` opens a table and
``COMMIT`` closes it; ``:CHAIN POLICY [packets:bytes]`` declares a chain (policy ``-`` for a user
chain); a rule line is a command (``-A``, ``-I CHAIN [n]``, ``-D``, ``-R``, ``-N``, ``-X``,
``-F``, ``-P``, ``-Z``), optionally prefixed by ``[packets:bytes]``; ``#`` starts a comment line.
Words split on white space; double quotes group words and, inside them, a backslash escapes the
next character (iptables-save writes ``--comment "a \\"b\\""``); single quotes are plain
characters, as in iptables-restore.

A rule becomes core options (``-s -d -p -i -o -f``, names shortened), ``-m`` matches with their
options and a target: an option's values are the words up to the next word that starts with ``-``
or is ``!``; a ``!`` negates the option after it (the old ``-s ! X`` form is read too). Protocol
options given without ``-m`` (``-p tcp --dport 80``) form an implicit match of that protocol, as
iptables loads one (``iptables-save`` prints it back as ``-m tcp``).

Bad input never raises: a line that cannot be read is skipped with a warning
``"{origin}:{line}: …"`` in `Ruleset.warnings`, and parsing goes on. A table repeated in the input
is continued (as ``--noflush`` would); a redeclared chain is flushed; a chain used but never
declared is created (built-in chains silently, with policy ACCEPT); a table without COMMIT keeps
its rules, and a last line without its newline in such a table is dropped as cut off.
`clew.netfilter.rules.canonical` (also importable from here) gives the form in which a rule as
clew renders it and as ``iptables-save`` prints it back compare equal.

Speed (a 10k-Service dump, 158k lines, parses in ~0.55 s): ``-A`` lines are cut at " -m " and
" -j " into segments, each parsed once and cached (``-m tcp -p tcp``, ``-j KUBE-MARK-MASQ`` recur
thousands of times); anything unusual (old negation forms, escapes, odd spacing, errors) goes to
the word-by-word parser, which is the reference (a test checks that both agree). The collector
is paused while parsing: the result is ~1M acyclic objects.
"""

from __future__ import annotations

import gc
import re

from clew.netfilter.rule_reader import BadLine, RuleReader, hide_quoted_dashes, tokenize
from clew.netfilter.rules import Chain, Rule, Ruleset, Table, canonical

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
_COMMANDS = {
    "-A": "-A", "--append": "-A", "-I": "-I", "--insert": "-I", "-D": "-D", "--delete": "-D",
    "-R": "-R", "--replace": "-R", "-N": "-N", "--new-chain": "-N", "--new": "-N",
    "-X": "-X", "--delete-chain": "-X", "-F": "-F", "--flush": "-F", "-P": "-P", "--policy": "-P",
    "-Z": "-Z", "--zero": "-Z",
}  # fmt: skip
_COUNTERS = re.compile(r"\[\d+:\d+\]")


class _Parser:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.ruleset = Ruleset()
        self.table: Table | None = None
        self.table_line = 0
        self.skipping = False  # inside an unknown table, until its COMMIT
        self.reader = RuleReader()
        self.rule = self.reader.rule

    def warn(self, lineno: int, text: str) -> None:
        self.ruleset.warnings.append(f"{self.origin}:{lineno}: {text}")

    # ------------------------------------------------------------------ lines

    def line(self, lineno: int, raw: str) -> None:
        text = raw.strip()
        if not text or text[0] == "#":
            return
        head = text[0]
        if head == "*":
            self.open_table(lineno, text[1:].strip())
        elif text == "COMMIT":
            self.commit(lineno)
        elif self.skipping:
            return
        elif self.table is None:
            self.warn(lineno, f"{text[:40]!r} outside a table (no *table line before it): skipped")
        elif head == ":":
            self.declare(lineno, text)
        else:
            if head == "[":
                m = _COUNTERS.match(text)
                if m is None:
                    raise BadLine("bad [packets:bytes] counters")
                text = text[m.end() :].lstrip()
            self.command(lineno, text, self.table)

    def open_table(self, lineno: int, name: str) -> None:
        if self.table is not None or self.skipping:
            self.unterminated(lineno)
        self.table, self.skipping = None, False
        if name not in BUILTIN_CHAINS:
            self.skipping = True
            self.warn(lineno, f"unknown table {name!r}: its lines are skipped up to COMMIT")
            return
        self.table = self.ruleset.tables.get(name) or self.ruleset.tables.setdefault(name, Table(name))
        self.table_line = lineno

    def commit(self, lineno: int) -> None:
        if self.table is None and not self.skipping:
            self.warn(lineno, "COMMIT outside a table: ignored")
        self.table, self.skipping = None, False

    def unterminated(self, lineno: int) -> None:
        if self.table is not None:
            self.warn(
                lineno,
                f"table {self.table.name} (opened at line {self.table_line}) has no COMMIT: "
                "input truncated? its rules so far are kept",
            )

    def declare(self, lineno: int, text: str) -> None:
        assert self.table is not None
        parts = text[1:].split()
        if not parts:
            raise BadLine("chain declaration without a name")
        name = parts[0]
        policy = parts[1] if len(parts) > 1 else "-"
        builtin = name in BUILTIN_CHAINS[self.table.name]
        if policy != "-" and not builtin:
            self.warn(lineno, f"user chain {name} cannot have a policy ({policy}): ignored")
        old = self.table.chains.get(name)
        if builtin:
            keep = old.policy if old is not None and old.policy else "ACCEPT"
            self.table.chains[name] = Chain(name, keep if policy == "-" else policy)
        else:
            self.table.chains[name] = Chain(name, None)

    def chain(self, lineno: int, table: Table, name: str, *, create: bool = True) -> Chain:
        found = table.chains.get(name)
        if found is not None:
            return found
        builtin = name in BUILTIN_CHAINS[table.name]
        if not create and not builtin:
            raise BadLine(f"chain {name} does not exist in table {table.name}")
        if not builtin:
            self.warn(lineno, f"chain {name} was never declared in table {table.name}: created")
        made = table.chains[name] = Chain(name, "ACCEPT" if builtin else None)
        return made

    # ------------------------------------------------------------------ commands

    def command(self, lineno: int, text: str, table: Table) -> None:
        words = tokenize(text)
        if words[0] in ("-c", "--set-counters"):  # ``-c packets bytes -A …``: counters first
            words = words[3:]
            if not words:
                raise BadLine("counters without a command")
        cmd = _COMMANDS.get(words[0])
        if cmd is None:
            raise BadLine(f"unknown command {words[0]!r}")
        if cmd == "-A":
            if len(words) < 2:
                raise BadLine("-A without a chain")
            rule = self.rule(words, 2, table.name, words[1], lineno, text)
            chain = table.chains.get(words[1]) or self.chain(lineno, table, words[1])
            self.added(lineno, table, rule)
            chain.rules.append(rule)
        elif cmd in ("-I", "-R", "-D"):
            self.edit(cmd, lineno, words, text, table)
        else:
            self.chain_command(cmd, lineno, words, table)

    def edit(self, cmd: str, lineno: int, words: list[str], text: str, table: Table) -> None:
        """``-I CHAIN [n] rule``, ``-R CHAIN n rule``, ``-D CHAIN (n | rule)``."""
        if len(words) < 2:
            raise BadLine(f"{cmd} without a chain")
        name = words[1]
        num = int(words[2]) if len(words) > 2 and words[2].isdigit() else None
        body = 3 if num is not None else 2
        if cmd == "-I":
            chain = table.chains.get(name) or self.chain(lineno, table, name)
            pos = 1 if num is None else num
            if not 1 <= pos <= len(chain.rules) + 1:
                raise BadLine(f"-I {name} {pos}: chain has {len(chain.rules)} rules")
            rule = self.rule(words, body, table.name, name, lineno, text)
            self.added(lineno, table, rule)
            chain.rules.insert(pos - 1, rule)
            return
        chain = self.chain(lineno, table, name, create=False)
        if num is None and cmd == "-R":
            raise BadLine("-R needs a rule number")
        if num is not None and not 1 <= num <= len(chain.rules):
            raise BadLine(f"{cmd} {name} {num}: chain has {len(chain.rules)} rules")
        if cmd == "-R":
            assert num is not None
            rule = self.rule(words, body, table.name, name, lineno, text)
            self.added(lineno, table, rule)
            chain.rules[num - 1] = rule
        elif num is not None:
            del chain.rules[num - 1]
        else:
            want = canonical(self.rule(words, body, table.name, name, lineno, text))
            index = next((k for k, r in enumerate(chain.rules) if canonical(r) == want), None)
            if index is None:
                raise BadLine(f"-D {name}: no such rule")
            del chain.rules[index]

    def chain_command(self, cmd: str, lineno: int, words: list[str], table: Table) -> None:
        """``-N CHAIN``, ``-X [CHAIN]``, ``-F [CHAIN]``, ``-P CHAIN POLICY``, ``-Z``."""
        name = words[1] if len(words) > 1 else None
        builtin = BUILTIN_CHAINS[table.name]
        if cmd == "-Z":
            return
        if cmd == "-N":
            if name is None or name in table.chains:
                raise BadLine(f"-N: chain {name} already exists" if name else "-N without a chain")
            table.chains[name] = Chain(name, None)
        elif cmd == "-P":
            if name not in builtin or len(words) < 3:
                raise BadLine(f"-P needs a built-in chain of table {table.name} and a policy")
            self.chain(lineno, table, name).policy = words[2]
        elif cmd == "-F":
            for chain in [self.chain(lineno, table, name, create=False)] if name else table.chains.values():
                chain.rules.clear()
        elif name is None:  # -X: every empty user chain
            for chain in [c for c in table.chains.values() if c.name not in builtin and not c.rules]:
                del table.chains[chain.name]
        else:
            chain = self.chain(lineno, table, name, create=False)
            if name in builtin or chain.rules:
                raise BadLine(f"-X {name}: cannot delete a built-in or non-empty chain")
            del table.chains[name]

    def fast_rule(self, text: str, shown: str, lineno: int, table: Table) -> bool:
        """Append the rule the quick way (see `RuleReader.fast`); False: read it word by word."""
        rule = self.reader.fast(text, shown, lineno, table.name)
        if rule is None:
            return False
        chain = table.chains.get(rule.chain) or self.chain(lineno, table, rule.chain)
        self.added(lineno, table, rule)
        chain.rules.append(rule)
        return True

    def added(self, lineno: int, table: Table, rule: Rule) -> None:
        """Called for every rule written (``-A``/``-I``/``-R``) before it is stored; the strict
        reader (`restore`) checks its jump there."""


def parse(text: str, *, origin: str = "<text>") -> Ruleset:
    """Parse iptables-save output or iptables-restore input; never raises on bad input."""
    p = _Parser(origin)
    lines = text.split("\n")
    last = lines.pop()  # "" when the text ends with a newline
    enabled = gc.isenabled()
    gc.disable()  # ~10 objects a rule, none cyclic: collections would only cost time
    try:
        _lines(p, lines)
    finally:
        if enabled:
            gc.enable()
    end = len(lines)
    if last.strip():
        end += 1
        if p.table is not None and last.strip() != "COMMIT":  # a dump cut off in the middle of a line
            p.warn(end, "last line has no newline in an uncommitted table: cut off? skipped")
        else:
            _lines(p, [last], end)
    if p.table is not None:
        p.unterminated(end)
    return p.ruleset


def _lines(p: _Parser, lines: list[str], first: int = 1) -> None:
    for lineno, raw in enumerate(lines, first):
        if raw[:1] == "[" and (counters := _COUNTERS.match(raw)):  # iptables-save -c
            raw = raw[counters.end() :].lstrip()
        if raw[:3] == "-A " and p.table is not None:
            text = raw.rstrip()
            if not text.isprintable():  # tabs and other blanks: word by word
                pass
            elif '"' not in text:
                if p.fast_rule(text, text, lineno, p.table):
                    continue
            else:
                hidden = hide_quoted_dashes(text)
                if hidden is not None and p.fast_rule(hidden, text, lineno, p.table):
                    continue
        try:
            p.line(lineno, raw)
        except BadLine as exc:
            p.warn(lineno, f"{exc}: line skipped")
