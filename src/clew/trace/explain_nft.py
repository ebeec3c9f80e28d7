"""``clew explain service`` for nftables: kube-proxy's nftables layout and clew's own.

kube-proxy (pkg/proxy/nftables): the verdict maps ``service-ips`` and ``service-nodeports`` send
a Service port's destinations to its ``service-…`` / ``external-…`` chains (named
``<kind>-<hash>-<ns>/<name>/<proto>/<port>``); a ``numgen random mod N vmap`` there picks an
``endpoint-…`` chain (each slot 1/N), which DNATs; masquerading is a jump to
``mark-for-masquerade``; ``no-endpoint-*`` and ``firewall-ips`` elements refuse or filter.

clew (proxy/nftables/README.md): data maps ``<role>-<proto>-<N>`` keyed ``destination . slot``
(slot = ``numgen random mod N``) give each slot's endpoint, so each slot is exactly 1/N; the
element comments name the Service port; masquerading is membership of the destination in
``cluster-masq`` / ``external-masq`` / ``external-local`` / ``nodeport-*`` sets; the
``no-endpoint-*`` sets refuse or drop. Affinity Services keep kube-proxy-style chains.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from clew.netfilter.nft_json import NftChain, NftRuleset, NftSet, NftTable
from clew.netfilter.nft_text import expr, rule_text
from clew.trace.explain import Branch, Explanation, PolicyChain, PortExplanation, _wanted

_KUBE = re.compile(r"^(service|external|local|endpoint|firewall)-[A-Z0-9]{8}-([^/]+)/([^/]+)/([a-z]+)/([^_/]*)")
_CLEW_MAP = re.compile(r"^(dst|dst-sc|np|np-sc)-(tcp|udp|sctp)-(\d+)$")
ROLES = {
    "dst": "Service IP (cluster, external or LB)",
    "dst-sc": "short-circuit for pod and node-local sources (eTP=Local)",
    "np": "nodePort",
    "np-sc": "nodePort short-circuit for pod and node-local sources (eTP=Local)",
}
MASQ_SETS = {
    "cluster-masq": "masqueraded unless the source is a pod (ClusterIP)",
    "external-masq": "always masqueraded (externalIP/LB IP, eTP=Cluster)",
    "external-local": "node-local sources masqueraded (eTP=Local)",
    "nodeport-masq": "always masqueraded (nodePort, eTP=Cluster)",
    "nodeport-local": "node-local sources masqueraded (nodePort, eTP=Local)",
}


def kube_spn(chain: str) -> str | None:
    m = _KUBE.match(chain)
    return f"{m.group(2)}/{m.group(3)}:{m.group(5)}" if m else None


def _elements(s: NftSet) -> Iterator[tuple[Any, Any, str | None]]:
    for key, data in s.elements:
        comment = None
        if isinstance(key, dict) and "elem" in key:
            comment = key["elem"].get("comment")
            key = key["elem"].get("val")
        yield key, data, comment


def _parts(key: Any) -> list[Any]:
    return list(key["concat"]) if isinstance(key, dict) and "concat" in key else [key]


def _verdict(data: Any) -> tuple[str, str | None]:
    if isinstance(data, dict) and len(data) == 1:
        k, v = next(iter(data.items()))
        if k in ("goto", "jump"):
            return k, str(v["target"])
        return k, None
    return str(data), None


def explain_service_nft(nft: NftRuleset, query: str) -> Explanation:
    ports: dict[str, PortExplanation] = {}

    def port(spn: str) -> PortExplanation:
        return ports.setdefault(spn, PortExplanation(spn))

    for table in nft.tables.values():
        _kube_proxy(table, query, port)
        _clew(table, query, port)
    warnings = [] if ports else [f"no nftables element or chain names Service {query}"]
    return Explanation(query, sorted(ports.values(), key=lambda p: p.spn), warnings)


def _kube_proxy(table: NftTable, query: str, port: Any) -> None:
    """kube-proxy's verdict maps and per-Service chains (clew's affinity Services too)."""
    todo: list[tuple[str, str]] = []
    for s in table.sets.values():
        for key, data, comment in _elements(s):
            verb, target = _verdict(data)
            spn = kube_spn(target or "") or comment
            if not spn or not _wanted(spn, query):
                continue
            address = " . ".join(expr(x) for x in _parts(key))
            if s.name in ("service-ips", "service-nodeports") and target:
                kind = "nodePort" if s.name == "service-nodeports" else (
                    "cluster IP" if target.startswith("service-") else "external IP / LB IP")  # fmt: skip
                port(spn).frontends.append({"kind": kind, "address": address, "chain": target})
                todo.append((spn, target))
            elif s.is_map and (s.name.startswith("no-endpoint") or s.name == "firewall-ips"):
                said = "REJECT" if target == "reject-chain" else (verb.upper() if not target else f"{verb} {target}")
                port(spn).filters.append(
                    {"chain": s.name, "verdict": said, "address": address, "comment": comment or ""}
                )
                if s.name == "firewall-ips" and target:
                    todo.append((spn, target))
    seen: set[str] = set()
    while todo:
        spn, name = todo.pop(0)
        chain = table.chains.get(name)
        if chain is None or name in seen:
            continue
        seen.add(name)
        if name.startswith(("service-", "local-")):
            port(spn).chains.append(_policy_chain(table, chain))
        else:
            for r in chain.rules:
                port(spn).external.append(f"{name}: {rule_text(r)}")
                for stmt in r.exprs:
                    if isinstance(stmt, dict) and ("goto" in stmt or "jump" in stmt):
                        jump = stmt.get("goto") or stmt.get("jump") or {}
                        target = str(jump.get("target", ""))
                        if target != "mark-for-masquerade":  # said by the rule that jumps there
                            todo.append((spn, target))


def _policy_chain(table: NftTable, chain: NftChain) -> PolicyChain:
    out = PolicyChain(chain.name, "node-local endpoints" if chain.name.startswith("local-") else "cluster-wide")
    shares: dict[str, Branch] = {}
    for r in chain.rules:
        text = rule_text(r)
        if "mark-for-masquerade" in text or "meta mark set" in text:
            out.masquerade.append(text)
        for stmt in r.exprs:
            if not isinstance(stmt, dict):
                continue
            if "match" in stmt and str(stmt["match"].get("right", "")).startswith("@affinity"):
                aff = table.sets.get(str(stmt["match"]["right"])[1:])
                out.affinity_seconds = aff.timeout if aff else None
            vmap = stmt.get("vmap")
            if isinstance(vmap, dict) and isinstance(vmap.get("key"), dict) and "numgen" in vmap["key"]:
                n = int(vmap["key"]["numgen"].get("mod", 1))
                items = vmap["data"].get("set", []) if isinstance(vmap["data"], dict) else []
                for _, verdict in items:
                    _, target = _verdict(verdict)
                    ep = _endpoint_of(table, target or "")
                    b = shares.setdefault(ep, Branch(ep, 0.0, target or "", text))
                    b.share += 1.0 / n
    out.branches = sorted(shares.values(), key=lambda b: b.endpoint)
    return out


def _endpoint_of(table: NftTable, chain_name: str) -> str:
    chain = table.chains.get(chain_name)
    for r in chain.rules if chain else []:
        for stmt in r.exprs:
            if isinstance(stmt, dict) and isinstance(stmt.get("dnat"), dict):
                d = stmt["dnat"]
                return f"{d.get('addr', '?')}:{d.get('port', '?')}"
    return "?"


def _clew(table: NftTable, query: str, port: Any) -> None:
    """clew's data maps: per frontend, each slot's endpoint (1/N each)."""
    frontends: dict[tuple[str, str, str], PolicyChain] = {}
    for s in table.sets.values():
        m = _CLEW_MAP.match(s.name)
        if m is None:
            continue
        role, proto, n = m.group(1), m.group(2), int(m.group(3))
        for key, data, comment in _elements(s):
            if not comment or not _wanted(comment, query):
                continue
            parts = _parts(key)
            front = " . ".join(expr(x) for x in parts[:-1])
            pc = frontends.get((comment, role, front))
            if pc is None:
                pc = frontends[(comment, role, front)] = PolicyChain(s.name, ROLES[role])
                p = port(comment)
                address = f"{front.replace(' . ', ':')}/{proto}" if role.startswith("dst") else f"node:{front}/{proto}"
                p.frontends.append({"kind": ROLES[role].split(" (")[0], "address": address, "chain": s.name})
                p.chains.append(pc)
                key_proto = [parts[0], proto, parts[1]] if role.startswith("dst") else [proto, parts[0]]
                pc.masquerade.extend(_masq_sets(table, key_proto, role))
            data_parts = _parts(data)
            ep = ":".join(str(x) for x in data_parts)
            hit = next((b for b in pc.branches if b.endpoint == ep), None)
            if hit is None:
                pc.branches.append(Branch(ep, 1.0 / n, s.name, f"slot {expr(parts[-1])} of {n}"))
            else:
                hit.share += 1.0 / n
    for s in table.sets.values():
        if not s.name.startswith("no-endpoint") or s.is_map:
            continue
        for key, _, comment in _elements(s):
            if comment and _wanted(comment, query):
                verdict = "REJECT" if s.name.endswith("reject") else "DROP"
                address = " . ".join(expr(x) for x in _parts(key))
                port(comment).filters.append({"chain": s.name, "verdict": verdict, "address": address,
                                              "comment": comment})  # fmt: skip


def _masq_sets(table: NftTable, key: list[Any], role: str) -> list[str]:
    names = ("cluster-masq", "external-masq", "external-local") if role.startswith("dst") else (
        "nodeport-masq", "nodeport-local")  # fmt: skip
    want = [str(x) for x in key]
    out = []
    for name in names:
        s = table.sets.get(name)
        if s is None:
            continue
        for k, _, _ in _elements(s):
            if [str(x) for x in _parts(k)] == want:
                out.append(f"@{name}: {MASQ_SETS[name]}")
    return out
