"""Refuse a pod subnet that collides with the node's own addresses or routes.

``subnet.env`` names the node's pod subnet; the bridge takes its first address as the pods'
gateway. A subnet that overlaps the node's network (a mistyped ``--cluster-cidr``, a cloud VPC in
10.244.0.0/16) would hand the node's own gateway address to the bridge and route the node's
traffic into it. So before the bridge is made or first used, the node's IPv4 addresses and
main-table routes are read (one ``ip -4 -j -batch`` process, run by `clew.cni.bridge`: this
module is pure) and the attachment is refused when:

* an address on any link but the bridge lies in a network that overlaps the pod subnet
  (the node's ``eth0`` 10.244.1.50/24, or 10.0.0.5/8 around a 10.244.1.0/24 pod subnet) — but
  not the subnet's own network (or broadcast) address as a /32, which no pod or gateway ever
  gets: that is what flannel's vxlan device ``flannel.1`` carries (``10.244.1.0/32``);
* a route other than the default goes to the pod subnet or a part of it, and is not the bridge's
  own subnet route (``10.244.1.0/24 dev cni0``): someone else's route would take the pods' traffic.

A route to a *larger* network (the cluster's 10.244.0.0/16 via ``flannel.1``, an aggregate via a
router) is allowed: the bridge's more specific route wins for the node's own pods, which is how
flannel's own routing works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv4Network


class SubnetConflict(Exception):
    """The pod subnet overlaps an address or route of the node (the message names which)."""


def conflicts(subnet: IPv4Network, bridge: str, links: Sequence[object], routes: Sequence[object]) -> list[str]:
    """What in ``ip -4 -j addr show`` (``links``) and ``ip -4 -j route show`` output collides with ``subnet``."""
    found: list[str] = []
    for link in links:
        if not isinstance(link, dict) or link.get("ifname") == bridge:
            continue
        for addr in link.get("addr_info") or ():
            if not isinstance(addr, dict) or addr.get("family", "inet") != "inet" or "local" not in addr:
                continue
            iface = IPv4Interface(f"{addr['local']}/{addr.get('prefixlen', 32)}")
            if iface.network.prefixlen == 32 and iface.ip in (subnet.network_address, subnet.broadcast_address):
                continue  # flannel's vxlan device holds the subnet's network address as a /32: never handed out
            if iface.network.overlaps(subnet):
                found.append(f"address {iface} on {link.get('ifname')}")
    for route in routes:
        if not isinstance(route, dict) or route.get("dst") in (None, "default"):
            continue
        dst = IPv4Network(str(route["dst"]), strict=False)
        if route.get("dev") == bridge and dst == subnet:
            continue  # the bridge's own subnet route
        if dst.subnet_of(subnet):
            via = f" via {route['gateway']}" if route.get("gateway") else ""
            dev = f" dev {route['dev']}" if route.get("dev") else ""
            kind = f"{route['type']} " if route.get("type") not in (None, "unicast") else ""
            found.append(f"route {kind}{dst}{via}{dev}")
    return found


def parse_addresses_and_routes(out: str) -> tuple[list[object], list[object]]:
    """``ip -4 -j -batch -`` output of ``addr show`` then ``route show``: two JSON arrays in a row."""
    decoder, at = json.JSONDecoder(), 0
    docs: list[list[object]] = []
    while len(docs) < 2:
        while at < len(out) and out[at].isspace():
            at += 1
        if at >= len(out):
            break
        doc, at = decoder.raw_decode(out, at)
        docs.append(doc if isinstance(doc, list) else [])
    while len(docs) < 2:
        docs.append([])
    return docs[0], docs[1]


def refuse_conflicts(subnet: IPv4Network, bridge: str, where: str, batch_output: str) -> None:
    """:class:`SubnetConflict` naming every collision found in ``batch_output`` (see the module doc)."""
    links, routes = parse_addresses_and_routes(batch_output)
    found = conflicts(subnet, bridge, links, routes)
    if found:
        raise SubnetConflict(f"pod subnet {subnet} overlaps {where}'s {'; '.join(found)}")
