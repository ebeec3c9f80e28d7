"""``proxy.backends``: the "two mazes" — rules of two proxy modes at once, or KUBE chains in
both iptables backends (legacy and nft): tools disagree on what the node does, and the stale
maze still matches packets (kubernetes #109811)."""

from __future__ import annotations

import re

from clew.doctor.checks.proxy_mode import modes
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "proxy.backends"
_KUBE_CHAIN = re.compile(r"^:(KUBE-(?!IPTABLES-HINT|KUBELET-CANARY)[A-Z0-9-]+) ", re.M)


def kube_chains(save: str | None) -> list[str]:
    """KUBE-* chains in an ``iptables-save`` text (kubelet's hint and canary are no proxy's)."""
    return sorted(set(_KUBE_CHAIN.findall(save or "")))


def check(f: NodeFacts) -> Finding:
    if f.legacy_save is None and f.nft_save is None and f.ruleset is None:
        return skip(ID, "no iptables rules collected")
    legacy, nft = kube_chains(f.legacy_save), kube_chains(f.nft_save)
    found = modes(f)
    evidence = {
        "modes": found,
        "legacy_kube_chains": len(legacy),
        "nft_kube_chains": len(nft),
        "backends_read": [n for n, t in (("legacy", f.legacy_save), ("nft", f.nft_save)) if t is not None],
    }
    if legacy and nft:
        hinted = [n for n, t in (("legacy", f.legacy_save), ("nft", f.nft_save)) if ":KUBE-IPTABLES-HINT " in (t or "")]
        evidence["kubelet_hint_in"] = hinted
        if len(hinted) == 1:
            stale = "nft" if hinted[0] == "legacy" else "legacy"
            fix = (
                f"the kubelet's KUBE-IPTABLES-HINT says {hinted[0]} is in use; remove the KUBE rules from {stale}: "
                f"iptables-{stale}-save | grep -v KUBE- | iptables-{stale}-restore"
            )
        else:
            fix = (
                "find which backend the proxy uses (its log; `iptables -V` in its image) and remove the KUBE rules "
                "from the other: iptables-legacy-save | grep -v KUBE- | iptables-legacy-restore (or the -nft pair)"
            )
        return fail(
            ID, f"KUBE chains in both iptables backends (legacy {len(legacy)}, nft {len(nft)})", fix, **evidence
        )
    if len(found) > 1:
        return fail(
            ID,
            f"rules of {' and '.join(found)} modes at once",
            "run one proxy mode; remove the other's state (kube-proxy --cleanup)",
            **evidence,
        )
    if not found and not legacy and not nft:
        return ok(ID, "no Service proxy rules in either iptables backend", **evidence)
    if f.legacy_save is None or f.nft_save is None:
        return skip(ID, "only one iptables backend could be read", **evidence)
    return ok(ID, "one proxy mode, one iptables backend", **evidence)
