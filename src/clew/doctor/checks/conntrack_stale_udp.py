"""``conntrack.stale_udp``: UDP conntrack entries DNATed to an endpoint that no longer exists.

UDP has no connection end: while a client keeps sending (DNS, a game, syslog), its entry keeps
the old DNAT and every packet goes to the gone endpoint (kubernetes #18604, #125467). An entry
is stale when its original destination is a Service IP or a node address, its reply comes from
another address (DNAT), and that ``ip:port`` is no endpoint in the current rules (iptables mode:
KUBE-SEP DNAT targets; nftables mode: the ``ip . port`` values of clew's DNAT maps and the
``dnat to`` rules of either table, `proxy_state`)."""

from __future__ import annotations

from clew.doctor import proxy_state
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "conntrack.stale_udp"


def service_ips_and_endpoints(f: NodeFacts) -> tuple[set[str], set[str]]:
    """(Service IPs in nat KUBE-SERVICES, ``ip:port`` DNAT targets of the KUBE-SEP chains)."""
    ips: set[str] = set()
    endpoints: set[str] = set()
    nat = f.ruleset.tables.get("nat") if f.ruleset else None
    for name, chain in nat.chains.items() if nat else []:
        for rule in chain.rules:
            if name == "KUBE-SERVICES":
                d = rule.core_option("-d")
                if d is not None and not d.negated:
                    ips.add(d.value.removesuffix("/32"))
            if rule.target is not None and rule.target.name == "DNAT":
                to = rule.target.get("--to-destination")
                if to is not None:
                    endpoints.add(to.value)
    return ips, endpoints


def check(f: NodeFacts) -> Finding:
    if f.udp_flows is None:
        return skip(ID, "UDP conntrack entries not collected (conntrack tool missing?)")
    found = [m for m in proxy_state.modes(f) if m != proxy_state.IPVS]
    if not found:
        return skip(ID, "no iptables- or nftables-mode Service rules to tell endpoints from (IPVS is not read)")
    ips, endpoints = service_ips_and_endpoints(f)
    for mode, table in ((proxy_state.NFT_CLEW, proxy_state.CLEW), (proxy_state.NFT_KUBE_PROXY, proxy_state.KUBE_PROXY)):
        if mode in found:
            more_ips, more_endpoints = proxy_state.nft_service_ips_and_endpoints(f, table)
            ips |= more_ips
            endpoints |= more_endpoints
    targets = ips | {a.ip for a in f.addresses}
    stale = [
        flow
        for flow in f.udp_flows
        if flow.orig_dst in targets
        and flow.reply_src != flow.orig_dst
        and f"{flow.reply_src}:{flow.reply_sport}" not in endpoints
    ]
    shown = [f"{x.orig_src} -> {x.orig_dst}:{x.orig_dport} DNAT {x.reply_src}:{x.reply_sport}" for x in stale]
    evidence = {"udp_entries": len(f.udp_flows), "stale": shown[:20]}
    if stale:
        first = stale[0]
        return fail(
            ID,
            f"{len(stale)} UDP conntrack entries DNATed to gone endpoints ({shown[0]})",
            f"conntrack -D -p udp --orig-dst {first.orig_dst} --reply-src {first.reply_src} (each listed); "
            "the proxy should clear them on endpoint changes",
            **evidence,
        )
    return ok(ID, f"no stale UDP entry among {len(f.udp_flows)}", **evidence)
