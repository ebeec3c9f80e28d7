"""The part of nft's command language `clew.fakes.nft.FakeNft` understands, parsed into plain
values: commands (``VERB OBJECT [FAMILY] TABLE [NAME] [REST]``, one per line or separated by
``;``), set/map declarations, base-chain specs, element lists and the references a rule body
makes. Pure; raises `NftSyntax` (nft's "syntax error" class of refusal) for what it cannot read.

Not understood (refused, never misread): the block form ``table ip t { chain c { … } }``,
``define``/``include``, ``list``/``reset``/``rename``/``monitor``, anonymous chains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clew.kernel.nft_json import CHAIN_VERDICTS, VERDICTS, normal_component

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
VERBS = ("add", "create", "delete", "flush", "insert", "replace")
OBJECTS = ("table", "chain", "set", "map", "element", "rule", "ruleset")
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
# words nft 1.0.6 reads as keywords, so never as a table, chain, set or map name, even quoted
# (measured: ``add chain ip t dst`` → "syntax error, unexpected dst, expecting string")
_KEYWORD_WORDS = (
    "dst masquerade reject drop accept counter ip tcp udp sctp meta th mark ct fib numgen map set element rule "
    "chain table type hook priority policy comment snat dnat redirect log limit quota return jump goto continue "
    "queue flow dup fwd notrack synproxy vmap ah esp comp icmp igmp dccp udplite rt frag hbh mh exthdr inet netdev "
    "bridge arp vlan ether secmark tproxy osf exists missing interval timeout dynamic constant size random"
)
KEYWORDS = frozenset(_KEYWORD_WORDS.split())
_WORD = re.compile(r'"[^"]*"|[{}]|[^\s{}"]+')


class NftSyntax(ValueError):
    """Text the fake cannot read (nft would say "syntax error" or similar)."""


@dataclass(frozen=True)
class Command:
    verb: str
    obj: str
    family: str
    table: str
    name: str  # chain/set/map name; "" for table and ruleset
    rest: str  # the text after the name: a { spec }, an element list, a rule body
    text: str  # the whole command, for error messages


@dataclass(frozen=True)
class SetSpec:
    """A set/map declaration: ``kind`` is ``type`` or ``typeof``; ``key``/``data`` as written
    (whitespace normalised; ``data`` None for a set); ``flags`` sorted."""

    kind: str
    key: str
    data: str | None
    flags: tuple[str, ...] = ()
    comment: str = ""
    timeout: str = ""
    other: tuple[str, ...] = ()  # size, policy, gc-interval, counter… kept as written
    elements: str = ""  # the ``elements = { … }`` list, if any (text)

    @property
    def key_arity(self) -> int:
        return len(split_dots(self.key))

    @property
    def data_arity(self) -> int:
        return len(split_dots(self.data)) if self.data is not None else 0

    @property
    def verdict(self) -> bool:
        return self.data == "verdict"

    @property
    def interval(self) -> bool:
        return "interval" in self.flags

    def same_shape(self, other: SetSpec) -> bool:
        """Whether re-adding ``other`` over this declaration is accepted (nft compares types
        and flags; a comment or size is not compared)."""
        if self.kind != other.kind:
            return (self.key_arity, self.data is None, self.flags) == (other.key_arity, other.data is None, other.flags)
        return (self.key, self.data, self.flags) == (other.key, other.data, other.flags)


@dataclass(frozen=True)
class BaseSpec:
    """A base chain: type, hook, priority (a number: named priorities are resolved), policy."""

    type: str
    hook: str
    priority: int
    policy: str = "accept"
    device: str = ""


@dataclass(frozen=True)
class ElementText:
    key: str
    value: str | None
    comment: str


@dataclass(frozen=True)
class RuleText:
    """A rule command's body with its position (``handle N`` for replace/delete, ``position N``
    for add/insert), and what it references."""

    body: str
    handle: int | None
    position: int | None
    chains: tuple[str, ...]
    sets: tuple[str, ...]


def words(text: str) -> list[str]:
    """Tokens: quoted strings, braces, and runs of other non-space characters."""
    return _WORD.findall(text)


def unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


_DOTS = re.compile(r"\s\.\s")
_SEPARATORS = re.compile(r'"[^"]*"|[{}]|[^"{}]+')


def split_dots(text: str) -> list[str]:
    """The components of a concatenation (``a . b . c``), whitespace normalised."""
    if " . " in text and "  " not in text and "\t" not in text and "\n" not in text:
        return text.strip().split(" . ")  # the common, already normal spelling: fast
    return [" ".join(p.split()) for p in _DOTS.split(f" {text} ")]


def split_top(text: str, seps: str) -> list[str]:
    """Split at ``seps`` characters outside quotes and braces (empty pieces dropped)."""
    if '"' not in text and "{" not in text:  # fast path: an element list of plain keys
        parts = re.split("[" + re.escape(seps) + "]", text)
        return [p.strip() for p in parts if p.strip()]
    parts = []
    current: list[str] = []
    depth = 0
    for piece in _SEPARATORS.findall(text):
        if piece.startswith('"'):
            current.append(piece)
            continue
        if piece in "{}":
            depth += 1 if piece == "{" else -1
            current.append(piece)
            continue
        if depth:
            current.append(piece)
            continue
        chunks = re.split("[" + re.escape(seps) + "]", piece)
        current.append(chunks[0])
        for chunk in chunks[1:]:
            parts.append("".join(current))
            current = [chunk]
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_PIECE = re.compile(r'"[^"]*"?|#[^\n]*|[{}]|[;\n]|[^"#{};\n]+')


def statements(script: str) -> list[tuple[int, str]]:
    """A script's commands with the line each starts on: split at newlines and ``;`` outside
    braces and quotes, ``#`` comments dropped, lines inside braces joined. Linear in the text
    (a full load is megabytes)."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    depth, line, start, blank = 0, 1, 0, True
    for m in _PIECE.finditer(script):
        piece = m.group(0)
        if piece.startswith("#"):
            continue
        if piece.startswith('"') and (len(piece) == 1 or not piece.endswith('"')):
            raise NftSyntax(f"syntax error, unterminated string [line {line}]")
        if depth == 0 and piece in (";", "\n"):
            out.append((start, "".join(current)))
            current, blank = [], True
            line += piece == "\n"
            continue
        if piece == "{":
            depth += 1
        elif piece == "}":
            depth -= 1
            if depth < 0:
                raise NftSyntax(f"syntax error, unexpected '}}' [line {line}]")
        if blank and piece.strip():
            start, blank = line, False
        current.append(" " if piece == "\n" else piece)
        line += piece.count("\n")
    if depth:
        raise NftSyntax("syntax error, unterminated '{'")
    out.append((start, "".join(current)))
    return [(n, " ".join(s.split())) for n, s in out if s.strip()]


def _take(text: str) -> tuple[str, str]:
    """The first word of ``text`` (a ``{`` ends a word) and the rest."""
    text = text.lstrip()
    m = re.match(r'"[^"]*"|[^\s{]+', text)
    if not m:
        return "", text
    return m.group(0), text[m.end() :].lstrip()


def command(text: str) -> Command:
    """One statement → `Command`."""
    verb, rest = _take(text)
    if verb == "table":
        raise NftSyntax("the block form (table … { … }) is not understood by the fake: use commands")
    if verb not in VERBS:
        raise NftSyntax(f"syntax error, unexpected {verb!r}")
    obj, rest = _take(rest)
    if obj not in OBJECTS:
        raise NftSyntax(f"syntax error, unexpected {obj!r} after {verb}")
    if obj == "ruleset":
        if verb != "flush":
            raise NftSyntax(f"syntax error: {verb} ruleset")
        family, rest = _take(rest)
        if rest:
            raise NftSyntax(f"syntax error, unexpected {rest!r}")
        return Command(verb, obj, family, "", "", "", text)
    if verb in ("insert", "replace") and obj != "rule":
        raise NftSyntax(f"syntax error: {verb} {obj}")
    family, rest = _take(rest)
    if family not in FAMILIES:
        family, rest = "ip", f"{family} {rest}"
    table, rest = _take(rest)
    if not table:
        raise NftSyntax(f"syntax error: {verb} {obj} needs a table")
    _check_name(table)
    if obj == "table":
        return Command(verb, obj, family, table, "", rest, text)
    name, rest = _take(rest)
    if not name or name == "{":
        raise NftSyntax(f"syntax error: {verb} {obj} needs a name")
    _check_name(name)
    return Command(verb, obj, family, table, name, rest, text)


def _check_name(name: str) -> None:
    if name.startswith('"'):
        raise NftSyntax(f"syntax error, unexpected quoted string, expecting string ({name})")
    if name in KEYWORDS:
        raise NftSyntax(f"syntax error, unexpected {name}, expecting string")


def block(rest: str, what: str) -> str:
    """The inside of ``{ … }`` (the whole of ``rest``)."""
    rest = rest.strip()
    if not (rest.startswith("{") and rest.endswith("}")):
        raise NftSyntax(f"syntax error, expecting '{{' in {what}")
    return rest[1:-1].strip()


def table_comment(rest: str) -> str:
    if not rest:
        return ""
    comment = ""
    for clause in split_top(block(rest, "table"), ";\n"):
        w = words(clause)
        if w[:1] == ["comment"] and len(w) == 2:
            comment = unquote(w[1])
        elif w not in (["flags", "dormant"],):
            raise NftSyntax(f"syntax error in table spec: {clause!r}")
    return comment


def set_spec(rest: str, is_map: bool) -> SetSpec:
    """``{ type A . B [: C] ; flags … ; comment "…" ; elements = { … } }`` → `SetSpec`."""
    kind, key, data = "", "", None
    flags: tuple[str, ...] = ()
    comment = timeout = elements = ""
    other: list[str] = []
    for clause in split_top(block(rest, "set declaration"), ";\n"):
        head, tail = _take(clause)
        if head in ("type", "typeof"):
            kind = head
            key_text, colon, data_text = _split_colon(tail)
            key = " . ".join(split_dots(key_text))
            data = " . ".join(split_dots(data_text)) if colon else None
        elif head == "flags":
            flags = tuple(sorted(f.strip() for f in tail.split(",") if f.strip()))
        elif head == "comment":
            comment = unquote(tail.strip())
        elif head == "timeout":
            timeout = tail.strip()
        elif head == "elements":
            elements = tail.lstrip("= ").strip()
        elif head in ("size", "policy", "gc-interval", "counter", "auto-merge"):
            other.append(" ".join(clause.split()))
        else:
            raise NftSyntax(f"syntax error in set declaration: {clause!r}")
    if not kind or not key:
        raise NftSyntax("set definition does not specify key")
    if is_map and data is None:
        raise NftSyntax("syntax error, a map needs 'key : data'")
    if not is_map and data is not None:
        raise NftSyntax("syntax error, unexpected colon (a set has no data: declare a map)")
    return SetSpec(kind, key, data, flags, comment, timeout, tuple(other), elements)


def _split_colon(text: str) -> tuple[str, bool, str]:
    """``key : data`` at the first standalone ``:`` (outside quotes/braces)."""
    w = words(text)
    depth = 0
    for i, t in enumerate(w):
        depth += t == "{"
        depth -= t == "}"
        if t == ":" and depth == 0:
            return " ".join(w[:i]), True, " ".join(w[i + 1 :])
    return " ".join(w), False, ""


def base_spec(rest: str) -> BaseSpec | None:
    """A chain's ``{ type T hook H priority P ; policy X ; }`` (None when it has none)."""
    if not rest:
        return None
    settings: dict[str, str] = {}
    for clause in split_top(block(rest, "chain spec"), ";\n"):
        w = [unquote(x) for x in words(clause)]
        i = 0
        while i < len(w):
            if w[i] in ("type", "hook", "device", "policy", "comment") and i + 1 < len(w):
                settings[w[i]] = w[i + 1]
                i += 2
            elif w[i] == "priority" and i + 1 < len(w):
                settings["priority"] = " ".join(w[i + 1 :])
                i = len(w)
            else:
                raise NftSyntax(f"syntax error in chain spec: {clause!r}")
    if not settings or set(settings) <= {"comment"}:
        return None
    if not {"type", "hook", "priority"} <= set(settings):
        raise NftSyntax("syntax error: a base chain needs type, hook and priority")
    return BaseSpec(
        settings["type"], settings["hook"], priority(settings["priority"]), settings.get("policy", "accept"),
        settings.get("device", ""),
    )  # fmt: skip


def priority(text: str) -> int:
    """``-100``, ``dstnat``, ``filter + 10`` → a number."""
    w = text.split()
    try:
        if len(w) == 1:
            return PRIORITY_NAMES[w[0]] if w[0] in PRIORITY_NAMES else int(w[0])
        if len(w) == 3 and w[0] in PRIORITY_NAMES and w[1] in "+-":
            return PRIORITY_NAMES[w[0]] + (int(w[2]) if w[1] == "+" else -int(w[2]))
    except ValueError:
        pass
    raise NftSyntax(f"syntax error: priority {text!r}")


def elements(rest: str) -> list[ElementText]:
    """``{ k1 : v1, k2 comment "x" : v2 }`` (or a set's ``{ k1, k2 }``) → elements."""
    found: list[ElementText] = []
    for item in split_top(block(rest, "element list"), ","):
        w = words(item)
        key_words: list[str] = []
        comment = ""
        value: str | None = None
        i = 0
        while i < len(w):
            t = w[i]
            if t == ":":
                value = " ".join(w[i + 1 :])
                if not value:
                    raise NftSyntax(f"syntax error: no value after ':' in {item!r}")
                break
            if t == "comment" and i + 1 < len(w):
                comment = unquote(w[i + 1])
                i += 2
                continue
            if t in ("timeout", "expires") and i + 1 < len(w):
                i += 2
                continue
            if ":" in t and not t.startswith('"'):
                raise NftSyntax(f"write ' : ' between key and value (the fake reads no IPv6): {item!r}")
            key_words.append(t)
            i += 1
        if not key_words:
            raise NftSyntax(f"syntax error: an element without a key in {item!r}")
        key = " . ".join(normal_component(c) for c in split_dots(" ".join(key_words)))
        found.append(ElementText(key, _normal_value(value), comment))
    return found


def _normal_value(value: str | None) -> str | None:
    if value is None:
        return None
    return " . ".join(normal_component(c) for c in split_dots(value))


def verdict_target(value: str) -> str | None:
    """The chain a verdict names (``goto X`` → X), None for ``drop`` etc.; raises for a non-verdict."""
    w = value.split()
    if len(w) == 2 and w[0] in CHAIN_VERDICTS:
        return unquote(w[1])
    if len(w) == 1 and w[0] in VERDICTS:
        return None
    raise NftSyntax(f"datatype mismatch, expected verdict, got {value!r}")


def rule(rest: str, verb: str) -> RuleText:
    """A rule command's rest: ``[handle N | position N | index N] BODY`` (``handle N`` only
    for delete)."""
    w = words(rest)
    handle = position = None
    if len(w) >= 2 and w[0] in ("handle", "position"):
        try:
            number = int(w[1])
        except ValueError:
            raise NftSyntax(f"syntax error: {w[0]} {w[1]!r}") from None
        if w[0] == "handle":
            handle = number
        else:
            position = number
        w = w[2:]
    if verb == "delete":
        if handle is None or w:
            raise NftSyntax("syntax error: delete rule needs 'handle N' and nothing else")
        return RuleText("", handle, None, (), ())
    if verb == "replace" and handle is None:
        raise NftSyntax("syntax error: replace rule needs 'handle N'")
    if not w:
        raise NftSyntax("syntax error: a rule without a body")
    chains: list[str] = []
    sets: list[str] = []
    for i, t in enumerate(w):
        if t.startswith('"'):
            continue
        if t in CHAIN_VERDICTS and i + 1 < len(w):
            target = w[i + 1].rstrip(",")
            _check_name(target)
            chains.append(target)
        elif t.startswith("@") and len(t) > 1:
            sets.append(t[1:].rstrip(","))
    return RuleText(" ".join(w), handle, position, tuple(chains), tuple(sets))
