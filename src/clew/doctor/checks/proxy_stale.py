"""``proxy.stale``: rules for Services that no longer exist, and Services without rules,
compared with the cluster's Service objects (``--objects``). iptables mode: each Service port
has a rule in nat KUBE-SERVICES (endpoints) or filter KUBE-SERVICES (none: REJECT) whose comment
starts ``namespace/name:port``. nftables mode: clew's ``ip clew`` elements carry the comment
``ns/name:port``; kube-proxy's ``ip kube-proxy`` has per-Service chains
``service-<H8>-ns/name/proto/port`` and commented no-endpoint elements (`proxy_state`). Every
mode on the node is read: a Service is missing when no mode has it, stale when any mode has it
and the objects do not (two modes at once are proxy.backends' failure, not this one's)."""

from __future__ import annotations

from clew.doctor import proxy_state
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "proxy.stale"
_SERVICE = proxy_state.SERVICE
_CHAINS = (
    ("nat", "KUBE-SERVICES"),
    ("filter", "KUBE-SERVICES"),
    ("nat", "KUBE-NODEPORTS"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
)


def programmed(f: NodeFacts) -> set[str]:
    """``namespace/name`` of every Service with a rule in iptables mode."""
    out = set()
    assert f.ruleset is not None
    for table, name in _CHAINS:
        chain = f.ruleset.chain(table, name)
        for rule in chain.rules if chain else []:
            m = _SERVICE.match(rule.comment or "")
            if m:
                out.add(m.group(1))
    return out


def check(f: NodeFacts) -> Finding:
    if f.objects is None:
        return skip(ID, "needs the cluster's Service objects (--objects)")
    found = [m for m in proxy_state.modes(f) if m != proxy_state.IPVS]
    if not found:
        return skip(ID, "no iptables- or nftables-mode Service rules on this node (IPVS is not read)")
    if f.nft is None and any(m in proxy_state.NFTABLES_MODES for m in found):
        return skip(ID, "an nftables proxy table is there but nft -j list ruleset was not collected")
    want = set(f.objects.services)
    per_mode = {}
    for mode in found:
        if mode == proxy_state.IPTABLES:
            per_mode[mode] = programmed(f)
        else:
            table = proxy_state.CLEW if mode == proxy_state.NFT_CLEW else proxy_state.KUBE_PROXY
            per_mode[mode] = proxy_state.nft_programmed(f, table)
    have = set().union(*per_mode.values())
    stale = sorted(have - want)
    missing = sorted(want - have)  # in no mode (a second mode's maze is proxy.backends' failure)
    evidence = {
        "modes": found,
        "services": len(want),
        "programmed": {m: len(v) for m, v in per_mode.items()},
        "stale": stale,
        "missing": missing,
    }
    if stale or missing:
        what = []
        if stale:
            what.append(f"rules for {len(stale)} Service(s) that no longer exist ({stale[0]})")
        if missing:
            what.append(f"{len(missing)} Service(s) without rules ({missing[0]})")
        return fail(
            ID,
            "; ".join(what),
            "the proxy is not syncing: check its log and /metrics (proxy.sync); restart it to force a full sync",
            **evidence,
        )
    return ok(ID, f"rules match the {len(want)} Services", **evidence)
