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
from itertools import islice
from typing import Any

from clew.netfilter.rules import (
    CORE_OPTIONS,
    PROTO_MODULES,
    PROTO_NAMES,
    Chain,
    Match,
    Option,
    Rule,
    Ruleset,
    Table,
    Target,
    canonical,
)

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
# Options of the protocol matches that iptables loads implicitly after ``-p PROTO``.
PROTO_OPTIONS = frozenset(
    {"--dport", "--sport", "--destination-port", "--source-port", "--tcp-flags", "--syn", "--tcp-option",
     "--icmp-type", "--chunk-types"}
)  # fmt: skip
# Options that always take exactly one word, whatever it looks like.
ONE_WORD = frozenset({"--comment", "--log-prefix", "--nflog-prefix"})
_COMMANDS = {
    "-A": "-A", "--append": "-A", "-I": "-I", "--insert": "-I", "-D": "-D", "--delete": "-D",
    "-R": "-R", "--replace": "-R", "-N": "-N", "--new-chain": "-N", "--new": "-N",
    "-X": "-X", "--delete-chain": "-X", "-F": "-F", "--flush": "-F", "-P": "-P", "--policy": "-P",
    "-Z": "-Z", "--zero": "-Z",
}  # fmt: skip
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)("?)|([^\s"]+)')
_ESCAPE = re.compile(r"\\(.)")
_SPECIAL = frozenset({"-", "!", '"', ""})
_COUNTERS = re.compile(r"\[\d+:\d+\]")


# A cached piece of a rule: (kind, [Option, the negated Option or None], a protocol option?,
# negates the next piece?); kind is _OPTION, _CORE or _OTHER (only the slow parser can tell).
_Piece = tuple[int, Any, bool, bool]
_OPTION, _CORE, _OTHER, _MATCH, _TARGET, _GOTO = range(6)
_FALLBACK: _Piece = (_OTHER, None, False, False)
# A cached rule segment: the core options in it and its Match or Target; None: not for the fast path.
_Segment = tuple[tuple[Option, ...], Any] | None
# Long words that are not options of a match or target.
_NOT_OPTIONS = frozenset({"--match", "--jump", "--goto", "--set-counters", *CORE_OPTIONS})


class _Bad(Exception):
    """A line that cannot be read; the message becomes a warning."""


def tokenize(line: str) -> list[str]:
    """iptables-restore's word splitting: white space, double quotes, backslash inside quotes."""
    if '"' not in line:
        return line.split()
    words: list[str] = []
    plain_end = -1  # where the last unquoted word ended: ``a"b c"`` is one word, ``"a b"c`` two
    for m in _QUOTED.finditer(line):
        plain = m.group(3)
        if plain is not None:
            words.append(plain)
            plain_end = m.end()
            continue
        if not m.group(2):
            raise _Bad("unterminated quote")
        word = _ESCAPE.sub(r"\1", m.group(1))
        if m.start() == plain_end:
            words[-1] += word
        else:
            words.append(word)
        plain_end = -1
    return words


class _Parser:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.ruleset = Ruleset()
        self.table: Table | None = None
        self.table_line = 0
        self.skipping = False  # inside an unknown table, until its COMMIT
        self.options: dict[tuple[str, tuple[str, ...], bool], Option] = {}
        self.targets: dict[tuple[str, tuple[Option, ...], bool], Target] = {}
        self.pieces: dict[str, _Piece] = {}
        self.cores: dict[str, _Segment] = {}
        self.matches: dict[str, _Segment] = {}
        self.targets_j: dict[str, _Segment] = {}
        self.targets_g: dict[str, _Segment] = {}

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
                    raise _Bad("bad [packets:bytes] counters")
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
            raise _Bad("chain declaration without a name")
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
            raise _Bad(f"chain {name} does not exist in table {table.name}")
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
                raise _Bad("counters without a command")
        cmd = _COMMANDS.get(words[0])
        if cmd is None:
            raise _Bad(f"unknown command {words[0]!r}")
        if cmd == "-A":
            if len(words) < 2:
                raise _Bad("-A without a chain")
            rule = self.rule(words, 2, table.name, words[1], lineno, text)
            chain = table.chains.get(words[1]) or self.chain(lineno, table, words[1])
            chain.rules.append(rule)
        elif cmd in ("-I", "-R", "-D"):
            self.edit(cmd, lineno, words, text, table)
        else:
            self.chain_command(cmd, lineno, words, table)

    def edit(self, cmd: str, lineno: int, words: list[str], text: str, table: Table) -> None:
        """``-I CHAIN [n] rule``, ``-R CHAIN n rule``, ``-D CHAIN (n | rule)``."""
        if len(words) < 2:
            raise _Bad(f"{cmd} without a chain")
        name = words[1]
        num = int(words[2]) if len(words) > 2 and words[2].isdigit() else None
        body = 3 if num is not None else 2
        if cmd == "-I":
            chain = table.chains.get(name) or self.chain(lineno, table, name)
            pos = 1 if num is None else num
            if not 1 <= pos <= len(chain.rules) + 1:
                raise _Bad(f"-I {name} {pos}: chain has {len(chain.rules)} rules")
            chain.rules.insert(pos - 1, self.rule(words, body, table.name, name, lineno, text))
            return
        chain = self.chain(lineno, table, name, create=False)
        if num is None and cmd == "-R":
            raise _Bad("-R needs a rule number")
        if num is not None and not 1 <= num <= len(chain.rules):
            raise _Bad(f"{cmd} {name} {num}: chain has {len(chain.rules)} rules")
        if cmd == "-R":
            assert num is not None
            chain.rules[num - 1] = self.rule(words, body, table.name, name, lineno, text)
        elif num is not None:
            del chain.rules[num - 1]
        else:
            want = canonical(self.rule(words, body, table.name, name, lineno, text))
            index = next((k for k, r in enumerate(chain.rules) if canonical(r) == want), None)
            if index is None:
                raise _Bad(f"-D {name}: no such rule")
            del chain.rules[index]

    def chain_command(self, cmd: str, lineno: int, words: list[str], table: Table) -> None:
        """``-N CHAIN``, ``-X [CHAIN]``, ``-F [CHAIN]``, ``-P CHAIN POLICY``, ``-Z``."""
        name = words[1] if len(words) > 1 else None
        builtin = BUILTIN_CHAINS[table.name]
        if cmd == "-Z":
            return
        if cmd == "-N":
            if name is None or name in table.chains:
                raise _Bad(f"-N: chain {name} already exists" if name else "-N without a chain")
            table.chains[name] = Chain(name, None)
        elif cmd == "-P":
            if name not in builtin or len(words) < 3:
                raise _Bad(f"-P needs a built-in chain of table {table.name} and a policy")
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
                raise _Bad(f"-X {name}: cannot delete a built-in or non-empty chain")
            del table.chains[name]

    # ------------------------------------------------------------------ rules

    def option(self, name: str, values: tuple[str, ...], negated: bool) -> Option:
        key = (name, values, negated)
        opt = self.options.get(key)
        if opt is None:
            opt = self.options[key] = Option(name, values, negated)
        return opt

    def rule(self, words: list[str], start: int, table: str, chain: str, lineno: int, text: str) -> Rule:
        try:
            return self._rule(words, start, table, chain, lineno, text)
        except IndexError:
            raise _Bad(f"{words[-1]} needs a value") from None

    def _rule(self, words: list[str], start: int, table: str, chain: str, lineno: int, text: str) -> Rule:
        option = self.option
        core: list[Option] = []
        matches: list[tuple[str, list[Option], Match | None]] = []
        cur: list[Option] | None = None
        cur_module = ""
        target: str | None = None
        target_opts: list[Option] = []
        goto = False
        proto: str | None = None
        implicit = -1  # index in matches of the implicit protocol match
        neg = False
        i, n = start, len(words)
        while i < n:
            w = words[i]
            i += 1
            if w == "!":
                if neg:
                    raise _Bad("two '!' in a row")
                neg = True
                continue
            if w == "-m" or w == "--match":
                cur_module = words[i]
                i += 1
                cur = []
                matches.append((cur_module, cur, None))
            elif w == "-j" or w == "-g" or w == "--jump" or w == "--goto":
                if target is not None:
                    raise _Bad("two targets")
                target = words[i]
                i += 1
                goto = w == "-g" or w == "--goto"
                cur, cur_module = target_opts, ""
            elif w in CORE_OPTIONS:
                short = CORE_OPTIONS[w]
                values: tuple[str, ...] = ()
                if short != "-f":
                    v = words[i]
                    i += 1
                    if v == "!":  # the old ``-s ! X`` form
                        if neg:
                            raise _Bad("two '!' for one option")
                        neg, v = True, words[i]
                        i += 1
                    values = (v,)
                    if short == "-p":
                        proto = v
                core.append(option(short, values, neg))
                neg = False
                continue
            elif w == "-c" or w == "--set-counters":
                if i + 2 > n:
                    raise _Bad(f"{w} needs packets and bytes")
                i += 2
            elif w == "-4":
                pass
            elif w[:1] != "-":
                raise _Bad(f"unexpected word {w!r}")
            else:
                if w in ONE_WORD:
                    j = i + 1
                    if j > n:
                        raise _Bad(f"{w} needs a value")
                else:
                    j = i
                    while j < n:
                        x = words[j]
                        if x[:1] == "-" or x == "!":
                            break
                        j += 1
                    if j == i and j + 1 < n and words[j] == "!" and words[j + 1][:1] != "-":
                        if neg:  # the old ``--opt ! value`` form
                            raise _Bad(f"two '!' for {w}")
                        neg, i, j = True, j + 1, j + 2
                opt = option(w, tuple(words[i:j]), neg)
                i, neg = j, False
                if w in PROTO_OPTIONS and cur_module not in PROTO_MODULES:
                    if implicit < 0:
                        implicit = _proto_match(matches)
                    matches[implicit][1].append(opt)
                elif cur is None:
                    raise _Bad(f"option {w} before any -m or -j")
                else:
                    cur.append(opt)
            if neg:
                raise _Bad(f"'!' cannot negate {w}")
        if neg:
            raise _Bad("'!' at the end of the rule")
        if implicit >= 0 and not matches[implicit][0]:
            if proto is None:
                raise _Bad(f"{matches[implicit][1][0].name} without -p")
            matches[implicit] = (PROTO_NAMES.get(proto, proto.lower()), matches[implicit][1], None)
        return Rule(
            table,
            chain,
            tuple(core),
            tuple([Match(mod, tuple(opts)) for mod, opts, _ in matches]),
            None if target is None else self.target(target, tuple(target_opts), goto),
            lineno,
            text,
        )

    # ------------------------------------------------------------------ fast path

    def piece(self, piece: str) -> _Piece:
        """What one ``-x …`` piece of a match or target segment (the text between two " -")
        means: a core option or an option; _FALLBACK when only the word-by-word parser can tell
        (``-m``/``-j`` spelt long, old ``! value`` forms, odd spacing, bad input)."""
        negate_next = piece[-2:] == " !"
        if negate_next:
            piece = piece[:-2]
        head, _, value = piece.partition(" ")
        if value[:1] not in _SPECIAL and " " not in value and '"' not in piece:  # ``X value``: the common case
            if head[:1] == "-" and head[1:2] != "-" and "-" + head not in _NOT_OPTIONS:
                name = "-" + head
                return (_OPTION, [Option(name, (value,)), None], name in PROTO_OPTIONS, negate_next)
            short = CORE_OPTIONS.get("-" + head)
            if short is not None and short != "-f":
                return (_CORE, [Option(short, (value,)), None], False, negate_next)
        elif head == "-comment" and value[:1] == '"' == value[-1:] and value.count('"') == 2 and "\\" not in value:
            return (_OPTION, [Option("--comment", (value[1:-1].replace("\0", "-"),)), None], False, negate_next)
        try:
            words = tokenize(piece)
        except _Bad:
            return _FALLBACK
        if "\0" in piece:
            words = [w.replace("\0", "-") for w in words]
        if not words or words[0][:2] == "--" or any(w[:1] == "-" or w == "!" for w in words[1:]):
            return _FALLBACK
        name, values = "-" + words[0], tuple(words[1:])
        short = CORE_OPTIONS.get(name)
        if short is not None:
            if len(values) != (0 if short == "-f" else 1):
                return _FALLBACK
            return (_CORE, [Option(short, values), None], False, negate_next)
        if name[:2] != "--" or name in _NOT_OPTIONS or (name in ONE_WORD and len(values) != 1):
            return _FALLBACK
        return (_OPTION, [Option(name, values), None], name in PROTO_OPTIONS, negate_next)

    def segment(self, cache: dict[str, _Segment], text: str, kind: int) -> _Segment:
        """Parse and cache one segment of a rule: the core options after the chain name
        (``kind`` _CORE), a match (_MATCH: ``MODULE [options]``, the text after " -m ") or a
        target (_TARGET: ``NAME [options]`` after " -j "; _GOTO after " -g ")."""
        if " " not in text and text[:1] not in _SPECIAL and '"' not in text and kind != _CORE:  # ``-j NAME``
            found: _Segment = ((), Target(text, (), kind == _GOTO) if kind != _MATCH else Match(text))
        elif kind == _CORE and text[:1] == "-" and text.count(" ") == 1 and '"' not in text:  # ``-s 10.0.0.1``
            name, value = text.split(" ")
            short = CORE_OPTIONS.get(name)
            if short is None or short == "-f" or value[:1] in _SPECIAL:
                found = self._segment(text, kind)
            else:
                found = ((Option(short, (value,)),), None)
        else:
            found = self._segment(text, kind) if kind == _CORE else self._one_option(text, kind)
        cache[text] = found
        return found

    def _one_option(self, text: str, kind: int) -> _Segment:
        """``NAME --option value`` (``DNAT --to-destination …``, ``mark --mark …``) quickly."""
        words = text.split(" ")
        if len(words) == 3 and '"' not in text:
            name, opt, value = words
            if (
                name[:1] not in _SPECIAL
                and opt[:2] == "--"
                and opt not in _NOT_OPTIONS
                and value[:1] not in _SPECIAL
                and (opt not in PROTO_OPTIONS or (kind == _MATCH and name in PROTO_MODULES))
            ):
                options = (Option(opt, (value,)),)
                return ((), Match(name, options) if kind == _MATCH else Target(name, options, kind == _GOTO))
        return self._segment(text, kind)

    def _segment(self, text: str, kind: int) -> _Segment:
        if kind == _CORE:
            name, rest = "", text
        else:
            name, _, rest = text.partition(" ")
            if name[:1] in _SPECIAL or '"' in name:
                return None
        parts = (" " + rest).split(" -") if rest else [""]
        neg = parts[0].strip() == "!"
        if parts[0].strip() and not neg:
            return None
        core: list[Option] = []
        options: list[Option] = []
        pieces, piece = self.pieces, self.piece
        for p in islice(parts, 1, None):
            e = pieces.get(p) or pieces.setdefault(p, piece(p))
            if e[0] == _CORE:
                core.append((e[1][1] or _negated(e[1])) if neg else e[1][0])
            elif e[0] != _OPTION or kind == _CORE or (e[2] and not (kind == _MATCH and name in PROTO_MODULES)):
                return None
            else:
                options.append((e[1][1] or _negated(e[1])) if neg else e[1][0])
            neg = e[3]
        if neg:
            return None
        if kind == _MATCH:
            return tuple(core), Match(name, tuple(options))
        if kind == _CORE:
            return tuple(core), None
        return tuple(core), Target(name, tuple(options), kind == _GOTO)

    def fast_rule(self, text: str, shown: str, lineno: int, table: Table) -> bool:
        """Add the rule ``-A CHAIN …`` to ``table`` the quick way: split at " -m " and " -j ",
        each segment parsed once and cached. False when the word-by-word parser must decide
        (it also writes the warnings). ``text`` has no tab and no trailing blank; ``shown`` is
        the line as written (without quote-hiding), for `Rule.text`."""
        body, sep, tail = text.rpartition(" -j ")
        targets = self.targets_j
        if not sep:
            body, sep, tail = text.rpartition(" -g ")
            targets = self.targets_g
            if not sep:
                body, tail = text, ""
        segs = body.split(" -m ")
        chain, _, rest = segs[0][3:].partition(" ")
        if not chain:
            return False
        core: tuple[Option, ...] = ()
        if rest:
            e = self.cores.get(rest) or self.segment(self.cores, rest, _CORE)
            if e is None:
                return False
            core = e[0]
        matches: list[Match] = []
        get = self.matches.get
        for seg in islice(segs, 1, None):
            e = get(seg) or self.segment(self.matches, seg, _MATCH)
            if e is None:
                return False
            if e[0]:
                core += e[0]
            matches.append(e[1])
        target = None
        if tail:
            e = targets.get(tail) or self.segment(targets, tail, _TARGET if targets is self.targets_j else _GOTO)
            if e is None:
                return False
            if e[0]:
                core += e[0]
            target = e[1]
        rule = Rule(table.name, chain, core, tuple(matches), target, lineno, shown)
        (table.chains.get(chain) or self.chain(lineno, table, chain)).rules.append(rule)
        return True

    def target(self, name: str, options: tuple[Option, ...], goto: bool) -> Target:
        key = (name, options, goto)
        found = self.targets.get(key)
        if found is None:
            found = self.targets[key] = Target(name, options, goto)
        return found


def _negated(pair: list[Option | None]) -> Option:
    plain = pair[0]
    assert plain is not None
    made = pair[1] = Option(plain.name, plain.values, True)
    return made


def _hide_quoted_dashes(raw: str) -> str | None:
    """``raw`` with " -" inside double quotes spelt " \\0", so that splitting on " -" keeps
    quoted words whole (pieces turn it back); None when only the slow parser can read the quotes
    (backslash escapes, an unterminated quote, a NUL)."""
    if "\\" in raw or "\0" in raw:
        return None
    parts = raw.split('"')
    if len(parts) % 2 == 0:
        return None
    parts[1::2] = [q.replace(" -", " \0") for q in parts[1::2]]
    return '"'.join(parts)


def _proto_match(matches: list[tuple[str, list[Option], Match | None]]) -> int:
    """Index of the protocol match that takes ``--dport`` & co. given outside it: an explicit
    ``-m tcp`` written earlier, else a new implicit one (module filled in from ``-p`` later)."""
    for k, (module, _, _) in enumerate(matches):
        if module in PROTO_MODULES:
            return k
    matches.append(("", [], None))
    return len(matches) - 1


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
                hidden = _hide_quoted_dashes(text)
                if hidden is not None and p.fast_rule(hidden, text, lineno, p.table):
                    continue
        try:
            p.line(lineno, raw)
        except _Bad as exc:
            p.warn(lineno, f"{exc}: line skipped")
