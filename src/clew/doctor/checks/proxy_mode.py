"""``proxy.mode``: who programs Services here — kube-proxy (iptables, nftables, IPVS), clew
(iptables, nftables), or nobody (`clew.doctor.proxy_state` tells the layouts apart)."""

from __future__ import annotations

from clew.doctor import proxy_state
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, ok, skip, warn

ID = "proxy.mode"


def modes(f: NodeFacts) -> list[str]:
    """The Service proxy modes whose state is on the node."""
    return proxy_state.modes(f)


def check(f: NodeFacts) -> Finding:
    if f.ruleset is None and f.nft_ruleset is None and f.nft is None:
        return skip(ID, "neither iptables nor nftables rules were collected")
    found = modes(f)
    if not found:
        return warn(
            ID,
            "no Service proxy programs this node (no KUBE-SERVICES, no ip clew or ip kube-proxy nft table, "
            "no kube-ipvs0)",
            "start the node's Service proxy (clew agent or kube-proxy), or check its log",
            modes=[],
        )
    who = {mode: proxy_state.programmer(f, mode) for mode in found}
    said = " and ".join(f"{who[m]}, {m.split(' (')[0]} mode" for m in found)
    return ok(ID, f"Services are programmed by {said}", modes=found, programmed_by=who)
