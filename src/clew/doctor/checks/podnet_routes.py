"""``podnet.routes``: every other Node's pod subnet needs a route here — for vxlan via the vxlan
device to the subnet's address with a neighbour (the remote VTEP's MAC) and an FDB entry to the
node's IP; for host-gw via the node's IP. Compared with the Node objects (``--objects``). A node of
the bgp backend (a BIRD runs, or routes BIRD installed are there) is ``podnet.bgp``'s: its routes
go through routers, not to the node's IP."""

from __future__ import annotations

import ipaddress

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "podnet.routes"


def check(f: NodeFacts) -> Finding:
    if f.objects is None:
        return skip(ID, "needs the cluster's Node objects (--objects)")
    if (f.bird is not None and f.bird.pid is not None) or any(r.protocol == "bird" for r in f.routes):
        return skip(ID, "the bgp backend: podnet.bgp checks the routes BIRD installs")
    local = {a.ip for a in f.addresses}
    others = [n for n in f.objects.nodes if n.internal_ip not in local and n.pod_cidr]
    if not others:
        return skip(ID, "no other Node with a podCIDR in the objects")
    vxlans = {v.name for v in f.vxlans()}
    missing: list[str] = []
    for node in others:
        assert node.pod_cidr is not None
        try:
            subnet = ipaddress.IPv4Network(node.pod_cidr, strict=False)
        except ValueError:
            missing.append(f"{node.name}: podCIDR {node.pod_cidr!r} is not an IPv4 network")
            continue
        route = next((r for r in f.routes if r.table == "main" and r.dst == subnet and r.type == "unicast"), None)
        if route is None:
            missing.append(f"{node.name}: no route to {subnet}")
        elif route.dev in vxlans:
            gw = route.gateway
            neigh = next((n for n in f.neighbours if n.get("dst") == gw and n.get("dev") == route.dev), None)
            if neigh is None or not neigh.get("lladdr"):
                missing.append(f"{node.name}: no neighbour entry for {gw} on {route.dev}")
            elif not any(e.get("mac") == neigh["lladdr"] and e.get("dst") == node.internal_ip for e in f.fdb):
                missing.append(f"{node.name}: no FDB entry {neigh['lladdr']} → {node.internal_ip} on {route.dev}")
        elif route.gateway != node.internal_ip:
            missing.append(
                f"{node.name}: route to {subnet} goes via {route.gateway or route.dev}, not {node.internal_ip}"
            )
    evidence = {"nodes": [n.name for n in others], "problems": missing}
    if missing:
        return fail(
            ID,
            f"{len(missing)} of {len(others)} other nodes unreachable: {missing[0]}",
            "restart the pod network agent on this node (clew agent / flanneld) so it reconciles "
            "routes, neighbours and FDB; check its log for the node named",
            **evidence,
        )
    return ok(ID, f"routes to all {len(others)} other nodes' pod subnets", **evidence)
