"""``proxy.mode``: who programs Services here — iptables mode (kube-proxy or clew: the same
chains), kube-proxy's nftables mode, IPVS, or nobody."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, ok, skip, warn

ID = "proxy.mode"


def modes(f: NodeFacts) -> list[str]:
    """The Service proxy modes whose state is on the node."""
    found = []
    if f.ruleset is not None and f.ruleset.chain("nat", "KUBE-SERVICES") is not None:
        found.append("iptables")
    if f.nft_ruleset is not None and "table ip kube-proxy" in f.nft_ruleset:
        found.append("nftables")
    if "kube-ipvs0" in f.links:
        found.append("ipvs")
    return found


def check(f: NodeFacts) -> Finding:
    if f.ruleset is None and f.nft_ruleset is None:
        return skip(ID, "neither iptables nor nftables rules were collected")
    found = modes(f)
    if not found:
        return warn(
            ID,
            "no Service proxy programs this node (no KUBE-SERVICES, no kube-proxy nft table, no kube-ipvs0)",
            "start the node's Service proxy (clew agent or kube-proxy), or check its log",
            modes=[],
        )
    return ok(ID, f"Services are programmed in {' and '.join(found)} mode", modes=found)
