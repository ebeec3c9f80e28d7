"""``proxy.stale``: rules for Services that no longer exist, and Services without rules,
compared with the cluster's Service objects (``--objects``). iptables mode: each Service port
has a rule in nat KUBE-SERVICES (endpoints) or filter KUBE-SERVICES (none: REJECT) whose comment
starts ``namespace/name:port``."""

from __future__ import annotations

import re

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "proxy.stale"
_SERVICE = re.compile(r"^([a-z0-9.-]+/[a-z0-9.-]+)(?::|\s|$)")
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
    if f.ruleset is None or f.ruleset.chain("nat", "KUBE-SERVICES") is None:
        return skip(ID, "no iptables-mode Service rules on this node (other modes are not read yet)")
    have = programmed(f)
    want = set(f.objects.services)
    stale, missing = sorted(have - want), sorted(want - have)
    evidence = {"services": len(want), "programmed": len(have), "stale": stale, "missing": missing}
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
