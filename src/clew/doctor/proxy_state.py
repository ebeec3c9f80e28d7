"""What the Service proxy left on a node, in whichever mode: the proxy checks' shared reader.

Four layouts program Services, and the doctor tells them apart by their own state:

* iptables mode (kube-proxy or clew: the same chains) — nat ``KUBE-SERVICES`` with
  ``KUBE-SVC-*`` chains; rule comments start ``ns/name:port``;
* kube-proxy's IPVS mode — the ``kube-ipvs0`` dummy device (its iptables ``KUBE-SERVICES`` only
  matches ipsets, so it is not iptables mode unless ``KUBE-SVC-*`` chains are there too);
* clew's nftables mode — table ``ip clew``: fixed chains, per-Service state in data maps and
  sets whose elements carry the comment ``ns/name:port`` (src/clew/proxy/nftables/README.md);
* kube-proxy's nftables mode — table ``ip kube-proxy``: per-Service chains named
  ``service-<H8>-ns/name/proto/port`` (also ``external-``, ``endpoint-``, ``firewall-``), and
  elements commented ``ns/name:port`` for Services without endpoints.

Who programs iptables mode cannot be read from the chains: clew's agent serves ``clew_*``
metrics next to kube-proxy's, so /metrics names it when it answered.
"""

from __future__ import annotations

import re
from typing import Any

from clew.doctor.facts import NodeFacts

CLEW = ("ip", "clew")
KUBE_PROXY = ("ip", "kube-proxy")
IPTABLES, IPVS = "iptables", "ipvs"
NFT_CLEW, NFT_KUBE_PROXY = "nftables (clew)", "nftables (kube-proxy)"
NFTABLES_MODES = (NFT_CLEW, NFT_KUBE_PROXY)
SERVICE = re.compile(r"^([a-z0-9.-]+/[a-z0-9.-]+)(?::|\s|$)")  # ns/name of a ServicePortName comment
_KP_CHAIN = re.compile(r"^(?:service|external|endpoint|firewall)-[A-Z0-9]{8}-([a-z0-9.-]+/[a-z0-9.-]+)/")
_TABLE_LINE = re.compile(r"^table (\w+) (\S+) \{", re.M)
_NOT_A_SERVICE_SET = {"hairpin"}  # clew: shared by Services (reference-counted), not a Service's program


def nft_tables(f: NodeFacts) -> set[tuple[str, str]]:
    """(family, name) of every nftables table, from ``nft -j`` or else the text listing."""
    found = set(f.nft.tables) if f.nft is not None else set()
    found |= {(m.group(1), m.group(2)) for m in _TABLE_LINE.finditer(f.nft_ruleset or "")}
    return found


# chains only the Service proxy's iptables mode writes (the kubelet writes KUBE-IPTABLES-HINT,
# KUBE-KUBELET-CANARY and, before 1.28, KUBE-FIREWALL / KUBE-MARK-* / KUBE-POSTROUTING: not these)
PROXY_ONLY = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL", "KUBE-FORWARD")


def _all_chains(f: NodeFacts) -> set[str]:
    """Every chain of every table in the default iptables and the other backend's save."""
    other = f.nft_save if f.default_backend == "legacy" else f.legacy_save
    found = {line[1:].split(" ", 1)[0] for line in (other or "").splitlines() if line.startswith(":")}
    if f.ruleset is not None:
        found |= {name for t in f.ruleset.tables.values() for name in t.chains}
    return found


def _iptables_mode(f: NodeFacts) -> bool:
    """nat KUBE-SERVICES in either iptables backend (a legacy maze still matches packets next to
    an nft one), or a leftover chain only iptables mode writes (`PROXY_ONLY`, ``KUBE-SVC-*``,
    ``KUBE-SEP-*``: a half-done cleanup); with kube-ipvs0, only ``KUBE-SVC-*`` chains are
    iptables mode's (IPVS mode writes the others too)."""
    if "kube-ipvs0" not in f.links:
        return any(c in PROXY_ONLY or c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in _all_chains(f))
    return any(name.startswith("KUBE-SVC-") for name in _all_chains(f))


def modes(f: NodeFacts) -> list[str]:
    """The Service proxy modes whose state is on the node (more than one: the "two mazes")."""
    found = []
    if _iptables_mode(f):
        found.append(IPTABLES)
    tables = nft_tables(f)
    if CLEW in tables:
        found.append(NFT_CLEW)
    if KUBE_PROXY in tables:
        found.append(NFT_KUBE_PROXY)
    if "kube-ipvs0" in f.links:
        found.append(IPVS)
    return found


def programmer(f: NodeFacts, mode: str) -> str:
    """Who writes ``mode``'s state: the table names it in nftables mode, /metrics in iptables mode."""
    if mode == NFT_CLEW:
        return "clew"
    if mode in (NFT_KUBE_PROXY, IPVS):
        return "kube-proxy"
    m = f.metrics
    if m is None or m.curl_exit != 0 or not m.values:
        return "clew or kube-proxy"
    return "clew" if any(k.startswith("clew_") for k in m.values) else "kube-proxy"


def _elements(x: dict[str, Any]) -> list[tuple[Any, str | None, Any]]:
    """(key, comment, value) of a set's or map's elements as ``nft -j`` writes them."""
    out = []
    for e in x.get("elem") or []:
        value = None
        if isinstance(e, list) and len(e) == 2:  # a map: [key, value]
            e, value = e
        comment = None
        if isinstance(e, dict) and "elem" in e:
            comment = e["elem"].get("comment")
            e = e["elem"].get("val")
        out.append((e, comment if isinstance(comment, str) else None, value))
    return out


def _table_sets(f: NodeFacts, table: tuple[str, str]) -> list[dict[str, Any]]:
    if f.nft is None:
        return []
    return [x for (fam, t, _), x in f.nft.sets.items() if (fam, t) == table]


def _table_rules(f: NodeFacts, table: tuple[str, str]) -> list[tuple[str, dict[str, Any]]]:
    if f.nft is None:
        return []
    return [(chain, r) for (fam, t, chain), rules in f.nft.rules.items() if (fam, t) == table for r in rules]


def _table_chains(f: NodeFacts, table: tuple[str, str]) -> list[str]:
    if f.nft is None:
        return []
    return [name for (fam, t, name) in f.nft.chains if (fam, t) == table]


def nft_programmed(f: NodeFacts, table: tuple[str, str]) -> set[str]:
    """``ns/name`` of every Service with state in an nftables proxy table: element comments
    (both layouts), and kube-proxy's per-Service chain names."""
    out = set()
    for x in _table_sets(f, table):
        if x.get("name") in _NOT_A_SERVICE_SET:
            continue
        for _, comment, _ in _elements(x):
            m = SERVICE.match(comment or "")
            if m:
                out.add(m.group(1))
    for name in _table_chains(f, table):
        m = _KP_CHAIN.match(name)
        if m:
            out.add(m.group(1))
    return out


def nft_service_ports(f: NodeFacts, table: tuple[str, str]) -> set[str]:
    """``ns/name:port`` of every Service port with state in an nftables proxy table."""
    out = {c for x in _table_sets(f, table) for _, c, _ in _elements(x) if c and SERVICE.match(c)}
    out |= {m.group(0) for name in _table_chains(f, table) if (m := re.match(r"^service-[A-Z0-9]{8}-\S+", name))}
    return out


def _concat(v: Any) -> list[Any]:
    return list(v["concat"]) if isinstance(v, dict) and isinstance(v.get("concat"), list) else [v]


def nft_service_ips_and_endpoints(f: NodeFacts, table: tuple[str, str]) -> tuple[set[str], set[str]]:
    """(destination IPs the table sends somewhere, ``ip:port`` DNAT targets): the first address
    of each element key (clew's data maps and sets, kube-proxy's ``service-ips`` and
    ``cluster-ips``), the ``ip . port`` values of clew's DNAT maps, and ``dnat to`` rules
    (kube-proxy's endpoint chains, clew's affinity chains)."""
    ips: set[str] = set()
    endpoints: set[str] = set()
    for x in _table_sets(f, table):
        if x.get("name") in _NOT_A_SERVICE_SET or x.get("name") in ("nodeport-ips", "firewall-allow"):
            continue
        for key, _, value in _elements(x):
            first = _concat(key)[0]
            if isinstance(first, str) and first.count(".") == 3:
                ips.add(first)
            parts = _concat(value) if value is not None else []
            if len(parts) == 2 and isinstance(parts[0], str) and isinstance(parts[1], int):
                endpoints.add(f"{parts[0]}:{parts[1]}")
    for _, rule in _table_rules(f, table):
        for e in rule.get("expr", []):
            d = e.get("dnat") if isinstance(e, dict) else None
            if isinstance(d, dict) and isinstance(d.get("addr"), str) and isinstance(d.get("port"), int):
                endpoints.add(f"{d['addr']}:{d['port']}")
    return ips, endpoints


def nft_masquerades(f: NodeFacts) -> list[tuple[str, bool]]:
    """(rule label, fully-random?) of every ``masquerade`` outside iptables-nft's own tables
    (those are read through iptables-save)."""
    if f.nft is None:
        return []
    out = []
    for (fam, table, chain), rules in f.nft.rules.items():
        if fam in ("ip", "ip6") and table in ("filter", "nat", "mangle", "raw", "security"):
            continue
        for r in rules:
            for e in r.get("expr", []):
                if isinstance(e, dict) and "masquerade" in e:
                    flags = (e["masquerade"] or {}).get("flags") if isinstance(e["masquerade"], dict) else None
                    names = flags if isinstance(flags, list) else [flags]
                    label = f"table {fam} {table} chain {chain} handle {r.get('handle', '?')}: masquerade"
                    out.append((label + (" fully-random" if "fully-random" in names else ""), "fully-random" in names))
    return out


def nft_clears_mark_before_masquerade(f: NodeFacts, table: tuple[str, str], bit: int) -> bool:
    """Whether a chain of ``table`` that masquerades flips ``bit`` off first
    (``meta mark set meta mark ^ BIT`` after ``meta mark & BIT == 0 return``, both layouts)."""
    if f.nft is None:
        return False
    for (fam, t, _), rules in f.nft.rules.items():
        if (fam, t) != table:
            continue
        cleared = False
        for r in rules:
            for e in r.get("expr", []):
                if not isinstance(e, dict):
                    continue
                if "masquerade" in e:
                    if cleared:
                        return True
                    break
                mangle = e.get("mangle")
                if isinstance(mangle, dict) and mangle.get("key") == {"meta": {"key": "mark"}}:
                    value = mangle.get("value")
                    xor = value.get("^") if isinstance(value, dict) else None
                    if isinstance(xor, list) and len(xor) == 2 and xor[1] == bit:
                        cleared = True
    return False
