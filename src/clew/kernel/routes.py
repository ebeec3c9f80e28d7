"""IPv4 routes of a namespace's main table: read them, and the ``ip -batch`` lines that change
them (applied with :func:`clew.kernel.iproute.batch`, so many changes cost one process). The
parser is `clew.iproute2.routes` (the tracer reads dumps with the same one)."""

from __future__ import annotations

import ipaddress

from clew.iproute2.routes import Route, parse_route, parse_routes
from clew.kernel import iproute
from clew.kernel.namespace import Where

__all__ = ["Route", "delete_command", "list_routes", "parse_route", "replace_command"]


def list_routes(netns: Where, table: str = "main") -> list[Route]:
    """Every IPv4 route of ``table`` in ``netns``."""
    docs = iproute.show_json(netns, iproute.IP, ["-4", "route", "show", "table", table], f"routes (table {table})")
    return parse_routes(docs)


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
