"""``forward.hairpin``: a pod reaching its own Service is DNATed back out of the port it came
in on; the bridge sends it there only with hairpin mode on that port."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "forward.hairpin"


def check(f: NodeFacts) -> Finding:
    pod = f.pod_bridge()
    if pod is None:
        return skip(ID, "no pod bridge on this node (not a bridge CNI)")
    bridge = pod[0]
    ports = f.ports(bridge.name)
    if not ports:
        return ok(ID, f"{bridge.name} has no pod ports yet", bridge=bridge.name)
    unknown = [p.name for p in ports if p.hairpin is None]
    if len(unknown) == len(ports):
        return skip(ID, f"hairpin mode of {bridge.name}'s ports not reported (ip -d link)", bridge=bridge.name)
    off = [p.name for p in ports if p.hairpin is False]
    evidence = {"bridge": bridge.name, "ports": len(ports), "hairpin_off": off}
    if off:
        return fail(
            ID,
            f"hairpin mode off on {len(off)} of {len(ports)} ports of {bridge.name}: "
            "those pods cannot reach their own Services",
            f"ip link set {off[0]} type bridge_slave hairpin on (each port listed)",
            **evidence,
        )
    return ok(ID, f"hairpin mode on for all {len(ports)} ports of {bridge.name}", **evidence)
