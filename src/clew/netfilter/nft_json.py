"""Read ``nft -j list ruleset`` (libnftables JSON, schema 1, nft 1.0.6) into tables, chains,
rules, sets and maps.

Rules keep their statements as the JSON dictionaries libnftables printed (the tracer evaluates
them as they are: re-encoding ~100k rules would cost more than reading them); chains, sets and
maps become small records. Sets and maps keep their declared key types (``type`` or the types
``typeof`` resolved to) and their elements as printed; an exact-key index for lookups is built on
first use (`NftSet.index`), so a 10k-Service ruleset parses in well under a second.

Bad input never raises past `parse`: a document that is not nft JSON is an `NftError` with one
line; an object of an unexpected shape is skipped with a warning naming it.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from typing import Any

Expr = Any  # a libnftables JSON expression: str, int, list or dict


class NftError(ValueError):
    """The text is not ``nft -j list ruleset`` output (one line, for the user)."""


@dataclass(slots=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int
    exprs: list[Expr]
    comment: str | None = None
    position: int = 0  # 1-based place in its chain, for "rule 3 of chain x"

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.chain} rule {self.position} (handle {self.handle})"


@dataclass(slots=True)
class NftChain:
    family: str
    table: str
    name: str
    handle: int = 0
    type: str | None = None  # filter | nat | route; None for a regular chain
    hook: str | None = None
    prio: int = 0
    policy: str = "accept"
    raw: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the rules' JSON, in order
    _rules: list[NftRule] | None = field(default=None, repr=False)

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def rules(self) -> list[NftRule]:
        """The chain's rules, made from their JSON on first use (a trace visits a few chains of
        a 40k-chain table: making 80k rule records up front would double the parse)."""
        if self._rules is None:
            self._rules = [_rule(body, n) for n, body in enumerate(self.raw, 1)]
        return self._rules


def _rule(body: dict[str, Any], position: int) -> NftRule:
    expr = body.get("expr", [])
    return NftRule(
        family=str(body["family"]),
        table=str(body["table"]),
        chain=str(body["chain"]),
        handle=int(body.get("handle", 0)),
        exprs=expr if isinstance(expr, list) else [],
        comment=body.get("comment"),
        position=position,
    )


@dataclass(slots=True)
class NftSet:
    """A named set or map. ``key_types`` as declared (one per concatenated field); ``map_type``
    is None for a set, ``"verdict"`` for a verdict map, else the data type(s). ``elements`` are
    ``(key, value)`` pairs as printed (``value`` None in a set)."""

    family: str
    table: str
    name: str
    key_types: tuple[str, ...]
    map_type: str | tuple[str, ...] | None = None
    flags: tuple[str, ...] = ()
    elements: list[tuple[Expr, Expr]] = field(default_factory=list)
    comment: str | None = None
    timeout: int | None = None
    _index: dict[Any, Any] | None = field(default=None, repr=False)
    _ranges: list[Any] | None = field(default=None, repr=False)

    @property
    def is_map(self) -> bool:
        return self.map_type is not None

    @property
    def dynamic(self) -> bool:
        """Filled by the packet path (``add``/``update @set``, e.g. ClientIP affinity)."""
        return "dynamic" in self.flags or "timeout" in self.flags or self.timeout is not None


@dataclass(slots=True)
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)
    comment: str | None = None


@dataclass(slots=True)
class NftRuleset:
    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    version: str = ""
    cache: dict[int, Any] = field(default_factory=dict, repr=False)  # the tracer's anonymous-set atoms
    _base: list[NftChain] | None = field(default=None, repr=False)

    def table(self, family: str, name: str) -> NftTable | None:
        return self.tables.get((family, name))

    def chain(self, family: str, table: str, name: str) -> NftChain | None:
        t = self.tables.get((family, table))
        return t.chains.get(name) if t else None

    def base_chains(self) -> list[NftChain]:
        """Every base chain (computed once: a trace asks at every hook, and a 10k-Service
        kube-proxy table has 40k regular chains)."""
        if self._base is None:
            self._base = [c for t in self.tables.values() for c in t.chains.values() if c.is_base]
        return self._base


def _types(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),) if value is not None else ()


def _element(item: Expr, is_map: bool) -> tuple[Expr, Expr]:
    if is_map and isinstance(item, list) and len(item) == 2:
        return item[0], item[1]
    return item, None


def _set(doc: dict[str, Any], is_map: bool) -> NftSet:
    flags = doc.get("flags", ())
    s = NftSet(
        family=str(doc["family"]),
        table=str(doc["table"]),
        name=str(doc["name"]),
        key_types=_types(doc.get("type")),
        map_type=(tuple(doc["map"]) if isinstance(doc.get("map"), list) else str(doc["map"])) if is_map else None,
        flags=tuple(flags) if isinstance(flags, list) else (str(flags),),
        comment=doc.get("comment"),
        timeout=doc.get("timeout"),
    )
    s.elements = [_element(e, is_map) for e in doc.get("elem", [])]
    return s


def _chain(doc: dict[str, Any]) -> NftChain:
    return NftChain(
        family=str(doc["family"]),
        table=str(doc["table"]),
        name=str(doc["name"]),
        handle=int(doc.get("handle", 0)),
        type=doc.get("type"),
        hook=doc.get("hook"),
        prio=int(doc.get("prio", 0)),
        policy=str(doc.get("policy", "accept")),
    )


def parse(text: str, origin: str = "nft") -> NftRuleset:
    """``nft -j list ruleset`` text → `NftRuleset` (raises `NftError` if it is not nft JSON)."""
    enabled = gc.isenabled()
    gc.disable()  # ~1M acyclic objects (30 MB of JSON at 10k Services): the collector only slows it
    try:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise NftError(f"{origin}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
            raise NftError(f'{origin}: not nft -j output (no top-level "nftables" list)')
        return _objects(doc["nftables"], origin)
    finally:
        if enabled:
            gc.enable()


def _objects(items: list[Any], origin: str) -> NftRuleset:
    rs = NftRuleset()
    pending: list[dict[str, Any]] = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or len(item) != 1:
            rs.warnings.append(f"{origin}: object {n} is not a one-key JSON object; skipped")
            continue
        kind, body = next(iter(item.items()))
        try:
            if kind == "rule":
                pending.append(body)
            elif kind == "table":
                key = (str(body["family"]), str(body["name"]))
                rs.tables.setdefault(key, NftTable(key[0], key[1], comment=body.get("comment")))
            elif kind == "chain":
                c = _chain(body)
                _table(rs, c.family, c.table).chains[c.name] = c
            elif kind in ("set", "map"):
                s = _set(body, kind == "map")
                _table(rs, s.family, s.table).sets[s.name] = s
            elif kind == "metainfo":
                rs.version = str(body.get("version", ""))
            # flowtables, counters, quotas, ct helpers…: not on a packet's path through chains
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            rs.warnings.append(f"{origin}: {kind} object {n} has an unexpected shape ({e!r}); skipped")
    for body in pending:
        try:
            chain = rs.chain(body["family"], body["table"], body["chain"])
        except (KeyError, TypeError) as e:
            rs.warnings.append(f"{origin}: a rule has an unexpected shape ({e!r}); skipped")
            continue
        if chain is None:
            where = f"{body['family']} {body['table']} {body['chain']}"
            rs.warnings.append(f"{origin}: a rule of unknown chain {where}; skipped")
            continue
        chain.raw.append(body)
    return rs


def _table(rs: NftRuleset, family: str, name: str) -> NftTable:
    return rs.tables.setdefault((family, name), NftTable(family, name))


def looks_like_nft_json(text: str) -> bool:
    head = text.lstrip()[:200]
    return head.startswith("{") and '"nftables"' in head
