"""Typed access to untyped API dicts, raising `Invalid(field, reason)` on the first bad value.

Every accessor takes the dotted field path it is reading, so the message a user sees names the
exact field (``spec.ports[1].port``), never a Python ``KeyError``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

# RFC 1123 label (Service/port names) and subdomain (namespaces, object names).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Invalid(Exception):
    """A field that is missing, of the wrong type, or out of range."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def mapping(obj: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if obj is None:
        if required:
            raise Invalid(path, "is required")
        return {}
    if not isinstance(obj, Mapping):
        raise Invalid(path, f"must be an object, not {type(obj).__name__}")
    return obj


def items(obj: Any, path: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise Invalid(path, f"must be a list, not {type(obj).__name__}")
    return obj


def string(obj: Any, path: str, *, required: bool = False, default: str = "") -> str:
    if obj is None:
        if required:
            raise Invalid(path, "is required")
        return default
    if not isinstance(obj, str):
        raise Invalid(path, f"must be a string, not {type(obj).__name__}")
    if required and not obj:
        raise Invalid(path, "must not be empty")
    return obj


def boolean(obj: Any, path: str, *, default: bool) -> bool:
    if obj is None:
        return default
    if not isinstance(obj, bool):
        raise Invalid(path, f"must be true or false, not {obj!r}")
    return obj


def integer(obj: Any, path: str, *, lo: int, hi: int, required: bool = False, default: int = 0) -> int:
    if obj is None:
        if required:
            raise Invalid(path, "is required")
        return default
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise Invalid(path, f"must be an integer, not {obj!r}")
    if not lo <= obj <= hi:
        raise Invalid(path, f"{obj} is out of range {lo}-{hi}")
    return obj


def port(obj: Any, path: str, *, required: bool = False, allow_zero: bool = False) -> int:
    return integer(obj, path, lo=0 if allow_zero else 1, hi=65535, required=required)


def dns_label(obj: Any, path: str, *, required: bool = True) -> str:
    value = string(obj, path, required=required)
    if value and (len(value) > 63 or not _DNS_LABEL.match(value)):
        raise Invalid(path, f"{value!r} is not a valid DNS label")
    return value


def dns_subdomain(obj: Any, path: str) -> str:
    value = string(obj, path, required=True)
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise Invalid(path, f"{value!r} is not a valid DNS subdomain name")
    return value


def ip(obj: Any, path: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 address. Leading zeros in IPv4 octets are accepted and normalised,
    as kube-proxy's ParseIPSloppy does (``010.0.0.1`` is 10.0.0.1)."""
    value = string(obj, path, required=True).strip()
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        octets = [int(p, 10) for p in parts]
        if all(o <= 255 for o in octets):
            return ipaddress.IPv4Address(".".join(map(str, octets)))
    raise Invalid(path, f"{value!r} is not an IP address")


def cidr(obj: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR; host bits are allowed and cleared (``10.0.0.1/8`` is 10.0.0.0/8)."""
    value = string(obj, path, required=True).strip()
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Invalid(path, f"{value!r} is not a CIDR") from None
