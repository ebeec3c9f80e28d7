"""IPv4 routes of a namespace's main table: read them, and the ``ip -batch`` lines that change
them (applied with :func:`clew.kernel.iproute.batch`, so many changes cost one process)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from clew.kernel import iproute


@dataclass(frozen=True, slots=True)
class Route:
    """One route as the kernel reports it. ``protocol`` is ``boot`` for routes added with
    ``ip route`` (the default), ``kernel`` for the connected ones; ``type`` ``unicast`` unless
    ``blackhole``, ``unreachable``, ...; ``dev`` is None for multipath routes."""

    dst: ipaddress.IPv4Network
    dev: str | None
    gateway: ipaddress.IPv4Address | None = None
    onlink: bool = False
    metric: int = 0
    protocol: str = "boot"
    scope: str = "global"
    type: str = "unicast"


def list_routes(netns: str, table: str = "main") -> list[Route]:
    """Every IPv4 route of ``table`` in ``netns``."""
    docs = iproute.show_json(netns, iproute.IP, ["-4", "route", "show", "table", table], f"routes (table {table})")
    return [parse_route(doc) for doc in docs]


def parse_route(doc: dict[str, Any]) -> Route:
    """A :class:`Route` from one object of ``ip -j route show`` (``dst`` is ``default``, a bare
    address for a /32, or a CIDR)."""
    dst = str(doc["dst"])
    gateway = doc.get("gateway")
    return Route(
        dst=ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst),
        dev=doc.get("dev"),
        gateway=ipaddress.IPv4Address(gateway) if gateway else None,
        onlink="onlink" in doc.get("flags", []),
        metric=int(doc.get("metric", 0)),
        protocol=str(doc.get("protocol", "boot")),
        scope=str(doc.get("scope", "global")),
        type=str(doc.get("type", "unicast")),
    )


def replace_command(
    dst: ipaddress.IPv4Network, dev: str, gateway: ipaddress.IPv4Address | None = None, *, onlink: bool = False
) -> str:
    """``route replace DST [via GW] dev DEV [onlink]`` (creates or overwrites the metric-0 route)."""
    via = f" via {gateway}" if gateway is not None else ""
    return f"route replace {dst}{via} dev {dev}" + (" onlink" if onlink else "")


def delete_command(route: Route) -> str:
    """The line that deletes exactly ``route`` (by destination, metric and device)."""
    dev = f" dev {route.dev}" if route.dev else ""
    return f"route del {route.type} {route.dst}{dev} metric {route.metric}"
