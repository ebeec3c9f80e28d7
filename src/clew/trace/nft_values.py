"""Values for nftables expressions: what a packet's ``ip daddr`` or ``th dport`` is, and what a
literal, prefix, range, set element or concatenation in a rule means, in one comparable form.

A packet value is an int (addresses, ports, protocols, marks, numbers), a str (interface names,
fib address types) or a frozenset of flag names (``ct state``, ``ct status``, ``tcp flags``); a
concatenation is a tuple of those. A rule-side atom is an inclusive ``(low, high)`` int pair, a
str (a name; ``eth*`` is a wildcard), a frozenset of flags, or a tuple of atoms for a
concatenation. `contains` decides whether a value lies in an atom.

An expression the packet alone cannot decide evaluates to `UNKNOWN` (the caller names it and
records the assumption it makes); a protocol field of another protocol (``tcp dport`` on a UDP
packet) to `ABSENT` (nft's implied ``meta l4proto tcp`` fails, so the rule does not match).
"""

from __future__ import annotations

import ipaddress
from typing import Any

PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "igmp": 2, "gre": 47, "esp": 50, "ah": 51,
         "udplite": 136, "dccp": 33, "ipip": 4, "icmpv6": 58}  # fmt: skip
SERVICES = {"http": 80, "https": 443, "domain": 53, "ssh": 22, "ntp": 123, "bgp": 179, "smtp": 25, "ftp": 21}
INTEGER_TYPES = {"inet_service", "inet_proto", "mark", "integer", "ipv4_addr", "ether_type", "ifindex"}


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN = _Sentinel("UNKNOWN")
ABSENT = _Sentinel("ABSENT")


def ip_int(text: str) -> int:
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        a, b, c, d = (int(p) for p in parts)
        if max(a, b, c, d) < 256:
            return (a << 24) | (b << 16) | (c << 8) | d
    return int(ipaddress.IPv4Address(text))


def int_ip(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def kind_of(e: Any) -> str:
    """The type a literal compared with ``e`` has: ip, port, proto, int, name, flags, str."""
    if isinstance(e, dict) and len(e) == 1:
        key, v = next(iter(e.items()))
        if key == "payload":
            field = v.get("field")
            if field in ("saddr", "daddr"):
                return "ip"
            if field in ("sport", "dport"):
                return "port"
            if field == "protocol":
                return "proto"
            if field == "flags" and v.get("protocol") == "tcp":
                return "flags"
            return "int"
        if key == "meta":
            k = v.get("key")
            if k in ("l4proto", "protocol"):
                return "proto" if k == "l4proto" else "str"
            if k in ("iifname", "oifname", "iif", "oif", "nfproto", "pkttype", "iiftype", "oiftype"):
                return "name"
            return "int"
        if key == "ct":
            k = v.get("key")
            if k in ("state", "status"):
                return "flags"
            if k in ("saddr", "daddr"):
                return "ip"
            if k in ("proto-src", "proto-dst"):
                return "port"
            if k == "direction":
                return "name"
            return "int"
        if key == "fib":
            return "name"
        if key == "rt":
            return "ip" if v.get("key") == "nexthop" else "int"
        if key in ("&", "|", "^", "<<", ">>"):
            return kind_of(v[0])
    return "int"


def type_kind(nft_type: str) -> str:
    return {"ipv4_addr": "ip", "inet_service": "port", "inet_proto": "proto", "ifname": "name",
            "ct_state": "flags", "ct_status": "flags", "fib_addrtype": "name"}.get(nft_type, "int")  # fmt: skip


def _scalar(v: Any, kind: str) -> int | str:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    s = str(v)
    if kind == "ip":
        return ip_int(s)
    if kind == "proto":
        return PROTO.get(s, int(s) if s.isdigit() else -1)
    if kind == "port":
        return int(s) if s.isdigit() else SERVICES.get(s, -1)
    if kind == "int":
        return int(s, 0) if s[:2].lower() == "0x" or s.isdigit() else s
    return s


def atom(v: Any, kind: str) -> Any:
    """A rule-side literal as an atom of ``kind`` (a set element's ``{"elem": …}`` unwrapped)."""
    if isinstance(v, dict) and len(v) == 1:
        key, body = next(iter(v.items()))
        if key == "elem":
            return atom(body.get("val"), kind)
        if key == "prefix":
            base = ip_int(str(body["addr"]))
            length = int(body["len"])
            span = (1 << (32 - length)) - 1
            return (base & ~span & 0xFFFFFFFF, (base & ~span & 0xFFFFFFFF) | span)
        if key == "range":
            lo, hi = _scalar(body[0], kind), _scalar(body[1], kind)
            return (lo, hi)
    if kind == "flags":
        return frozenset(v if isinstance(v, list) else [v])
    x = _scalar(v, kind)
    return (x, x) if isinstance(x, int) else x


def concat_atom(v: Any, kinds: tuple[str, ...]) -> Any:
    """A set element's key: a list of atoms for a concatenation, else one atom."""
    if isinstance(v, dict) and "elem" in v:
        v = v["elem"].get("val")
    if isinstance(v, dict) and "concat" in v:
        parts = v["concat"]
        return [atom(p, kinds[i] if i < len(kinds) else "int") for i, p in enumerate(parts)]
    return atom(v, kinds[0] if kinds else "int")


def _one(value: Any, a: Any) -> bool:
    if isinstance(a, tuple):
        return isinstance(value, int) and a[0] <= value <= a[1]
    if isinstance(a, frozenset):
        return isinstance(value, frozenset) and bool(value & a)
    if isinstance(a, str) and isinstance(value, str):
        return value.startswith(a[:-1]) if a.endswith("*") else value == a
    return bool(value == a)


def contains(value: Any, a: Any) -> bool:
    """Is the packet ``value`` in atom ``a`` (a concatenation: every field in its part)?"""
    if isinstance(a, list):
        return (
            isinstance(value, tuple) and len(value) == len(a) and all(_one(v, x) for v, x in zip(value, a, strict=True))
        )
    return _one(value, a)


def exact_key(a: Any) -> Any:
    """The packet value an atom stands for when it is a single value (None: a range/wildcard)."""
    if isinstance(a, tuple):
        return a[0] if a[0] == a[1] else None
    if isinstance(a, list):
        parts = [exact_key(x) for x in a]
        return None if any(p is None for p in parts) else tuple(parts)
    if isinstance(a, str):
        return None if a.endswith("*") else a
    return None
