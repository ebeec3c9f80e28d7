"""Render kube-proxy's iptables rules from `PortPolicy` decisions — a pure function.

The output is what kube-proxy's ``syncProxyRules`` writes to ``iptables-restore --noflush``,
rule for rule and byte for byte (see README.md for the layout and the kube-proxy release it
follows). It is kept split per Service port so that a partial sync can rewrite only the chains
of changed Services while still rewriting the shared top-level chains in full.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.netfilter.restore import TableText, comment, payload, probability
from clew.proxy import names as n
from clew.proxy.iptables.jumps import standalone_prefix
from clew.proxy.policy import Endpoint, PortPolicy, large_cluster_mode

NODEPORTS_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
FILTER_TOP_CHAINS = (n.KUBE_SERVICES, n.KUBE_EXTERNAL_SERVICES, n.KUBE_FORWARD, n.KUBE_NODEPORTS, n.KUBE_PROXY_FIREWALL)
NAT_TOP_CHAINS = (n.KUBE_SERVICES, n.KUBE_NODEPORTS, n.KUBE_POSTROUTING, n.KUBE_MARK_MASQ)


@dataclass(frozen=True, slots=True)
class PortRules:
    """The rules one Service port contributes.

    ``filter_rules`` and ``nat_top_rules`` go into shared top-level chains; ``chains`` and
    ``chain_rules`` are the port's own KUBE-SVC/SVL/EXT/FW/SEP chains. A partial sync touches
    only the ports whose rules changed (see ``partial.py``).
    """

    key: str  # "<spn>/<proto>": one Service port
    service_key: str
    spn: str
    filter_rules: tuple[str, ...]
    nat_top_rules: tuple[str, ...]
    chains: tuple[str, ...]
    chain_rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A full render: fixed chains and rules, plus the per-port pieces in a stable order."""

    config: ProxyConfig
    ports: tuple[PortRules, ...]
    filter_chains: tuple[str, ...]
    filter_head: tuple[str, ...]
    filter_tail: tuple[str, ...]
    nat_head: tuple[str, ...]
    nat_tail: tuple[str, ...]

    def owned_nat_chains(self) -> set[str]:
        return {c for p in self.ports for c in p.chains}

    def text(
        self,
        *,
        only_services: Collection[str] | None = None,
        delete_chains: Iterable[str] = (),
        standalone: bool = False,
    ) -> str:
        """The restore payload. With ``only_services`` (Service keys ``ns/name``), the per-port
        chains of other Services are left out: a partial sync. ``delete_chains`` are declared
        and deleted (``-X``), kube-proxy's stale-chain cleanup. ``standalone`` adds the canary
        chains and the built-in chain jumps, for loading into an empty namespace without the
        agent (``iptables-restore`` without ``--noflush``)."""
        return payload(self.tables(only_services=only_services, delete_chains=delete_chains, standalone=standalone))

    def tables(
        self,
        *,
        only_services: Collection[str] | None = None,
        delete_chains: Iterable[str] = (),
        standalone: bool = False,
    ) -> list[TableText]:
        """The payload's tables as chain and rule lists (no text joined yet); see `text`."""
        extra = standalone_prefix(self.config) if standalone else {}
        filt = TableText("filter", list(self.filter_chains), [*extra.get("filter", ()), *self.filter_head])
        nat = TableText("nat", list(NAT_TOP_CHAINS), [*extra.get("nat", ()), *self.nat_head])
        for p in self.ports:
            filt.rules.extend(p.filter_rules)
            nat.rules.extend(p.nat_top_rules)
            if only_services is None or p.service_key in only_services:
                nat.chains.extend(p.chains)
                nat.rules.extend(p.chain_rules)
        filt.rules.extend(self.filter_tail)
        stale = list(delete_chains)
        nat.chains.extend(stale)
        nat.rules.extend(f"-X {c}" for c in stale)
        nat.rules.extend(self.nat_tail)
        tables = [filt, nat]
        if standalone:
            filt.chains.append(n.KUBE_PROXY_CANARY)
            nat.chains.append(n.KUBE_PROXY_CANARY)
            tables.insert(0, TableText("mangle", [n.KUBE_PROXY_CANARY], list(extra["mangle"])))
        return tables


def local_match(config: ProxyConfig, *, negate: bool) -> str | None:
    """The local-traffic detector's match (``-s 10.244.0.0/16``, ``! -i cni0``…), or None."""
    bang = "! " if negate else ""
    mode = config.detect_local
    if mode in (DetectLocal.CLUSTER_CIDR, DetectLocal.NODE_CIDR) and config.local_cidrs:
        return f"{bang}-s {config.local_cidrs[0]}"
    if mode is DetectLocal.BRIDGE_INTERFACE:
        return f"{bang}-i {config.bridge_interface}"
    if mode is DetectLocal.INTERFACE_NAME_PREFIX:
        return f"{bang}-i {config.interface_name_prefix}+"
    return None


def _endpoint_rules(
    out: list[str], p: PortPolicy, chain: str, endpoints: tuple[Endpoint, ...], sep: dict[str, str], quiet: bool
) -> None:
    """KUBE-SVC/SVL: affinity checks first, then 1/n, 1/(n-1), … random choices."""
    spn = p.spn
    if p.affinity_timeout is not None:
        for e in endpoints:
            c = "" if quiet else comment(f"{spn} -> {e.key}") + " "
            out.append(
                f"-A {chain} {c}-m recent --name {sep[e.key]} --rcheck --seconds {p.affinity_timeout} "
                f"--reap -j {sep[e.key]}"
            )
    count = len(endpoints)
    for i, e in enumerate(endpoints):
        c = "" if quiet else comment(f"{spn} -> {e.key}") + " "
        stat = f"-m statistic --mode random --probability {probability(count - i)} " if i < count - 1 else ""
        out.append(f"-A {chain} {c}{stat}-j {sep[e.key]}")


def render_port(p: PortPolicy, config: ProxyConfig, quiet: bool) -> PortRules:
    """Every rule of one Service port, in kube-proxy's order (proxier.go syncProxyRules)."""
    spn, proto = p.spn, p.proto
    h = n.port_hash(spn, proto)
    svc, svl, ext, fw = "KUBE-SVC-" + h, "KUBE-SVL-" + h, "KUBE-EXT-" + h, "KUBE-FW-" + h
    internal_chain = svl if p.internal_policy_local else svc
    external_policy_chain = svl if p.external_policy_local else svc
    lb_chain = fw if p.uses_firewall_chain else ext
    match = f"-m {proto} -p {proto}"
    filt: list[str] = []
    top: list[str] = []
    chains: list[str] = []
    rules: list[str] = []
    verdict_c = comment(p.verdict_comment)
    ivd, evd = p.internal_verdict, p.external_verdict

    if p.has_internal_endpoints:
        top.append(
            f"-A KUBE-SERVICES {comment(spn + ' cluster IP')} {match} -d {p.cluster_ip} --dport {p.port} "
            f"-j {internal_chain}"
        )
    else:
        filt.append(f"-A KUBE-SERVICES {verdict_c} {match} -d {p.cluster_ip} --dport {p.port} -j {ivd}")
    for ip in p.external_ips:
        if p.has_endpoints:
            top.append(f"-A KUBE-SERVICES {comment(spn + ' external IP')} {match} -d {ip} --dport {p.port} -j {ext}")
        if evd is not None:
            filt.append(f"-A KUBE-EXTERNAL-SERVICES {verdict_c} {match} -d {ip} --dport {p.port} -j {evd}")
    for ip in p.load_balancer_ips:
        if p.has_endpoints:
            top.append(
                f"-A KUBE-SERVICES {comment(spn + ' loadbalancer IP')} {match} -d {ip} --dport {p.port} -j {lb_chain}"
            )
        if p.uses_firewall_chain:
            filt.append(
                f"-A KUBE-PROXY-FIREWALL {comment(f'{spn} traffic not accepted by {fw}')} {match} -d {ip} "
                f"--dport {p.port} -j DROP"
            )
    if evd is not None:
        for ip in p.load_balancer_ips:
            filt.append(f"-A KUBE-EXTERNAL-SERVICES {verdict_c} {match} -d {ip} --dport {p.port} -j {evd}")
    if p.node_port:
        if p.has_endpoints:
            if config.nfacct and config.localhost_nodeports:
                top.append(
                    f"-A KUBE-NODEPORTS {comment(spn)} {match} -d 127.0.0.0/8 --dport {p.node_port} "
                    f"-m nfacct --nfacct-name localhost_nps_accepted_pkts -j {ext}"
                )
            top.append(f"-A KUBE-NODEPORTS {comment(spn)} {match} --dport {p.node_port} -j {ext}")
        if evd is not None:
            filt.append(
                f"-A KUBE-EXTERNAL-SERVICES {verdict_c} -m addrtype --dst-type LOCAL {match} "
                f"--dport {p.node_port} -j {evd}"
            )
    if p.health_check_node_port:
        filt.append(
            f"-A KUBE-NODEPORTS {comment(spn + ' health check node port')} -m tcp -p tcp "
            f"--dport {p.health_check_node_port} -j ACCEPT"
        )

    # The port's own nat chains.
    if p.has_internal_endpoints:
        head = f"-A {internal_chain} {comment(spn + ' cluster IP')} {match} -d {p.cluster_ip} --dport {p.port}"
        if config.masquerade_all:
            rules.append(f"{head} -j KUBE-MARK-MASQ")
        elif (not_local := local_match(config, negate=True)) is not None:
            rules.append(f"{head} {not_local} -j KUBE-MARK-MASQ")
    if p.uses_external_chain:
        chains.append(ext)
        if not p.external_policy_local:
            rules.append(f"-A {ext} {comment(f'masquerade traffic for {spn} external destinations')} -j KUBE-MARK-MASQ")
        else:
            if (is_local := local_match(config, negate=False)) is not None:
                rules.append(f"-A {ext} {comment(f'pod traffic for {spn} external destinations')} {is_local} -j {svc}")
            rules.append(
                f"-A {ext} {comment(f'masquerade LOCAL traffic for {spn} external destinations')} "
                f"-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
            )
            rules.append(
                f"-A {ext} {comment(f'route LOCAL traffic for {spn} external destinations')} "
                f"-m addrtype --src-type LOCAL -j {svc}"
            )
        if p.has_external_endpoints:
            rules.append(f"-A {ext} -j {external_policy_chain}")
    if p.uses_firewall_chain:
        chains.append(fw)
        lb_comment = comment(spn + " loadbalancer IP")
        rules.extend(f"-A {fw} {lb_comment} -s {cidr} -j {ext}" for cidr in p.source_ranges)
        if any(_contains(cidr, ip) for cidr in p.source_ranges for ip in config.node_ips):
            rules.extend(f"-A {fw} {lb_comment} -s {ip} -j {ext}" for ip in p.load_balancer_ips)
        rules.append(f"-A {fw} {comment(f'other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL')}")
    sep = {e.key: n.sep_chain(spn, proto, e.key) for e in p.all_reachable}
    if p.uses_cluster_chain:
        chains.append(svc)
        _endpoint_rules(rules, p, svc, p.cluster_endpoints, sep, quiet)
    if p.uses_local_chain:
        chains.append(svl)
        _endpoint_rules(rules, p, svl, p.local_endpoints, sep, quiet)
    spn_c = "" if quiet else comment(spn) + " "
    for e in p.all_reachable:
        chain = sep[e.key]
        chains.append(chain)
        rules.append(f"-A {chain} {spn_c}-s {e.ip} -j KUBE-MARK-MASQ")
        recent = f"-m recent --name {chain} --set " if p.affinity_timeout is not None else ""
        rules.append(f"-A {chain} {spn_c}{recent}{match} -j DNAT --to-destination {e.key}")
    return PortRules(f"{spn}/{proto}", p.service_key, spn, tuple(filt), tuple(top), tuple(chains), tuple(rules))


def _contains(cidr: str, ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


def _fixed(
    config: ProxyConfig,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    mark = config.masquerade_mark
    filter_chains = list(FILTER_TOP_CHAINS)
    filter_head: list[str] = []
    if config.localhost_nodeports:
        filter_chains.append(n.KUBE_FIREWALL)
        filter_head.append(
            f"-A KUBE-FIREWALL {comment('block incoming localnet connections')} -d 127.0.0.0/8 "
            "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        )
    invalid_acct = "-m nfacct --nfacct-name ct_state_invalid_dropped_pkts " if config.nfacct else ""
    filter_tail = (
        f"-A KUBE-FORWARD -m conntrack --ctstate INVALID {invalid_acct}-j DROP",
        f"-A KUBE-FORWARD {comment('kubernetes forwarding rules')} -m mark --mark {mark}/{mark} -j ACCEPT",
        f"-A KUBE-FORWARD {comment('kubernetes forwarding conntrack rule')} -m conntrack "
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
    )
    random_fully = " --random-fully" if config.random_fully else ""
    nat_head = (
        f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}",
        f"-A KUBE-POSTROUTING {comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE{random_fully}",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}",
    )
    nodeports = comment(NODEPORTS_COMMENT)
    if not config.nodeport_addresses:
        not_lo = "" if config.localhost_nodeports else " ! -d 127.0.0.0/8"
        nat_tail: tuple[str, ...] = (
            f"-A KUBE-SERVICES {nodeports} -m addrtype --dst-type LOCAL{not_lo} -j KUBE-NODEPORTS",
        )
    else:
        v4 = [ip for ip in config.node_ips if ipaddress.ip_address(ip).version == 4]
        ips = [ip for ip in v4 if any(_contains(c, ip) for c in config.nodeport_addresses)]
        if config.localhost_nodeports and any(_contains(c, "127.0.0.1") for c in config.nodeport_addresses):
            ips.append("127.0.0.1")
        nat_tail = tuple(f"-A KUBE-SERVICES {nodeports} -d {ip} -j KUBE-NODEPORTS" for ip in dict.fromkeys(ips))
    return tuple(filter_chains), tuple(filter_head), filter_tail, nat_head, nat_tail


def render(policies: Iterable[PortPolicy], config: ProxyConfig) -> Rendered:
    """The full render of every Service port. Pure: same input, same output."""
    ports = list(policies)
    quiet = large_cluster_mode(ports)
    return assemble([render_port(p, config, quiet) for p in ports], config)


def assemble(ports: Iterable[PortRules], config: ProxyConfig) -> Rendered:
    """A `Rendered` from per-port rules already made (the sync engine caches them)."""
    filter_chains, filter_head, filter_tail, nat_head, nat_tail = _fixed(config)
    return Rendered(
        config=config,
        ports=tuple(ports),
        filter_chains=filter_chains,
        filter_head=filter_head,
        filter_tail=filter_tail,
        nat_head=nat_head,
        nat_tail=nat_tail,
    )
