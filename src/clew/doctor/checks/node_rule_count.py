"""``node.rule_count``: iptables rules and Services, and the first-packet cost they imply.

iptables mode walks KUBE-SERVICES linearly: the first packet of a connection costs p50 0.047 /
0.059 / 0.272 ms at 5k / 10k / 30k Services vs 0.012 ms in nftables mode (Kubernetes blog
2025-02-28). Beyond ~1,000 Services, advise nftables mode."""

from __future__ import annotations

import itertools

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, ok, skip, warn

ID = "node.rule_count"
SERVICES_WARN = 1000
_POINTS = ((0, 0.0), (5000, 0.047), (10000, 0.059), (30000, 0.272))  # Services → first-packet p50 ms


def first_packet_ms(services: int) -> float:
    """Linear interpolation over the published points (extrapolated past 30k)."""
    for (x0, y0), (x1, y1) in itertools.pairwise(_POINTS):
        if services <= x1:
            return y0 + (y1 - y0) * (services - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = _POINTS[-2], _POINTS[-1]
    return y1 + (y1 - y0) * (services - x1) / (x1 - x0)


def check(f: NodeFacts) -> Finding:
    if f.ruleset is None:
        return skip(ID, "iptables rules not collected")
    rules = sum(len(c.rules) for t in f.ruleset.tables.values() for c in t.chains.values())
    nat = f.ruleset.tables.get("nat")
    services = sum(1 for name in (nat.chains if nat else {}) if name.startswith("KUBE-SVC-"))
    cost = round(first_packet_ms(services), 3)
    evidence = {"rules": rules, "service_chains": services, "first_packet_p50_ms_estimate": cost}
    if services > SERVICES_WARN:
        return warn(
            ID,
            f"{services} Service chains, {rules} rules: ~{cost} ms per first packet in iptables mode",
            "run the proxy in nftables mode (KubeProxyConfiguration mode: nftables)",
            **evidence,
        )
    return ok(ID, f"{rules} iptables rules, {services} Service chains", **evidence)
