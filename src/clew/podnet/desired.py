"""The values a backend computes and reconcile applies: routes, neighbours, FDB entries.

A :class:`Desired` is the *level* the kernel should be at for the whole lease set, plus the
:class:`Scope` that says which kernel entries the pod network owns: everything in scope that is
not desired is stale and gets deleted (a node that went away), everything out of scope is never
touched (the node's own routes, the CNI bridge, other software). Pure values, no kernel access;
``str()`` of an entry is the ``ip``/``bridge`` command argument that would create it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class Underlay:
    """The node's uplink: device, its address (the node's public IP), MTU, on-link networks.

    ``networks`` are the subnets the device reaches without a router (its addresses' prefixes
    and any link-scope routes through it): a host-gw next hop must lie in one of them.
    """

    dev: str
    ip: IPv4Address
    mtu: int
    networks: tuple[IPv4Network, ...] = ()

    def on_link(self, addr: IPv4Address) -> bool:
        return any(addr in net for net in self.networks)


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """A main-table unicast route: ``dst [via gateway] dev dev [onlink]``."""

    dst: IPv4Network
    dev: str
    gateway: IPv4Address | None = None
    onlink: bool = False

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway is not None else ""
        return f"{self.dst}{via} dev {self.dev}" + (" onlink" if self.onlink else "")


@dataclass(frozen=True, slots=True, order=True)
class Neighbour:
    """A permanent ARP entry: ``ip`` is at link-layer address ``mac`` on ``dev``."""

    ip: IPv4Address
    mac: str
    dev: str

    def __str__(self) -> str:
        return f"{self.ip} lladdr {self.mac} dev {self.dev} permanent"


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    """A permanent vxlan forwarding entry: frames for ``mac`` go to the VTEP at ``dst``."""

    mac: str
    dev: str
    dst: IPv4Address

    def __str__(self) -> str:
        return f"{self.mac} dev {self.dev} dst {self.dst} self permanent"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which kernel entries the pod network owns.

    Routes: main-table unicast routes through ``route_dev`` whose destination lies inside
    ``route_within`` (None: every destination), except the kernel's connected routes.
    Neighbours: permanent entries on ``neighbour_dev``. FDB: entries on ``fdb_dev``.
    Routes of a protocol in ``foreign_protocols`` belong to another program (``bird``: the bgp
    backend's routing daemon writes them) and are never owned.
    """

    route_dev: str
    route_within: IPv4Network | None = None
    neighbour_dev: str | None = None
    fdb_dev: str | None = None
    foreign_protocols: tuple[str, ...] = ()

    def owns_route(self, dst: IPv4Network, dev: str | None, protocol: str | None = None) -> bool:
        if dev != self.route_dev or protocol in self.foreign_protocols:
            return False
        return self.route_within is None or dst.subnet_of(self.route_within)


@dataclass(frozen=True, slots=True)
class Desired:
    """What the kernel should hold for the whole lease set; ``notes`` say which leases were
    skipped and why (e.g. a vxlan lease without a VTEP MAC)."""

    scope: Scope
    routes: frozenset[Route] = frozenset()
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    notes: tuple[str, ...] = field(default=(), compare=False)
