"""``podnet.subnet_overlap``: the pod subnet must not overlap the node's own networks (an
address on the underlay or another device in the same range hijacks pod traffic)."""

from __future__ import annotations

import ipaddress

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "podnet.subnet_overlap"


def check(f: NodeFacts) -> Finding:
    pod = f.pod_bridge()
    if pod is None:
        return skip(ID, "no pod bridge with an address on this node: the pod subnet is unknown")
    bridge, subnet = pod
    pod_devs = {bridge.name, *(v.name for v in f.vxlans()), *(p.name for p in f.ports(bridge.name))}
    overlaps = []
    for a in f.addresses:
        if a.dev in pod_devs or a.dev == "lo" or a.ip.startswith("127."):
            continue
        net = ipaddress.IPv4Network(f"{a.ip}/{a.prefixlen}", strict=False)
        if net.overlaps(subnet):
            overlaps.append(f"{a.ip}/{a.prefixlen} on {a.dev}")
    evidence = {"pod_subnet": str(subnet), "overlapping": overlaps}
    if overlaps:
        return fail(
            ID,
            f"pod subnet {subnet} overlaps {overlaps[0]}",
            "give the cluster a pod network (net-conf.json Network, --cluster-cidr) outside the node's "
            f"networks, or move {overlaps[0].split(' on ')[1]} off it",
            **evidence,
        )
    return ok(ID, f"pod subnet {subnet} overlaps none of the node's networks", **evidence)
