"""``podnet.vxlan_port``: the vxlan UDP port must not be dropped by the node's own INPUT rules
(flannel #2388), or no pod packet from another node arrives."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip
from clew.doctor.probe import Packet, walk

ID = "podnet.vxlan_port"
DEFAULT_PORT = 8472  # Linux's vxlan default is 0 → 8472 for flannel


def check(f: NodeFacts) -> Finding:
    vxlans = f.vxlans()
    if not vxlans:
        return skip(ID, "no vxlan device on this node (host-gw or another backend)")
    if f.ruleset is None:
        return skip(ID, "iptables rules not collected")
    vxlan = vxlans[0]
    port = vxlan.vxlan_port or DEFAULT_PORT
    underlay = f.underlay(vxlan)
    dst = vxlan.vxlan_local or "192.0.2.2"
    verdict = walk(
        f.ruleset, "INPUT", Packet("192.0.2.1", dst, iif=underlay.name if underlay else None, proto="udp", dport=port)
    )
    evidence = {"device": vxlan.name, "port": port, "verdict": verdict.verdict, "by": verdict.by}
    if verdict.uncertain:
        evidence["rules_not_evaluated"] = verdict.uncertain
    if verdict.verdict == "DROP":
        return fail(
            ID,
            f"UDP {port} ({vxlan.name}) is dropped in filter INPUT ({verdict.by})",
            f"iptables -I INPUT -p udp --dport {port} -j ACCEPT (above: {verdict.by})",
            **evidence,
        )
    return ok(ID, f"UDP {port} reaches {vxlan.name}", **evidence)
