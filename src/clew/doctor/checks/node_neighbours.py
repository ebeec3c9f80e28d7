"""``node.neighbours``: the kernel's neighbour (ARP) table thresholds vs the cluster's size.

The table is host-wide: above ``gc_thresh3`` new entries fail ("neighbour table overflow",
OpenAI's 2,500-node post), above ``gc_thresh2`` they are collected after 5 s. A node needs about
one underlay entry and one vxlan entry per other node, plus an entry per local pod on the
bridge and one in each pod (its gateway)."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn

ID = "node.neighbours"


def check(f: NodeFacts) -> Finding:
    if f.objects is None or not f.objects.nodes:
        return skip(ID, "needs the number of nodes (Node objects, --objects)")
    try:
        thresh2, thresh3 = int(f.host["gc_thresh2"]), int(f.host["gc_thresh3"])
    except (KeyError, ValueError):
        return skip(ID, "neighbour gc thresholds not collected (host.txt)")
    pod = f.pod_bridge()
    pods = len(f.ports(pod[0].name)) if pod else 0
    nodes = len(f.objects.nodes)
    needed = 2 * (nodes - 1) + 2 * pods
    evidence = {
        "nodes": nodes,
        "local_pods": pods,
        "needed_estimate": needed,
        "gc_thresh2": thresh2,
        "gc_thresh3": thresh3,
    }
    fix = (
        f"sysctl -w net.ipv4.neigh.default.gc_thresh1={max(needed, 128)} "
        f"net.ipv4.neigh.default.gc_thresh2={2 * needed} net.ipv4.neigh.default.gc_thresh3={4 * needed}"
    )
    if needed > thresh3:
        return fail(
            ID, f"~{needed} neighbour entries needed > gc_thresh3 {thresh3}: neighbour table overflow", fix, **evidence
        )
    if needed > thresh2:
        return warn(ID, f"~{needed} neighbour entries needed > gc_thresh2 {thresh2}: entries churn", fix, **evidence)
    return ok(ID, f"~{needed} neighbour entries needed, gc_thresh3 {thresh3}", **evidence)
