"""Typed access to untyped API dicts, raising `Invalid(field, reason)` on the first bad value.

Every accessor takes the dotted field path it is reading, so the message a user sees names the
exact field (``spec.ports[1].port``), never a Python ``KeyError``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

# RFC 1123 label (namespaces, port names) and subdomain (most object names); RFC 1035 label
# (Service names: they become DNS names, which must start with a letter).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# apimachinery's qualified name (label and annotation keys: ``[prefix/]name``) and label value.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
TOTAL_ANNOTATION_SIZE = 256 * 1024  # apimachinery's TotalAnnotationSizeLimitB: keys and values, in bytes


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


def dns1035_label(obj: Any, path: str) -> str:
    """A Service name: at most 63 characters, lower case, starting with a letter."""
    value = string(obj, path, required=True)
    if len(value) > 63:
        raise Invalid(path, f"{value[:20]!r}... is {len(value)} characters, more than a DNS label's 63")
    if not _DNS1035_LABEL.match(value):
        raise Invalid(
            path, f"{value!r} is not a valid DNS-1035 label (lower case letters, digits, '-', a letter first)"
        )
    return value


def qualified_name(key: str, path: str) -> None:
    """A label or annotation key: ``[DNS-subdomain prefix/]name``, the name at most 63 characters."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise Invalid(path, f"key prefix {prefix[:40]!r} is not a DNS subdomain")
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        raise Invalid(path, f"key {key[:80]!r} is not a qualified name (≤ 63 characters, alphanumeric at the ends)")


def label_map(obj: Any, path: str) -> Mapping[str, str]:
    """``metadata.labels``: qualified-name keys, values of at most 63 characters."""
    found = mapping(obj, path)
    for key, value in found.items():
        where = f"{path}[{key}]"
        if not isinstance(key, str):
            raise Invalid(path, f"key {key!r} must be a string")
        qualified_name(key, where)
        text = string(value, where)
        if len(text) > 63 or not _LABEL_VALUE.match(text):
            raise Invalid(where, f"{text[:40]!r} is not a label value (≤ 63 characters, alphanumeric at the ends)")
    return found


def annotation_map(obj: Any, path: str) -> Mapping[str, str]:
    """``metadata.annotations``: qualified-name keys, string values, 256 KiB in all (the API
    server's limit: one object cannot make every agent hold and reparse megabytes)."""
    found = mapping(obj, path)
    total = 0
    for key, value in found.items():
        if not isinstance(key, str):
            raise Invalid(path, f"key {key!r} must be a string")
        text = string(value, f"{path}[{key}]")
        total += len(key.encode()) + len(text.encode())
    if total > TOTAL_ANNOTATION_SIZE:
        raise Invalid(path, f"{total} bytes in all, more than the API server's limit of {TOTAL_ANNOTATION_SIZE}")
    for key in found:
        qualified_name(key, f"{path}[{key}]")
    return found


def dns_subdomain(obj: Any, path: str) -> str:
    value = string(obj, path, required=True)
    if len(value) > 253:
        raise Invalid(path, f"{value[:20]!r}... is {len(value)} characters, more than a DNS subdomain's 253")
    if not _DNS_SUBDOMAIN.match(value):
        raise Invalid(path, f"{value!r} is not a valid DNS subdomain name")
    return value


def special_ip_reason(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the API server refuses ``addr`` as an endpoint or external IP (its ValidateEndpointIP /
    validateNonSpecialIP), or None. Such an address reaches the node itself, not a pod: a
    127.0.0.1:10249 endpoint would hand every pod the node agent's /metrics, 169.254.169.254 a
    cloud's metadata service."""
    if addr.version == 4:  # the common case, by integer (the properties cost a network each)
        n = int(addr)
        if n == 0:
            return f"may not be unspecified ({addr})"
        if n >> 24 == 127:
            return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
        if n >> 16 == 0xA9FE:
            return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
        if n >> 8 == 0xE00000:
            return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
        return None
    if addr.is_unspecified:
        return f"may not be unspecified ({addr})"
    if addr.is_loopback:
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if addr.is_link_local:
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    packed = addr.packed
    if packed[0] == 0xFF and packed[1] & 0x0F == 0x02:
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    return None


def non_special_ip(obj: Any, path: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address the API server accepts as an endpoint or external IP (see `special_ip_reason`)."""
    addr = ip(obj, path)
    reason = special_ip_reason(addr)
    if reason is not None:
        raise Invalid(path, f"{addr} {reason}")
    return addr


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
