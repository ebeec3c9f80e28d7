"""``node.rule_count``: iptables rules and Services, and the first-packet cost they imply.

iptables mode walks KUBE-SERVICES linearly: the first packet of a connection costs p50 0.047 /
0.059 / 0.272 ms at 5k / 10k / 30k Services vs 0.012 ms in nftables mode (Kubernetes blog
2025-02-28). Beyond ~1,000 Services, advise nftables mode.

In nftables mode (clew's or kube-proxy's table) a first packet costs one map lookup whatever the
number of Services, so the count is reported and never warned about; an iptables-mode
maze left next to it is still counted (and proxy.backends fails)."""

from __future__ import annotations

import itertools

from clew.doctor import proxy_state
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, ok, skip, warn

ID = "node.rule_count"
SERVICES_WARN = 1000
NFT_FIRST_PACKET_MS = 0.012  # nftables mode p50, flat in the number of Services (same source)
_POINTS = ((0, 0.0), (5000, 0.047), (10000, 0.059), (30000, 0.272))  # Services → first-packet p50 ms


def first_packet_ms(services: int) -> float:
    """Linear interpolation over the published points (extrapolated past 30k)."""
    for (x0, y0), (x1, y1) in itertools.pairwise(_POINTS):
        if services <= x1:
            return y0 + (y1 - y0) * (services - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = _POINTS[-2], _POINTS[-1]
    return y1 + (y1 - y0) * (services - x1) / (x1 - x0)


def nft_services(f: NodeFacts) -> dict[str, int]:
    """nftables mode → Service ports with state in its table."""
    out = {}
    for mode, table in ((proxy_state.NFT_CLEW, proxy_state.CLEW), (proxy_state.NFT_KUBE_PROXY, proxy_state.KUBE_PROXY)):
        if mode in proxy_state.modes(f):
            out[mode] = len(proxy_state.nft_service_ports(f, table))
    return out


def check(f: NodeFacts) -> Finding:
    if f.ruleset is None:
        return skip(ID, "iptables rules not collected")
    nft = nft_services(f)
    rules = sum(len(c.rules) for t in f.ruleset.tables.values() for c in t.chains.values())
    nat = f.ruleset.tables.get("nat")
    services = sum(1 for name in (nat.chains if nat else {}) if name.startswith("KUBE-SVC-"))
    cost = round(first_packet_ms(services), 3)
    evidence: dict[str, object] = {"rules": rules, "service_chains": services, "first_packet_p50_ms_estimate": cost}
    if nft:
        evidence["nftables_service_ports"] = nft
        evidence["nftables_first_packet_p50_ms"] = NFT_FIRST_PACKET_MS
    if services > SERVICES_WARN:
        return warn(
            ID,
            f"{services} Service chains, {rules} rules: ~{cost} ms per first packet in iptables mode",
            "run the proxy in nftables mode (KubeProxyConfiguration mode: nftables)",
            **evidence,
        )
    if nft:
        ports = sum(nft.values())
        return ok(
            ID,
            f"nftables mode, {ports} Service ports in maps: the first-packet cost (~{NFT_FIRST_PACKET_MS} ms) "
            f"does not grow with Services ({rules} iptables rules, {services} Service chains)",
            **evidence,
        )
    return ok(ID, f"{rules} iptables rules, {services} Service chains", **evidence)
