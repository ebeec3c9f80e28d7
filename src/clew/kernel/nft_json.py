"""Reading ``nft -j list …`` answers (libnftables' JSON, schema 1 of nft 1.0.6) as the text clew
writes, and writing that text as such JSON: one spelling of an element on both sides of the
seam, so a test can compare a kernel's state with the fake's, and a reader of the live table
(the explainer, a consistency check) sees the keys the renderer wrote.

Text form: a key or value is its components joined by `` . `` (``10.96.0.10 . tcp . 53``),
numbers in decimal, a prefix as ``ADDR/LEN`` (``/32`` dropped, as nft prints it), a range as
``A-B``, a verdict as ``drop`` / ``goto CHAIN``. Pure: no kernel is touched here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

VERDICTS = ("accept", "drop", "continue", "return", "queue")
CHAIN_VERDICTS = ("jump", "goto")
_INT = re.compile(r"^(0|[1-9][0-9]*)$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PREFIX = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,2})$")
_RANGE = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}|\d+)-(\d{1,3}(?:\.\d{1,3}){3}|\d+)$")


def text_of(expr: Any) -> str:
    """nft JSON of one key, value or verdict → clew's text form."""
    if isinstance(expr, bool):
        return str(expr).lower()
    if isinstance(expr, int | str):
        return str(expr)
    if isinstance(expr, list):
        return " . ".join(text_of(e) for e in expr)
    if isinstance(expr, dict) and len(expr) == 1:
        ((kind, body),) = expr.items()
        if kind == "concat":
            return " . ".join(text_of(e) for e in body)
        if kind == "elem":
            return text_of(body["val"])
        if kind == "prefix":
            return str(body["addr"]) if body["len"] == 32 else f"{body['addr']}/{body['len']}"
        if kind == "range":
            return f"{text_of(body[0])}-{text_of(body[1])}"
        if kind in CHAIN_VERDICTS:
            return f"{kind} {body['target']}"
        if kind in VERDICTS:
            return str(kind)
        if kind == "set":
            return "{ " + ", ".join(text_of(e) for e in body) + " }"
    raise ValueError(f"unknown nft JSON expression {expr!r}")


def comment_of(expr: Any) -> str:
    """The comment an element key carries in nft JSON (``{"elem": {…, "comment": …}}``), or ""."""
    if isinstance(expr, dict) and "elem" in expr:
        return str(expr["elem"].get("comment", ""))
    return ""


def normal_component(text: str) -> str:
    """One key component as nft prints it: ``X/32`` → ``X``."""
    if not text.endswith("/32"):
        return text
    m = _PREFIX.match(text)
    return m.group(1) if m and m.group(2) == "32" else text


def json_of(text: str) -> Any:
    """clew's text form of a key, value or verdict → nft JSON (the inverse of `text_of`)."""
    words = text.split()
    if len(words) == 2 and words[0] in CHAIN_VERDICTS:
        return {words[0]: {"target": words[1]}}
    if len(words) == 1 and words[0] in VERDICTS:
        return {words[0]: None}
    parts = [_component_json(p.strip()) for p in text.split(" . ")]
    return parts[0] if len(parts) == 1 else {"concat": parts}


def _component_json(part: str) -> Any:
    if _INT.match(part):
        return int(part)
    m = _PREFIX.match(part)
    if m:
        return m.group(1) if m.group(2) == "32" else {"prefix": {"addr": m.group(1), "len": int(m.group(2))}}
    m = _RANGE.match(part)
    if m:
        return {"range": [_component_json(m.group(1)), _component_json(m.group(2))]}
    return part


def element_json(key: str, value: str | None, comment: str = "") -> Any:
    """One ``elem`` entry of a set (``key``) or map (``[key, value]``) as nft -j writes it."""
    k = json_of(key)
    if comment:
        k = {"elem": {"val": k, "comment": comment}}
    return k if value is None else [k, json_of(value)]


@dataclass(frozen=True)
class Element:
    value: str | None
    comment: str = ""


@dataclass
class State:
    """What a listing says about one table: the comparable part of a ruleset (no handles, no
    rule texts — nft rewrites those — but rule counts, base-chain specs, set keys and elements)."""

    chains: dict[str, tuple[str, str, int, str] | None] = field(default_factory=dict)  # base: type hook prio policy
    rule_counts: dict[str, int] = field(default_factory=dict)
    sets: dict[str, bool] = field(default_factory=dict)  # name → is a map
    elements: dict[str, dict[str, Element]] = field(default_factory=dict)


def elements_of(obj: dict[str, Any]) -> dict[str, Element]:
    """The elements of one ``set`` / ``map`` object of a listing: key text → `Element`."""
    found: dict[str, Element] = {}
    for entry in obj.get("elem", []):
        if isinstance(entry, list) and "map" in obj:
            key, value = entry
            found[text_of(key)] = Element(text_of(value), comment_of(key))
        else:
            found[text_of(entry)] = Element(None, comment_of(entry))
    return found


def state_of(listing: dict[str, Any], family: str, table: str) -> State | None:
    """The `State` of table ``family table`` in a listing (``list ruleset`` or ``list table``),
    or None if the listing does not hold that table."""
    state = State()
    seen = False
    for item in listing.get("nftables", []):
        ((kind, obj),) = item.items()
        if kind == "metainfo" or obj.get("family") != family:
            continue
        if kind == "table" and obj.get("name") == table:
            seen = True
        if obj.get("table") != table:
            continue
        if kind == "chain":
            base = (obj["type"], obj["hook"], int(obj["prio"]), obj.get("policy", "accept")) if "hook" in obj else None
            state.chains[obj["name"]] = base
            state.rule_counts.setdefault(obj["name"], 0)
        elif kind == "rule":
            state.rule_counts[obj["chain"]] = state.rule_counts.get(obj["chain"], 0) + 1
        elif kind in ("set", "map"):
            state.sets[obj["name"]] = kind == "map"
            state.elements[obj["name"]] = elements_of(obj)
    return state if seen else None
