"""``clew explain service``: one Service's rule tree, read back from a node's rules.

From kube-proxy's comments and chain layout: the frontends (cluster IP, external IPs, load
balancer IPs, NodePorts) and where each jumps; the filter rules that refuse or drop; and for each
KUBE-SVC/SVL chain the endpoints with the share of new connections each gets (the product of the
``statistic`` probabilities along the chain), affinity and masquerade rules. Given the objects
too, it says why each endpoint of the Service is or is not in those chains (from `policy`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from clew.netfilter.rules import Rule, Ruleset
from clew.proxy.policy import PortPolicy

_SUFFIXES = (" cluster IP", " external IP", " loadbalancer IP", " health check node port", " has no endpoints",
             " has no local endpoints")  # fmt: skip
_FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")


@dataclass
class Branch:
    endpoint: str
    share: float  # of new connections that reach this chain
    sep_chain: str
    rule: str


@dataclass
class PolicyChain:
    chain: str
    kind: str  # cluster-wide (KUBE-SVC) or node-local (KUBE-SVL)
    branches: list[Branch] = field(default_factory=list)
    masquerade: list[str] = field(default_factory=list)
    affinity_seconds: int | None = None


@dataclass
class PortExplanation:
    spn: str
    frontends: list[dict[str, str]] = field(default_factory=list)
    filters: list[dict[str, str]] = field(default_factory=list)
    external: list[str] = field(default_factory=list)  # KUBE-EXT / KUBE-FW rules, in words
    chains: list[PolicyChain] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # from the objects, when given


@dataclass
class Explanation:
    query: str
    ports: list[PortExplanation]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _spn_of(comment: str | None) -> str | None:
    if not comment:
        return None
    for suffix in _SUFFIXES:
        if comment.endswith(suffix):
            return comment[: -len(suffix)]
    m = re.match(r"^(\S+) traffic not accepted by ", comment)
    if m:
        return m.group(1)
    return comment if re.fullmatch(r"[a-z0-9.-]+/[a-z0-9.-]+(:[a-z0-9-]*)?", comment) else None


def _wanted(spn: str, query: str) -> bool:
    return spn == query or (":" not in query and spn.startswith(query + ":"))


def _target(rule: Rule) -> str:
    return rule.target.name if rule.target else ""


def _dest(rule: Rule) -> str:
    d = rule.core_option("-d")
    port = ""
    for m in rule.matches:
        opt = m.get("--dport")
        if opt is not None:
            port = opt.value
    addr = d.value.removesuffix("/32") if d else "any local address"
    return f"{addr}:{port}" if port else addr


def _policy_chain(rs: Ruleset, name: str) -> PolicyChain:
    chain = rs.chain("nat", name)
    kind = "cluster-wide"
    if name.startswith("KUBE-SVL-"):
        kind = "node-local endpoints (KUBE-SVL)"
    elif name.startswith("KUBE-XLB-"):
        kind = "node-local endpoints (KUBE-XLB, kube-proxy before 1.24)"
    out = PolicyChain(name, kind)
    if chain is None:
        return out
    remaining = 1.0
    for rule in chain.rules:
        target = _target(rule)
        if target == "KUBE-MARK-MASQ":
            out.masquerade.append(rule.text)
            continue
        if target in ("KUBE-SVC-" + name[9:], "KUBE-MARK-DROP") or (
            name.startswith("KUBE-XLB-") and target.startswith("KUBE-SVC-")
        ):  # KUBE-XLB's "redirect pods trying to reach external LB / source-IP traffic to the cluster chain"
            continue
        recent = rule.match("recent")
        if recent is not None and recent.get("--rcheck") is not None:
            seconds = recent.get("--seconds")
            out.affinity_seconds = int(seconds.value) if seconds else None
            continue
        stat = rule.match("statistic")
        prob = stat.get("--probability") if stat else None
        p = float(prob.value) if prob else 1.0
        out.branches.append(Branch(_endpoint_of(rs, target), remaining * p, target, rule.text))
        remaining *= 1.0 - p
        if prob is None:
            break
    return out


def _endpoint_of(rs: Ruleset, sep: str) -> str:
    chain = rs.chain("nat", sep)
    for rule in chain.rules if chain else []:
        if rule.target and rule.target.name == "DNAT":
            to = rule.target.get("--to-destination")
            return to.value if to else "?"
    return "?"


def _port_by_number(rs: Ruleset, query: str) -> str:
    """``ns/name:80`` → ``ns/name:http`` when a cluster-IP rule of ns/name has ``--dport 80`` (the
    comments name ports, the rules carry their numbers); ``query`` itself otherwise."""
    base, _, port = query.partition(":")
    if not port.isdigit():
        return query
    chain = rs.chain("nat", "KUBE-SERVICES")
    for rule in chain.rules if chain else []:
        spn = _spn_of(rule.comment)
        if not spn or not _wanted(spn, base) or not (rule.comment or "").endswith(" cluster IP"):
            continue
        if _dest(rule).rpartition(":")[2] == port:
            return spn
    return query


def explain_service(rs: Ruleset, query: str, policies: list[PortPolicy] | None = None) -> Explanation:
    ports: dict[str, PortExplanation] = {}
    warnings: list[str] = []
    asked = query
    query = _port_by_number(rs, query)

    def port(spn: str) -> PortExplanation:
        return ports.setdefault(spn, PortExplanation(spn))

    for chain_name in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        chain = rs.chain("nat", chain_name)
        for rule in chain.rules if chain else []:
            spn = _spn_of(rule.comment)
            if spn and _wanted(spn, query):
                kind = "nodePort" if chain_name == "KUBE-NODEPORTS" else (rule.comment or "")[len(spn) + 1 :]
                if _target(rule) == "KUBE-MARK-MASQ":  # older kube-proxy: masquerade marked at the frontend
                    port(spn).external.append(f"{chain_name}: {kind or 'frontend'} {_dest(rule)}: masquerade mark"
                                              f" for {_from(rule)}")  # fmt: skip
                    continue
                port(spn).frontends.append({"kind": kind, "address": _dest(rule), "chain": _target(rule)})
    for chain_name in _FILTER_CHAINS:
        chain = rs.chain("filter", chain_name)
        for rule in chain.rules if chain else []:
            spn = _spn_of(rule.comment)
            if spn and _wanted(spn, query):
                port(spn).filters.append(
                    {
                        "chain": chain_name,
                        "verdict": _target(rule),
                        "address": _dest(rule),
                        "comment": rule.comment or "",
                    }
                )
    for p in ports.values():
        seen: set[str] = set()
        todo = [f["chain"] for f in p.frontends]
        while todo:
            name = todo.pop(0)
            if name in seen or not name.startswith("KUBE-"):
                continue
            seen.add(name)
            if name.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-XLB-")):
                p.chains.append(_policy_chain(rs, name))
                if name.startswith("KUBE-XLB-"):
                    todo.append("KUBE-SVC-" + name[9:])
            elif name.startswith(("KUBE-EXT-", "KUBE-FW-")):
                chain = rs.chain("nat", name)
                for rule in chain.rules if chain else []:
                    src = rule.core_option("-s")
                    frm = f" from {'not ' if src.negated else ''}{src.value}" if src else ""
                    addrtype = rule.match("addrtype")
                    if addrtype is not None and addrtype.get("--src-type") is not None:
                        frm = " from this node (src-type LOCAL)"
                    what = rule.comment or "all other traffic"
                    p.external.append(f"{name}: {what}{frm} → {_target(rule) or 'no target'}")
                    todo.append(_target(rule))
    if policies is not None:
        for pol in policies:
            if _wanted(pol.spn, query):
                port(pol.spn).endpoints = endpoint_reasons(pol)
    if not ports:
        warnings.append(f"no rule names Service {asked} (is it in this node's rules? check the name and port)")
    return Explanation(asked, sorted(ports.values(), key=lambda x: x.spn), warnings)


def _from(rule: Rule) -> str:
    src = rule.core_option("-s")
    return f"sources {'not ' if src.negated else ''}in {src.value}" if src else "every source"


def endpoint_reasons(p: PortPolicy) -> list[dict[str, Any]]:
    """For every endpoint of the port: which traffic uses it, or why none does."""
    cluster = {e.key for e in p.cluster_endpoints}
    local = {e.key for e in p.local_endpoints}
    out = []
    for e in p.endpoints:
        used = []
        if e.key in cluster and p.uses_cluster_chain:
            used.append("cluster-wide traffic (KUBE-SVC)")
        if e.key in local and p.uses_local_chain:
            used.append("traffic with a Local policy (KUBE-SVL)")
        if used:
            why = "used by " + " and ".join(used)
            if not e.ready:
                why += " as a fallback: no ready endpoint, and it is serving while terminating"
        elif not e.ready and not e.serving_terminating:
            why = "not used: not ready" + (" (terminating, not serving)" if e.terminating else "")
        elif not e.ready:
            why = "not used: serving while terminating, but ready endpoints exist"
        elif p.uses_local_endpoints and not p.uses_cluster_endpoints and not e.is_local:
            why = f"not used: on node {e.node_name or '?'}, and the Local policy only uses this node's endpoints"
        elif p.topology.value and e.key not in cluster:
            why = f"not used: topology hints ({p.topology.value}) send this node's traffic elsewhere"
        else:
            why = "not used"
        out.append(
            {
                "endpoint": e.key,
                "node": e.node_name,
                "local": e.is_local,
                "ready": e.ready,
                "serving": e.serving,
                "terminating": e.terminating,
                "why": why,
            }
        )
    return out


def merge_explanations(a: Explanation, b: Explanation) -> Explanation:
    """iptables' and nftables' answers for one query: the ports found in either (a port both
    name gets both halves); "not found" only if neither found it."""
    ports = {p.spn: p for p in a.ports}
    for p in b.ports:
        have = ports.get(p.spn)
        if have is None:
            ports[p.spn] = p
            continue
        have.frontends += p.frontends
        have.filters += p.filters
        have.external += p.external
        have.chains += p.chains
    warnings = [*a.warnings, *b.warnings] if not ports else []
    return Explanation(a.query, sorted(ports.values(), key=lambda x: x.spn), warnings)


def format_explanation(ex: Explanation) -> str:
    lines: list[str] = []
    for p in ex.ports:
        lines.append(f"Service port {p.spn}")
        for f in p.frontends:
            lines.append(f"  {f['kind']:<16} {f['address']:<22} → {f['chain']}")
        for f in p.filters:
            lines.append(f"  filter {f['chain']}: {f['verdict']} {f['address']} ({f['comment']})")
        for text in p.external:
            lines.append(f"  {text}")
        for c in p.chains:
            affinity = f", ClientIP affinity {c.affinity_seconds}s" if c.affinity_seconds else ""
            lines.append(f"  {c.chain} ({c.kind}{affinity}):")
            for m in c.masquerade:
                lines.append(f"    masquerade: {m}")
            for b in c.branches:
                lines.append(f"    {b.share * 100:5.1f}%  {b.endpoint:<22} {b.sep_chain}")
        if p.endpoints:
            lines.append("  endpoints (from the objects):")
            for e in p.endpoints:
                where = f"{e['node'] or '?'}{' (this node)' if e['local'] else ''}"
                lines.append(f"    {e['endpoint']:<22} {where:<20} {e['why']}")
        lines.append("")
    for w in ex.warnings:
        lines.append(f"! {w}")
    return "\n".join(lines).rstrip() + "\n"
