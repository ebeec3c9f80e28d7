"""The one parser of ``ip -j route show`` objects.

Used by the kernel layer (``clew.kernel.routes``: the pod network's reconcile; ``clew.kernel.
cni_net``: the CNI plugin's CHECK) on a live namespace, and by the tracer (``clew.trace.
node_view``) on a ``clew dump``'s ``ip-route.json``. One object becomes one `Route`; what
iproute2 leaves out takes the kernel's default (``type`` unicast, ``protocol`` boot, ``scope``
global, ``table`` main, ``metric`` 0).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, NamedTuple


class Route(NamedTuple):
    """One IPv4 route as the kernel reports it. ``protocol`` is ``boot`` for routes added with
    ``ip route`` (the default), ``kernel`` for the connected ones; ``type`` ``unicast`` unless
    ``local``, ``broadcast``, ``blackhole``, ``unreachable``, ...; ``dev`` is None for multipath
    and blackhole routes; ``table`` is ``main`` unless the object names another. A NamedTuple,
    not a dataclass: the CNI plugin reads routes and keeps ``dataclasses`` off its import path."""

    dst: ipaddress.IPv4Network
    dev: str | None
    gateway: ipaddress.IPv4Address | None = None
    onlink: bool = False
    metric: int = 0
    protocol: str = "boot"
    scope: str = "global"
    type: str = "unicast"
    prefsrc: str | None = None
    table: str = "main"

    @property
    def dst_text(self) -> str:
        """The destination as ``ip route`` prints it: ``default``, a bare address for a /32."""
        if self.dst.prefixlen == 0:
            return "default"
        return str(self.dst.network_address) if self.dst.prefixlen == 32 else str(self.dst)


def parse_route(doc: dict[str, Any]) -> Route | None:
    """A `Route` from one object of ``ip -j route show`` (``dst`` is ``default``, a bare address
    for a /32, or a CIDR); None for what is not an IPv4 route (IPv6, a missing or unreadable
    destination or gateway)."""
    dst = doc.get("dst")
    if not isinstance(dst, str) or ":" in dst:
        return None
    gateway = doc.get("gateway")
    try:
        net = ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst, strict=False)
        via = ipaddress.IPv4Address(gateway) if gateway else None
        metric = int(doc.get("metric", 0))
    except ValueError:
        return None
    flags = doc.get("flags")
    prefsrc = doc.get("prefsrc")
    dev = doc.get("dev")
    return Route(
        dst=net,
        dev=str(dev) if dev is not None else None,
        gateway=via,
        onlink=isinstance(flags, list) and "onlink" in flags,
        metric=metric,
        protocol=str(doc.get("protocol", "boot")),
        scope=str(doc.get("scope", "global")),
        type=str(doc.get("type", "unicast")),
        prefsrc=str(prefsrc) if prefsrc else None,
        table=str(doc.get("table", "main")),
    )


def parse_routes(docs: Iterable[object]) -> list[Route]:
    """Every IPv4 route of an ``ip -j route show`` document (other objects skipped)."""
    return [r for d in docs if isinstance(d, dict) and (r := parse_route(d)) is not None]
