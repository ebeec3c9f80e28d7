"""``conntrack.random_fully``: MASQUERADE without ``--random-fully`` picks source ports that
collide under load; the losing insert is dropped (the DNS 5-second delays, gravity #2122).
iptables' nat rules and every ``masquerade`` statement of native nftables tables (clew's and
kube-proxy's nftables mode: ``masquerade fully-random`` in their masquerading chain) are read."""

from __future__ import annotations

from clew.doctor import proxy_state
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, ok, skip, warn

ID = "conntrack.random_fully"


def check(f: NodeFacts) -> Finding:
    if f.ruleset is None:
        return skip(ID, "iptables rules not collected")
    nat = f.ruleset.tables.get("nat")
    rules = [
        r
        for c in (nat.chains.values() if nat else [])
        for r in c.rules
        if r.target is not None and r.target.name == "MASQUERADE"
    ]
    plain = [r.text for r in rules if r.target is not None and r.target.get("--random-fully") is None]
    nft = proxy_state.nft_masquerades(f)
    plain += [label for label, fully in nft if not fully]
    total = len(rules) + len(nft)
    evidence = {"masquerade_rules": len(rules), "nft_masquerades": len(nft), "without_random_fully": plain}
    if plain:
        return warn(
            ID,
            f"{len(plain)} of {total} MASQUERADE rules without --random-fully ({plain[0]})",
            "add --random-fully to those rules (kube-proxy and flannel do it when iptables ≥ 1.6.2 supports it); "
            "in nftables: masquerade fully-random",
            **evidence,
        )
    return ok(ID, f"all {total} MASQUERADE rules use --random-fully", **evidence)
