"""The fixed part of clew's nftables table: chains, sets, maps and rules whose number does not
grow with the Services (see README.md). A function of the configuration and of the
endpoint-count groups in use, nothing else — so a one-Service change never touches it, unless
that Service brings the first port of a new group (or takes away the last one of an old group).

Names here are the layout's contract with the sync engine and the explainer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.nftables.layout import FAMILY, TABLE, Group, quote

TABLE_COMMENT = "rules for clew's Service proxy (nftables mode)"
PROTOCOLS = ("tcp", "udp", "sctp")
ROLES = ("dst", "dst-sc", "np", "np-sc")  # Group.role values

# Base chains: (name, type, hook, priority) — kube-proxy v1.33's hooks and priorities.
BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
FIREWALL_CHECK = "firewall-check"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
EXTERNAL_ENDPOINTS_CHECK = "external-endpoints-check"
SERVICES = "services"
NODEPORTS = "nodeports"
MASQUERADING = "masquerading"
REGULAR_CHAINS = (FIREWALL_CHECK, SERVICE_ENDPOINTS_CHECK, EXTERNAL_ENDPOINTS_CHECK, SERVICES, NODEPORTS, MASQUERADING)

# Verdict maps (only Services with chains of their own: ClientIP affinity).
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
# Data sets keyed by destination (ip . proto . port) or NodePort (proto . port).
CLUSTER_MASQ = "cluster-masq"
EXTERNAL_MASQ = "external-masq"
EXTERNAL_LOCAL = "external-local"
NODEPORT_MASQ = "nodeport-masq"
NODEPORT_LOCAL = "nodeport-local"
NO_ENDPOINT_REJECT = "no-endpoint-reject"
NO_ENDPOINT_DROP = "no-endpoint-drop"
NO_ENDPOINT_EXTERNAL_REJECT = "no-endpoint-external-reject"
NO_ENDPOINT_EXTERNAL_DROP = "no-endpoint-external-drop"
NO_ENDPOINT_NODEPORTS_REJECT = "no-endpoint-nodeports-reject"
NO_ENDPOINT_NODEPORTS_DROP = "no-endpoint-nodeports-drop"
FIREWALL_IPS = "firewall-ips"
FIREWALL_ALLOW = "firewall-allow"
HAIRPIN = "hairpin"
NODEPORT_IPS = "nodeport-ips"

DEST = "ipv4_addr . inet_proto . inet_service"
NODEPORT = "inet_proto . inet_service"
DEST_MATCH = "ip daddr . meta l4proto . th dport"
NODEPORT_MATCH = "meta l4proto . th dport"

# name → (type, flags, comment); the order is the declaration order.
SETS: dict[str, tuple[str, str, str]] = {
    CLUSTER_MASQ: (DEST, "", "ClusterIP destinations with internal endpoints: masquerade non-pod sources"),
    EXTERNAL_MASQ: (DEST, "", "externalIPs/LB IPs of Cluster-policy ports with endpoints: masquerade"),
    EXTERNAL_LOCAL: (DEST, "", "externalIPs/LB IPs of Local-policy ports: masquerade node-local sources"),
    NODEPORT_MASQ: (NODEPORT, "", "NodePorts of Cluster-policy ports with endpoints: masquerade"),
    NODEPORT_LOCAL: (NODEPORT, "", "NodePorts of Local-policy ports: masquerade node-local sources"),
    NO_ENDPOINT_REJECT: (DEST, "", "ClusterIP destinations without endpoints: reject"),
    NO_ENDPOINT_DROP: (DEST, "", "ClusterIP destinations of iTP=Local ports without local endpoints: drop"),
    NO_ENDPOINT_EXTERNAL_REJECT: (DEST, "", "externalIP/LB IP destinations without endpoints: reject"),
    NO_ENDPOINT_EXTERNAL_DROP: (
        DEST,
        "",
        "externalIPs/LB IPs of eTP=Local ports without local endpoints: drop",
    ),
    NO_ENDPOINT_NODEPORTS_REJECT: (NODEPORT, "", "NodePorts without endpoints: reject"),
    NO_ENDPOINT_NODEPORTS_DROP: (NODEPORT, "", "NodePorts of eTP=Local ports without local endpoints: drop"),
    FIREWALL_IPS: (DEST, "", "LB IP destinations subject to loadBalancerSourceRanges"),
    FIREWALL_ALLOW: (f"{DEST} . ipv4_addr", "interval", "LB IP destination . allowed source range"),
    HAIRPIN: ("ipv4_addr . ipv4_addr", "", "endpoint . endpoint: a pod reaching itself through a Service"),
    NODEPORT_IPS: ("ipv4_addr", "", "IPs that accept NodePort traffic (nodePortAddresses)"),
}
MAPS: dict[str, tuple[str, str]] = {
    SERVICE_IPS: (f"{DEST} : verdict", "destinations of Services with chains of their own (ClientIP affinity)"),
    SERVICE_NODEPORTS: (f"{NODEPORT} : verdict", "NodePorts of Services with chains of their own (ClientIP affinity)"),
}


def role_chain(role: str) -> str:
    """The chain holding one rule per group of ``role`` (``dst`` is a keyword in nft: no bare name)."""
    return f"dnat-{role}"


def group_map_decl(g: Group) -> str:
    """``add map`` for a group's data map: key ``<dest> . numgen random mod N`` → ``ip . port``."""
    key = f"ip daddr . {g.proto} dport" if g.role.startswith("dst") else f"{g.proto} dport"
    spec = f"typeof {key} . numgen random mod {g.n} : ip daddr . {g.proto} dport"
    note = f"{g.role} endpoints of {g.proto} ports with {g.n} endpoint{'s' if g.n > 1 else ''}"
    return f"add map {FAMILY} {TABLE} {g.map_name} {{ {spec} ; comment {quote(note)} ; }}"


def group_rule(g: Group) -> str:
    """The one rule of a group, in its role's chain: a miss (another group's port) falls through."""
    key = f"ip daddr . {g.proto} dport" if g.role.startswith("dst") else f"{g.proto} dport"
    return (
        f"add rule {FAMILY} {TABLE} {role_chain(g.role)} dnat ip to {key} . numgen random mod {g.n} map @{g.map_name}"
    )


def group_rules(groups: Iterable[Group]) -> tuple[str, ...]:
    """Every group's rule in a stable order (role, protocol, endpoint count)."""
    return tuple(group_rule(g) for g in sorted(groups, key=_group_order))


def _group_order(g: Group) -> tuple[int, int, int]:
    return ROLES.index(g.role), PROTOCOLS.index(g.proto), g.n


def mark(config: ProxyConfig) -> str:
    """``meta mark set meta mark | 0x4000``: kube-proxy's KUBE-MARK-MASQ."""
    return f"meta mark set meta mark | {config.masquerade_mark}"


def _local_cidr(config: ProxyConfig) -> str | None:
    for cidr in config.local_cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == 4:
            return str(net)
    return None


@lru_cache(maxsize=64)
def local_match(config: ProxyConfig, *, negate: bool) -> str | None:
    """The local-traffic detector (``ip saddr 10.244.0.0/16``, ``iifname != "cni0"``…), or None.

    ``iifname`` is the empty string for locally generated packets, as ``-i`` is in iptables'
    OUTPUT path: ``!= "cni0"`` matches them, ``"cni0"`` does not."""
    op = "!= " if negate else ""
    mode = config.detect_local
    if mode in (DetectLocal.CLUSTER_CIDR, DetectLocal.NODE_CIDR):
        cidr = _local_cidr(config)
        return None if cidr is None else f"ip saddr {op}{cidr}"
    if mode is DetectLocal.BRIDGE_INTERFACE and config.bridge_interface:
        return f"iifname {op}{quote(config.bridge_interface)}"
    if mode is DetectLocal.INTERFACE_NAME_PREFIX and config.interface_name_prefix:
        return f"iifname {op}{quote(config.interface_name_prefix + '*')}"
    return None


def nodeport_ips(config: ProxyConfig) -> tuple[str, ...]:
    """With nodePortAddresses: the node's IPv4 addresses inside them (never 127.0.0.1: localhost
    NodePorts are off in nftables mode, as in kube-proxy's)."""
    nets = [ipaddress.ip_network(c, strict=False) for c in config.nodeport_addresses]
    found = []
    for ip in config.node_ips:
        addr = ipaddress.ip_address(ip)
        if addr.version == 4 and not addr.is_loopback and any(addr in n for n in nets if n.version == 4):
            found.append(str(addr))
    return tuple(dict.fromkeys(found))


def _rules(config: ProxyConfig) -> dict[str, list[str]]:
    """Every fixed chain's rule bodies, in order."""
    m = mark(config)
    not_local, is_local = local_match(config, negate=True), local_match(config, negate=False)
    protect = (
        "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 "
        f"drop comment {quote('block incoming localnet connections')}"
    )
    rules: dict[str, list[str]] = {
        "filter-prerouting-pre-dnat": [f"ct state new jump {FIREWALL_CHECK}"],
        "filter-output-pre-dnat": [f"ct state new jump {FIREWALL_CHECK}"],
        "filter-input": [f"ct state new jump {EXTERNAL_ENDPOINTS_CHECK}", protect],
        "filter-forward": [
            "ct state invalid drop",
            f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",
            f"ct state new jump {EXTERNAL_ENDPOINTS_CHECK}",
        ],
        "filter-output": [f"ct state new jump {SERVICE_ENDPOINTS_CHECK}", protect],
        "nat-prerouting": [f"jump {SERVICES}"],
        "nat-output": [f"jump {SERVICES}"],
        "nat-postrouting": [f"jump {MASQUERADING}"],
        FIREWALL_CHECK: [
            f"{DEST_MATCH} @{FIREWALL_IPS} {DEST_MATCH} . ip saddr != @{FIREWALL_ALLOW} drop "
            f"comment {quote('loadBalancerSourceRanges')}"
        ],
        SERVICE_ENDPOINTS_CHECK: [
            f"{DEST_MATCH} @{NO_ENDPOINT_REJECT} reject",
            f"{DEST_MATCH} @{NO_ENDPOINT_DROP} drop",
        ],
        EXTERNAL_ENDPOINTS_CHECK: [
            f"{DEST_MATCH} @{NO_ENDPOINT_EXTERNAL_REJECT} reject",
            f"{DEST_MATCH} @{NO_ENDPOINT_EXTERNAL_DROP} drop",
            f"fib daddr type local {NODEPORT_MATCH} @{NO_ENDPOINT_NODEPORTS_REJECT} reject",
            f"fib daddr type local {NODEPORT_MATCH} @{NO_ENDPOINT_NODEPORTS_DROP} drop",
        ],
    }
    services = [f"{DEST_MATCH} vmap @{SERVICE_IPS}"]
    if config.masquerade_all:
        services.append(f"{DEST_MATCH} @{CLUSTER_MASQ} {m}")
    elif not_local is not None:
        services.append(f"{DEST_MATCH} @{CLUSTER_MASQ} {not_local} {m}")
    services.append(f"{DEST_MATCH} @{EXTERNAL_MASQ} {m}")
    if is_local is not None:
        services.append(f"{is_local} jump {role_chain('dst-sc')} comment {quote('short-circuit pod traffic')}")
    services += [
        f"fib saddr type local {DEST_MATCH} @{EXTERNAL_LOCAL} {m}",
        f"fib saddr type local jump {role_chain('dst-sc')} comment {quote('short-circuit local traffic')}",
        f"jump {role_chain('dst')}",
    ]
    gate = f"ip daddr @{NODEPORT_IPS}" if config.nodeport_addresses else "fib daddr type local ip daddr != 127.0.0.0/8"
    services.append(f"{gate} jump {NODEPORTS}")
    rules[SERVICES] = services
    nodeports = [f"{NODEPORT_MATCH} vmap @{SERVICE_NODEPORTS}", f"{NODEPORT_MATCH} @{NODEPORT_MASQ} {m}"]
    if is_local is not None:
        nodeports.append(f"{is_local} jump {role_chain('np-sc')} comment {quote('short-circuit pod traffic')}")
    nodeports += [
        f"fib saddr type local {NODEPORT_MATCH} @{NODEPORT_LOCAL} {m}",
        f"fib saddr type local jump {role_chain('np-sc')} comment {quote('short-circuit local traffic')}",
        f"jump {role_chain('np')}",
    ]
    rules[NODEPORTS] = nodeports
    bit = config.masquerade_mark
    rules[MASQUERADING] = [
        f"ct status dnat ip saddr . ip daddr @{HAIRPIN} {m} comment {quote('hairpin')}",
        f"meta mark & {bit} == 0 return",
        f"meta mark set meta mark ^ {bit}",
        "masquerade fully-random" if config.random_fully else "masquerade",
    ]
    return rules


def fixed(config: ProxyConfig, groups: Iterable[Group]) -> tuple[str, ...]:
    """The table, every fixed chain, set and map, the maps of ``groups`` and every fixed rule,
    as nft commands in an order nft accepts (declarations before the rules that use them)."""
    used = sorted(set(groups), key=_group_order)
    out = [f"add table {FAMILY} {TABLE} {{ comment {quote(TABLE_COMMENT)} ; }}"]
    for name, kind, hook, priority in BASE_CHAINS:
        out.append(f"add chain {FAMILY} {TABLE} {name} {{ type {kind} hook {hook} priority {priority} ; }}")
    out.extend(f"add chain {FAMILY} {TABLE} {name}" for name in REGULAR_CHAINS)
    out.extend(f"add chain {FAMILY} {TABLE} {role_chain(role)}" for role in ROLES)
    for name, (kind, flags, note) in SETS.items():
        f = f" flags {flags} ;" if flags else ""
        out.append(f"add set {FAMILY} {TABLE} {name} {{ type {kind} ;{f} comment {quote(note)} ; }}")
    for name, (kind, note) in MAPS.items():
        out.append(f"add map {FAMILY} {TABLE} {name} {{ type {kind} ; comment {quote(note)} ; }}")
    out.extend(group_map_decl(g) for g in used)
    if ips := nodeport_ips(config):
        out.append(f"add element {FAMILY} {TABLE} {NODEPORT_IPS} {{ {', '.join(ips)} }}")
    for chain, bodies in _rules(config).items():
        out.extend(f"add rule {FAMILY} {TABLE} {chain} {body}" for body in bodies)
    out.extend(group_rules(used))
    return tuple(out)


def regroup(old: Iterable[Group], new: Iterable[Group]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Commands that take the table from the groups ``old`` to ``new``, as (before, after): run
    ``before`` ahead of the element changes (new maps, the changed role chains flushed and
    refilled with one rule per group of ``new``) and ``after`` behind them (maps of groups that
    went, no longer referenced). Both empty when the groups did not change."""
    before_groups, after_groups = set(old), set(new)
    added, removed = after_groups - before_groups, before_groups - after_groups
    roles = sorted({g.role for g in added | removed}, key=ROLES.index)
    before = [group_map_decl(g) for g in sorted(added, key=_group_order)]
    for role in roles:
        before.append(f"flush chain {FAMILY} {TABLE} {role_chain(role)}")
        before.extend(group_rules(g for g in after_groups if g.role == role))
    after = [f"delete map {FAMILY} {TABLE} {g.map_name}" for g in sorted(removed, key=_group_order)]
    return tuple(before), tuple(after)
