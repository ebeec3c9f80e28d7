"""Reading one iptables rule: words → `Rule`, the way iptables-restore splits and attributes them.

Two readers that must agree (a test holds them to it): `RuleReader.rule`, word by word — the
reference — and `RuleReader.fast`, which splits a line at " -m " and " -j " and parses each
segment once, cached (a 10k-Service ruleset repeats the same segments thousands of times). Option
objects are interned so equal options are one object. `iptables_save` drives both.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Any

from clew.netfilter.rules import CORE_OPTIONS, PROTO_MODULES, PROTO_NAMES, Match, Option, Rule, Target

# Options of the protocol matches that iptables loads implicitly after ``-p PROTO``.
PROTO_OPTIONS = frozenset(
    {"--dport", "--sport", "--destination-port", "--source-port", "--tcp-flags", "--syn", "--tcp-option",
     "--icmp-type", "--chunk-types"}
)  # fmt: skip
# Options that always take exactly one word, whatever it looks like.
ONE_WORD = frozenset({"--comment", "--log-prefix", "--nflog-prefix"})
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)("?)|([^\s"]+)')
_ESCAPE = re.compile(r"\\(.)")
_SPECIAL = frozenset({"-", "!", '"', ""})

# A cached piece of a rule: (kind, [Option, the negated Option or None], a protocol option?,
# negates the next piece?); kind is _OPTION, _CORE or _OTHER (only the slow parser can tell).
_Piece = tuple[int, Any, bool, bool]
_OPTION, _CORE, _OTHER, _MATCH, _TARGET, _GOTO = range(6)
_FALLBACK: _Piece = (_OTHER, None, False, False)
# A cached rule segment: the core options in it and its Match or Target; None: not for the fast path.
_Segment = tuple[tuple[Option, ...], Any] | None
# Long words that are not options of a match or target.
_NOT_OPTIONS = frozenset({"--match", "--jump", "--goto", "--set-counters", *CORE_OPTIONS})


class BadLine(Exception):
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
            raise BadLine("unterminated quote")
        word = _ESCAPE.sub(r"\1", m.group(1))
        if m.start() == plain_end:
            words[-1] += word
        else:
            words.append(word)
        plain_end = -1
    return words


class RuleReader:
    """Reads rules into `Rule` objects, caching pieces, segments, options and targets."""

    def __init__(self) -> None:
        self.options: dict[tuple[str, tuple[str, ...], bool], Option] = {}
        self.targets: dict[tuple[str, tuple[Option, ...], bool], Target] = {}
        self.pieces: dict[str, _Piece] = {}
        self.cores: dict[str, _Segment] = {}
        self.matches: dict[str, _Segment] = {}
        self.targets_j: dict[str, _Segment] = {}
        self.targets_g: dict[str, _Segment] = {}

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
            raise BadLine(f"{words[-1]} needs a value") from None

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
                    raise BadLine("two '!' in a row")
                neg = True
                continue
            if w == "-m" or w == "--match":
                cur_module = words[i]
                i += 1
                cur = []
                matches.append((cur_module, cur, None))
            elif w == "-j" or w == "-g" or w == "--jump" or w == "--goto":
                if target is not None:
                    raise BadLine("two targets")
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
                            raise BadLine("two '!' for one option")
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
                    raise BadLine(f"{w} needs packets and bytes")
                i += 2
            elif w == "-4":
                pass
            elif w[:1] != "-":
                raise BadLine(f"unexpected word {w!r}")
            else:
                if w in ONE_WORD:
                    j = i + 1
                    if j > n:
                        raise BadLine(f"{w} needs a value")
                else:
                    j = i
                    while j < n:
                        x = words[j]
                        if x[:1] == "-" or x == "!":
                            break
                        j += 1
                    if j == i and j + 1 < n and words[j] == "!" and words[j + 1][:1] != "-":
                        if neg:  # the old ``--opt ! value`` form
                            raise BadLine(f"two '!' for {w}")
                        neg, i, j = True, j + 1, j + 2
                opt = option(w, tuple(words[i:j]), neg)
                i, neg = j, False
                if w in PROTO_OPTIONS and cur_module not in PROTO_MODULES:
                    if implicit < 0:
                        implicit = _proto_match(matches)
                    matches[implicit][1].append(opt)
                elif cur is None:
                    raise BadLine(f"option {w} before any -m or -j")
                else:
                    cur.append(opt)
            if neg:
                raise BadLine(f"'!' cannot negate {w}")
        if neg:
            raise BadLine("'!' at the end of the rule")
        if implicit >= 0 and not matches[implicit][0]:
            if proto is None:
                raise BadLine(f"{matches[implicit][1][0].name} without -p")
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
        except BadLine:
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

    def fast(self, text: str, shown: str, lineno: int, table: str) -> Rule | None:
        """The rule ``-A CHAIN …`` read the quick way: split at " -m " and " -j ", each segment
        parsed once and cached. None when the word-by-word parser must decide (it also writes
        the warnings). ``text`` has no tab and no trailing blank; ``shown`` is the line as
        written (without quote-hiding), for `Rule.text`."""
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
            return None
        core: tuple[Option, ...] = ()
        if rest:
            e = self.cores.get(rest) or self.segment(self.cores, rest, _CORE)
            if e is None:
                return None
            core = e[0]
        matches: list[Match] = []
        get = self.matches.get
        for seg in islice(segs, 1, None):
            e = get(seg) or self.segment(self.matches, seg, _MATCH)
            if e is None:
                return None
            if e[0]:
                core += e[0]
            matches.append(e[1])
        target = None
        if tail:
            e = targets.get(tail) or self.segment(targets, tail, _TARGET if targets is self.targets_j else _GOTO)
            if e is None:
                return None
            if e[0]:
                core += e[0]
            target = e[1]
        return Rule(table, chain, core, tuple(matches), target, lineno, shown)

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


def hide_quoted_dashes(raw: str) -> str | None:
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
