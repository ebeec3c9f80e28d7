"""``forward.bridge_nf``: with a bridge CNI, bridged pod-to-pod packets must go through
iptables (``bridge-nf-call-iptables=1``), or same-node ClusterIP and hairpin traffic skip DNAT."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "forward.bridge_nf"
KEY = "net.bridge.bridge-nf-call-iptables"


def check(f: NodeFacts) -> Finding:
    if f.sysctls is None:
        return skip(ID, "sysctls not collected (no sysctl.txt)")
    bridges = [b.name for b in f.bridges() if f.ports(b.name)]
    if not bridges:
        return skip(ID, "no bridge with ports on this node (not a bridge CNI)")
    value = f.sysctl(KEY)
    if value is None:
        return fail(
            ID,
            f"{KEY} does not exist: br_netfilter is not loaded, bridged pod traffic skips iptables",
            f"modprobe br_netfilter && sysctl -w {KEY}=1",
            bridges=bridges,
        )
    if value != "1":
        return fail(
            ID,
            f"{KEY} = {value}: same-node Service and hairpin traffic on {bridges[0]} skips DNAT",
            f"sysctl -w {KEY}=1 (and persist it in /etc/sysctl.d/)",
            bridges=bridges,
            **{KEY: value},
        )
    return ok(ID, f"bridged traffic on {', '.join(bridges)} goes through iptables", bridges=bridges, **{KEY: value})
