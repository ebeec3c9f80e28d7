"""``podnet.bgp``: on a node of the bgp backend, every BGP session of its BIRD is Established
and every other Node's pod subnet has a route BIRD installed (``proto bird``) in the main table
(compared with the Node objects, ``--objects``). Read from ``bird.txt`` (``birdc show protocols``
and ``show route`` of the namespace's BIRD) and the routes. A node without BIRD and without
BGP-learned routes is not a bgp node: ok, nothing there can be wrong (as ``podnet.vxlan_port``
is ok where nothing blocks it; a skip would mean "could not tell"). BIRD gone while its routes
stay: fail (they are stale: nothing withdraws or renews them)."""

from __future__ import annotations

import ipaddress

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip
from clew.podnet.bird import bgp_sessions

ID = "podnet.bgp"
PROTO = "bird"  # the kernel's protocol of the routes BIRD installs
FIX = (
    "birdc -s SOCKET show protocols all NAME tells why a session is down (the peer's BIRD, TCP 179 "
    "on the underlay, AS numbers, password); a missing route: the announcing node's BIRD and the "
    "import filters (net-conf Backend.Peering); the agent starts a dead BIRD again (its log says so)"
)


def check(f: NodeFacts) -> Finding:
    installed = [r for r in f.routes if r.protocol == PROTO and r.table == "main"]
    if f.bird is None:
        return skip(ID, "BIRD's state was not collected (bird.txt: an older dump)")
    if f.bird.pid is None:
        if installed:
            return fail(ID, f"no BIRD runs here, yet {len(installed)} routes it installed are left (stale)", FIX,
                        routes=[str(r.dst) for r in installed])  # fmt: skip
        return ok(ID, "no BIRD and no routes it installed: not a bgp node")
    if f.bird.protocols is None:
        return fail(ID, f"BIRD (pid {f.bird.pid}) does not answer on {f.bird.socket}: {f.bird.error}", FIX)
    sessions = bgp_sessions(f.bird.protocols)
    problems = [f"session {s['name']} is {s['info'] or s['state']}, not Established" for s in sessions
                if s["info"] != "Established"]  # fmt: skip
    if not sessions:
        problems.append("BIRD has no BGP session")
    nodes: list[str] = []
    if f.objects is not None:
        local = {a.ip for a in f.addresses}
        learned = f.bird.route_prefixes()
        for node in f.objects.nodes:
            if node.internal_ip in local or not node.pod_cidr:
                continue
            nodes.append(node.name)
            try:
                subnet = ipaddress.IPv4Network(node.pod_cidr, strict=False)
            except ValueError:
                problems.append(f"{node.name}: podCIDR {node.pod_cidr!r} is not an IPv4 network")
                continue
            if not any(r.dst == subnet for r in installed):
                where = "BIRD has it but" if str(subnet) in learned else "BIRD did not learn it and"
                problems.append(f"{node.name}: {where} the kernel has no proto bird route to {subnet}")
    evidence = {"pid": f.bird.pid, "sessions": sessions, "nodes": nodes, "problems": problems}
    if problems:
        return fail(ID, f"{len(problems)} problem(s): {problems[0]}", FIX, **evidence)
    extra = (
        f", routes to all {len(nodes)} other nodes' subnets"
        if f.objects is not None
        else " (no --objects: routes not compared)"
    )
    return ok(ID, f"{len(sessions)} BGP session(s) Established{extra}", **evidence)
