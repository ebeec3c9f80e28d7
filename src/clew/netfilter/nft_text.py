"""nft's own words for a JSON rule: ``ip daddr . meta l4proto . th dport vmap @service-ips``.

The tracer prints rules in the hops of a trace; a person reads them as ``nft list ruleset``
would print them. Close to nft's syntax, not byte-identical (nft hides implied protocol
matches, and so does this).
"""

from __future__ import annotations

from typing import Any

from clew.netfilter.nft_json import NftRule

_BINOPS = {"&": "&", "|": "|", "^": "^", "<<": "<<", ">>": ">>"}


def expr(e: Any) -> str:
    """One expression (the left or right of a match, a key, a value)."""
    if isinstance(e, bool):
        return str(e).lower()
    if isinstance(e, int):
        return hex(e) if e >= 4096 else str(e)
    if isinstance(e, str):
        return e if e.startswith("@") or " " not in e else f'"{e}"'
    if isinstance(e, list):
        return ", ".join(expr(x) for x in e)
    if not isinstance(e, dict) or len(e) != 1:
        return str(e)
    key: str
    key, v = next(iter(e.items()))
    if key == "payload":
        if "protocol" in v:
            return f"{v['protocol']} {v['field']}"
        return f"@{v.get('base', '?')},{v.get('offset', 0)},{v.get('len', 0)}"
    if key in ("meta", "ct", "rt"):
        return f"{key} {v.get('key', '?')}" if key != "meta" or v.get("key") not in ("iifname", "oifname") else v["key"]
    if key == "fib":
        flags = v.get("flags", [])
        return f"fib {' . '.join(flags if isinstance(flags, list) else [flags])} {v.get('result', '?')}"
    if key == "numgen":
        off = f" offset {v['offset']}" if v.get("offset") else ""
        return f"numgen {v.get('mode', 'random')} mod {v.get('mod', '?')}{off}"
    if key == "concat":
        return " . ".join(expr(x) for x in v)
    if key == "set":
        items = v if isinstance(v, list) else [v]
        return "{ " + ", ".join(_item(x) for x in items) + " }"
    if key == "prefix":
        return f"{v['addr']}/{v['len']}"
    if key == "range":
        return f"{expr(v[0])}-{expr(v[1])}"
    if key in _BINOPS:
        return f" {key} ".join(expr(x) for x in v)
    if key == "map":
        return f"{expr(v['key'])} map {_data(v['data'])}"
    if key == "elem":
        return expr(v.get("val"))
    if key in ("accept", "drop", "continue", "return"):
        return key
    if key in ("jump", "goto"):
        return f"{key} {v['target']}"
    return f"{key} {v}"


def _item(x: Any) -> str:
    if isinstance(x, list) and len(x) == 2:
        return f"{expr(x[0])} : {expr(x[1])}"
    return expr(x)


def _data(d: Any) -> str:
    return d if isinstance(d, str) else expr(d)


def statement(s: Any) -> str:
    if not isinstance(s, dict) or len(s) != 1:
        return str(s)
    key: str
    key, v = next(iter(s.items()))
    if key == "match":
        op = v.get("op", "==")
        left = v.get("left")
        binop = isinstance(left, dict) and any(k in left for k in _BINOPS)
        shown = "" if op in ("==", "in") and not binop else f"{op} "
        return f"{expr(v['left'])} {shown}{expr(v['right'])}"
    if key in ("accept", "drop", "continue", "return", "notrack"):
        return key
    if key in ("jump", "goto"):
        return f"{key} {v['target']}"
    if key == "vmap":
        return f"{expr(v['key'])} vmap {_data(v['data'])}"
    if key in ("dnat", "snat"):
        if not isinstance(v, dict):
            return key
        fam = f" {v['family']}" if "family" in v else ""
        addr = expr(v["addr"]) if "addr" in v else ""
        port = f":{expr(v['port'])}" if "port" in v else ""
        return f"{key}{fam} to {addr}{port}"
    if key in ("masquerade", "redirect"):
        extra = ""
        if isinstance(v, dict):
            if "port" in v:
                extra += f" to :{expr(v['port'])}"
            if "flags" in v:
                flags = v["flags"]
                extra += " " + (" ".join(flags) if isinstance(flags, list) else str(flags))
        return key + extra
    if key == "mangle":
        return f"{expr(v['key'])} set {expr(v['value'])}"
    if key == "counter":
        return "counter"
    if key == "reject":
        if isinstance(v, dict) and v.get("expr"):
            return f"reject with {v.get('type', 'icmp')} {v['expr']}"
        return f"reject with {v['type']}" if isinstance(v, dict) and v.get("type") else "reject"
    if key == "set":
        return f"{v.get('op', 'add')} {v.get('set', '@?')} {{ {expr(v.get('elem'))} }}"
    if key == "log":
        prefix = v.get("prefix") if isinstance(v, dict) else None
        return f'log prefix "{prefix}"' if prefix else "log"
    if key == "limit" and isinstance(v, dict):
        return f"limit rate {v.get('rate', '?')}/{v.get('per', 'second')}"
    if key == "quota" and isinstance(v, dict):
        return f"quota {'over ' if v.get('inv') else ''}{v.get('val', '?')} {v.get('val_unit', 'bytes')}"
    if key == "xt" and isinstance(v, dict):
        return f"xt {v.get('type', '?')} {v.get('name', '?')}"
    return f"{key} {v}" if v is not None else key


def rule_text(rule: NftRule) -> str:
    text = " ".join(statement(s) for s in rule.exprs)
    if rule.comment:
        text += f' comment "{rule.comment}"'
    return text
