"""Routing decisions and where a packet leaves the node, read from the node's routes and links.

The lookup follows the kernel's default policy (``ip rule``: local, then main, then default
table): a ``local`` route in the local table means delivery to this node; otherwise the longest
prefix in main wins (lowest metric on a tie). Then the egress device's kind says what happens
next: a bridge port means a pod on this node, a vxlan device means encapsulation to the VTEP
that the neighbour and FDB entries name, a route BIRD installed (``proto bird``) goes towards
the node that announced that pod subnet (named from BIRD's view when the dump has it), anything
else is a plain next hop.
"""

from __future__ import annotations

import ipaddress

from clew.trace.node_view import NodeView, Route
from clew.trace.packet import Egress


def lookup(view: NodeView, dst: str) -> Route | None:
    """The route the kernel would pick for ``dst`` (None: no route, "Network is unreachable")."""
    addr = ipaddress.IPv4Address(dst)
    if not view.routes:  # rules only (clew trace --ruleset): routing is not known
        if view.is_local(dst):
            return Route(dst=ipaddress.IPv4Network(f"{dst}/32"), type="local", dev="lo", table="local")
        return Route(dst=ipaddress.IPv4Network("0.0.0.0/0"), type="unknown")
    local = [r for r in view.routes if r.table == "local" and r.type == "local" and addr in r.dst]
    if local:
        return max(local, key=lambda r: r.dst.prefixlen)
    if dst in view.local_ips() or addr.is_loopback:
        return Route(dst=ipaddress.IPv4Network(f"{dst}/32"), type="local", dev="lo", table="local")
    best: Route | None = None
    for table in ("main", "default", "254", "253"):
        for r in view.routes:
            if r.table != table or r.type in ("local", "broadcast", "anycast", "multicast") or addr not in r.dst:
                continue
            if best is None or (r.dst.prefixlen, -r.metric) > (best.dst.prefixlen, -best.metric):
                best = r
        if best is not None:
            return best
    return None


def source_address(view: NodeView, route: Route | None) -> str | None:
    """The address MASQUERADE (and a local process) would use on this route."""
    if route is None:
        return None
    if route.prefsrc:
        return route.prefsrc
    candidates = view.addresses_of(route.dev or "")
    if not candidates:
        return None
    if route.gateway:
        gw = ipaddress.IPv4Address(route.gateway)
        for a in candidates:
            if gw in ipaddress.IPv4Network(f"{a.ip}/{a.prefixlen}", strict=False):
                return a.ip
    return candidates[0].ip


def classify(view: NodeView, dst: str, route: Route | None) -> Egress:
    """Say where a packet for ``dst`` leaves, given the route the kernel picked."""
    if route is None:
        return Egress("unreachable", detail=f"no route to {dst}: dropped (Network is unreachable)")
    if route.type == "unknown":
        return Egress("unknown", detail=f"routes not given: {dst} is assumed to leave the node (forwarded)")
    if route.type in ("blackhole", "unreachable", "prohibit"):
        return Egress(route.type, detail=f"{route.type} route {route.dst} for {dst}: dropped")
    if route.type == "local":
        return Egress("local", dev="lo", detail=f"{dst} is an address of this node: delivered locally")
    dev = route.dev or ""
    link = view.links.get(dev)
    kind = link.kind if link else ""
    is_default = route.dst.prefixlen == 0
    if kind == "bridge":
        port = _bridge_port_for(view, dst, dev)
        where = f" (bridge port {port})" if port else ""
        return Egress("bridge", dev=dev, detail=f"to a pod on this node over bridge {dev}{where}")
    if kind == "vxlan" and link is not None:
        return _vxlan(view, dst, route, link.vxlan_id, link.vxlan_port)
    via = route.gateway
    if route.protocol == "bird" and not is_default:
        return _bgp(view, route, dev)
    if is_default:
        hop = f" via {via}" if via else ""
        return Egress("default", dev=dev, via=via, detail=f"by the default route{hop} on {dev}")
    if via:
        node = view.node_names.get(via)
        named = f" (node {node})" if node else ""
        return Egress("route", dev=dev, via=via, detail=f"via {via}{named} on {dev}, route {route.dst}")
    return Egress("route", dev=dev, detail=f"directly on {dev}, route {route.dst}")


def _bridge_port_for(view: NodeView, dst: str, bridge: str) -> str | None:
    neigh = next((n for n in view.neighbours if n.ip == dst and n.dev == bridge and n.mac), None)
    if neigh is None:
        return None
    entry = next(
        (
            f
            for f in view.fdb
            if f.mac == neigh.mac and view.links.get(f.dev, None) is not None and view.links[f.dev].master == bridge
        ),
        None,
    )
    return entry.dev if entry else None


def _vxlan(view: NodeView, dst: str, route: Route, vni: int | None, port: int | None) -> Egress:
    dev = route.dev or ""
    hop = route.gateway or dst
    neigh = next((n for n in view.neighbours if n.ip == hop and n.dev == dev and n.mac), None)
    remote = None
    if neigh is not None:
        entry = next((f for f in view.fdb if f.mac == neigh.mac and f.dev == dev and f.dst), None)
        remote = entry.dst if entry else None
    node = view.node_names.get(remote or "")
    udp = port or 8472
    if remote is None:
        why = "no permanent neighbour entry" if neigh is None else f"no FDB entry for {neigh.mac}"
        return Egress(
            "vxlan",
            dev=dev,
            via=route.gateway,
            vni=vni,
            detail=f"into vxlan {dev} (VNI {vni}) via {hop}, but {why}: the remote VTEP is unknown",
        )
    named = f"node {node} ({remote})" if node else remote
    return Egress(
        "vxlan", dev=dev, via=route.gateway, remote=remote, node=node, vni=vni,
        detail=f"encapsulated in VXLAN VNI {vni} on {dev} to {named}, UDP {udp}, +50 bytes",
    )  # fmt: skip


def _bgp(view: NodeView, route: Route, dev: str) -> Egress:
    """A BGP-learned route: its way out is the node that announced the subnet (BIRD's view in
    the dump), reached directly or through the router the route's gateway is."""
    origin = view.bgp_origins.get(str(route.dst))
    if not origin:  # no bird.txt: only the gateway is known
        node = view.node_names.get(route.gateway or "")
        named = f" (node {node})" if node else ""
        hop = f"via {route.gateway}{named} " if route.gateway else ""
        return Egress("route", dev=dev, via=route.gateway, node=node,
                      detail=f"by BGP (proto bird) {hop}on {dev}, route {route.dst}")  # fmt: skip
    node = view.node_names.get(origin)
    peer = f"node {node} ({origin})" if node else origin
    hop = "" if route.gateway in (None, origin) else f" through {route.gateway}"
    return Egress(
        "route", dev=dev, via=route.gateway, node=node,
        detail=f"by BGP (proto bird) to {peer}, which announced {route.dst}{hop} on {dev}",
    )  # fmt: skip
