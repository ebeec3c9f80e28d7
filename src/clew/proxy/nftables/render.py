"""Render clew's nftables table from `PortPolicy` decisions — a pure function.

The same decisions as iptables mode (``clew.proxy.policy``), the same observable behaviour
(which packets go where, masqueraded, rejected or dropped), in the layout of README.md: a fixed
chain graph, and per Service port only *elements* of data maps and sets (plus chains of their
own for ClientIP-affine ports). `render_port` gives one port's share, `fixed` the rest, `render`
a whole table and `script` the ``nft -f`` text that loads it in one transaction.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache

from clew.model.proxy_config import ProxyConfig
from clew.proxy.nftables import fixed as fx
from clew.proxy.nftables.affinity import affinity_port, port_chain_names
from clew.proxy.nftables.fixed import fixed, regroup
from clew.proxy.nftables.layout import FAMILY, TABLE, Element, Group, NftRendered, PortNft, Rejected, quote
from clew.proxy.policy import Endpoint, FilterVerdict, PortPolicy

__all__ = [
    "destinations",
    "element_commands",
    "fixed",
    "group_of",
    "regroup",
    "render",
    "render_port",
    "script",
]

COMMENT_MAX = 128  # nft refuses longer comments
ELEMENTS_PER_COMMAND = 50_000  # one `add element` per set up to this many; measured in notes
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


def element_comment(spn: str) -> str:
    """The Service port's name, cut to nft's 128 characters."""
    return spn if len(spn) <= COMMENT_MAX else spn[: COMMENT_MAX - 3] + "..."


@lru_cache(maxsize=1 << 16)
def _is_ipv4(text: str) -> bool:
    return _IPV4.fullmatch(text) is not None


def _problem(p: PortPolicy) -> str | None:
    """Why the layout cannot express this port, naming the field; None when it can."""
    if p.proto not in fx.PROTOCOLS:
        return f"protocol {p.protocol.value!r} is not handled by the nftables layout (TCP, UDP, SCTP)"
    if not _is_ipv4(p.cluster_ip):
        return f"spec.clusterIP {p.cluster_ip!r}: the nftables table is IPv4 only"
    for field, ips in (("spec.externalIPs", p.external_ips), ("status.loadBalancer.ingress", p.load_balancer_ips)):
        for ip in ips:
            if not _is_ipv4(ip):
                return f"{field} {ip!r}: the nftables table is IPv4 only"
    for cidr in p.source_ranges:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return f"spec.loadBalancerSourceRanges {cidr!r} is not a CIDR"
        if net.version != 4:
            return f"spec.loadBalancerSourceRanges {cidr!r}: the nftables table is IPv4 only"
    for e in p.endpoints:
        if not _is_ipv4(e.ip):
            return f"endpoint {e.ip!r}: the nftables table is IPv4 only"
    if not 0 < p.port < 65536 or not 0 <= p.node_port < 65536:
        return f"port {p.port} / nodePort {p.node_port} out of range"
    if p.affinity_timeout is not None and p.affinity_timeout <= 0:
        return f"sessionAffinityConfig.clientIP.timeoutSeconds {p.affinity_timeout} must be positive"
    return None


def destinations(p: PortPolicy) -> tuple[str, ...]:
    """The destination keys a port claims (``ip . proto . port`` for its ClusterIP, externalIPs
    and LB IPs, ``proto . nodePort``): two ports must not share one (nft refuses two values for
    one map key). `render` rejects the later port; a partial sync must check the same."""
    out = [f"{ip} . {p.proto} . {p.port}" for ip in _ips(p)]
    if p.node_port:
        out.append(f"{p.proto} . {p.node_port}")
    return tuple(out)


def _ips(p: PortPolicy) -> list[str]:
    """ClusterIP, then externalIPs, then LB IPs, each once (an IP that is both an externalIP and
    an LB IP is an externalIP, as in iptables mode where that rule comes first)."""
    return list(dict.fromkeys((p.cluster_ip, *p.external_ips, *p.load_balancer_ips)))


def _external_ips(p: PortPolicy) -> list[str]:
    return [ip for ip in _ips(p) if ip != p.cluster_ip]


def _lb_only(p: PortPolicy) -> list[str]:
    return [ip for ip in dict.fromkeys(p.load_balancer_ips) if ip != p.cluster_ip and ip not in p.external_ips]


def _dnat(role: str, p: PortPolicy, key: str, endpoints: tuple[Endpoint, ...], c: str) -> Iterator[Element]:
    """Slot i of ``key`` → the i-th endpoint, in the group map of (role, proto, len)."""
    name = Group(role, p.proto, len(endpoints)).map_name
    for i, e in enumerate(endpoints):
        yield Element(name, f"{key} . {i}", f"{e.ip} . {e.port}", c)


def _firewall(p: PortPolicy, config: ProxyConfig, c: str) -> Iterator[Element]:
    """LB IP . proto . port . allowed source: the ranges, plus every LB IP when a range holds a
    node IP (iptables mode's ``-s <lb ip> -j KUBE-EXT``), collapsed so no two intervals overlap
    (nft refuses overlapping intervals)."""
    nets = [ipaddress.IPv4Network(c_, strict=False) for c_ in p.source_ranges]
    node = [ipaddress.ip_address(ip) for ip in config.node_ips]
    lbs = _lb_only(p)
    allowed = list(nets)
    if any(ip in n for n in nets for ip in node if ip.version == 4):
        allowed += [ipaddress.IPv4Network(ip) for ip in lbs]
    sources = [str(n) if n.prefixlen < 32 else str(n.network_address) for n in ipaddress.collapse_addresses(allowed)]
    for ip in lbs:
        yield Element(fx.FIREWALL_IPS, f"{ip} . {p.proto} . {p.port}", None, c)
        for src in sources:
            yield Element(fx.FIREWALL_ALLOW, f"{ip} . {p.proto} . {p.port} . {src}", None, c)


def _verdicts(p: PortPolicy, c: str) -> Iterator[Element]:
    """REJECT when no endpoint anywhere, DROP for a Local policy without a local endpoint."""
    ivd, evd = p.internal_verdict, p.external_verdict
    if ivd is not None:
        name = fx.NO_ENDPOINT_REJECT if ivd is FilterVerdict.REJECT else fx.NO_ENDPOINT_DROP
        yield Element(name, f"{p.cluster_ip} . {p.proto} . {p.port}", None, c)
    if evd is not None:
        reject = evd is FilterVerdict.REJECT
        name = fx.NO_ENDPOINT_EXTERNAL_REJECT if reject else fx.NO_ENDPOINT_EXTERNAL_DROP
        for ip in _external_ips(p):
            yield Element(name, f"{ip} . {p.proto} . {p.port}", None, c)
        if p.node_port:
            name = fx.NO_ENDPOINT_NODEPORTS_REJECT if reject else fx.NO_ENDPOINT_NODEPORTS_DROP
            yield Element(name, f"{p.proto} . {p.node_port}", None, c)


def _shared(p: PortPolicy, config: ProxyConfig, c: str) -> Iterator[Element]:
    """The nat elements of a port without chains of its own (see README.md for each set)."""
    proto, port = p.proto, p.port
    internal = p.local_endpoints if p.internal_policy_local else p.cluster_endpoints
    if p.has_internal_endpoints and internal:
        key = f"{p.cluster_ip} . {proto} . {port}"
        if config.masquerade_all or fx.local_match(config, negate=True) is not None:
            yield Element(fx.CLUSTER_MASQ, key, None, c)
        yield from _dnat("dst", p, f"{p.cluster_ip} . {port}", internal, c)
    if not p.uses_external_chain:
        return
    local = p.external_policy_local
    external = p.local_endpoints if local else p.cluster_endpoints
    for ip in _external_ips(p):
        key = f"{ip} . {proto} . {port}"
        yield Element(fx.EXTERNAL_LOCAL if local else fx.EXTERNAL_MASQ, key, None, c)
        if local and p.cluster_endpoints:
            yield from _dnat("dst-sc", p, f"{ip} . {port}", p.cluster_endpoints, c)
        if p.has_external_endpoints and external:
            yield from _dnat("dst", p, f"{ip} . {port}", external, c)
    if p.node_port:
        yield Element(fx.NODEPORT_LOCAL if local else fx.NODEPORT_MASQ, f"{proto} . {p.node_port}", None, c)
        if local and p.cluster_endpoints:
            yield from _dnat("np-sc", p, str(p.node_port), p.cluster_endpoints, c)
        if p.has_external_endpoints and external:
            yield from _dnat("np", p, str(p.node_port), external, c)


def _own(p: PortPolicy, c: str) -> Iterator[Element]:
    """Verdict-map elements leading to the chains of a ClientIP-affine port."""
    svc, svl, ext = port_chain_names(p)
    if p.has_internal_endpoints:
        chain = svl if p.internal_policy_local else svc
        yield Element(fx.SERVICE_IPS, f"{p.cluster_ip} . {p.proto} . {p.port}", f"jump {chain}", c)
    if p.uses_external_chain:
        for ip in _external_ips(p):
            yield Element(fx.SERVICE_IPS, f"{ip} . {p.proto} . {p.port}", f"jump {ext}", c)
        if p.node_port:
            yield Element(fx.SERVICE_NODEPORTS, f"{p.proto} . {p.node_port}", f"jump {ext}", c)


def render_port(p: PortPolicy, config: ProxyConfig) -> PortNft | Rejected:
    """Everything one Service port contributes, or why it cannot be expressed."""
    key = f"{p.spn}/{p.proto}"
    if (problem := _problem(p)) is not None:
        return Rejected(key, p.service_key, f"Service port {p.spn} ({p.proto}): {problem}")
    c = element_comment(p.spn)
    affine = p.affinity_timeout is not None and p.has_endpoints
    elements = list(_own(p, c) if affine else _shared(p, config, c))
    if p.uses_firewall_chain:
        elements += _firewall(p, config, c)
    elements += _verdicts(p, c)
    # iptables mode marks `-s <endpoint>` in every KUBE-SEP chain: the same endpoints here.
    elements += (Element(fx.HAIRPIN, f"{ip} . {ip}", None, c) for ip in dict.fromkeys(e.ip for e in p.all_reachable))
    groups = frozenset(g for e in elements if (g := group_of(e.set)) is not None)
    chains, sets = affinity_port(p, config) if affine else ((), ())
    return PortNft(key, p.service_key, p.spn, tuple(dict.fromkeys(elements)), groups, chains, sets)


@lru_cache(maxsize=1024)
def group_of(set_name: str) -> Group | None:
    """The group whose data map is ``set_name`` (``dst-sc-tcp-3``), or None for any other set."""
    role, _, rest = set_name.rpartition("-")
    role, _, proto = role.rpartition("-")
    if role in fx.ROLES and proto in fx.PROTOCOLS and rest.isdigit() and int(rest) > 0:
        return Group(role, proto, int(rest))
    return None


def render(policies: Iterable[PortPolicy], config: ProxyConfig) -> NftRendered:
    """The whole table for every Service port. A port that cannot be expressed, or that claims
    a destination an earlier port holds (`destinations`), is rejected alone. Pure."""
    ports: list[PortNft] = []
    rejected: list[Rejected] = []
    claimed: dict[str, str] = {}
    for p in policies:
        r = render_port(p, config)
        if isinstance(r, PortNft):
            clash = next(((d, claimed[d]) for d in destinations(p) if d in claimed), None)
            if clash is not None:
                r = Rejected(
                    r.key, r.service_key, f"Service port {p.spn} ({p.proto}): {clash[0]} is already {clash[1]}'s"
                )
        if isinstance(r, Rejected):
            rejected.append(r)
            continue
        claimed.update(dict.fromkeys(destinations(p), p.spn))
        ports.append(r)
    groups = frozenset(g for port in ports for g in port.groups)
    return NftRendered(fixed(config, groups), groups, tuple(ports), tuple(rejected))


def _element_text(e: Element) -> str:
    c = f" comment {quote(e.comment)}" if e.comment else ""
    v = f" : {e.value}" if e.value is not None else ""
    return f"{e.key}{c}{v}"


def element_commands(elements: Iterable[Element], per_command: int = ELEMENTS_PER_COMMAND) -> list[str]:
    """``add element`` commands, one per set (split past ``per_command`` elements), each key once
    (the first wins: hairpin elements are shared by Services), one element a line so that a
    diff of two scripts shows elements."""
    by_set: dict[str, dict[str, Element]] = {}
    for e in elements:
        by_set.setdefault(e.set, {}).setdefault(e.key, e)
    out = []
    for name, found in by_set.items():
        items = list(found.values())
        for i in range(0, len(items), per_command):
            body = ",\n\t".join(_element_text(e) for e in items[i : i + per_command])
            out.append(f"add element {FAMILY} {TABLE} {name} {{\n\t{body}\n}}")
    return out


def script(rendered: NftRendered) -> str:
    """An ``nft -f`` script that replaces clew's table (or creates it) in one transaction:
    ``add table`` + ``delete table`` (so the delete never fails), then everything again."""
    lines = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", *rendered.fixed]
    for port in rendered.ports:
        lines.extend(f"add set {FAMILY} {TABLE} {s.name} {{ {s.spec} }}" for s in port.sets if not s.is_map)
        lines.extend(f"add map {FAMILY} {TABLE} {s.name} {{ {s.spec} }}" for s in port.sets if s.is_map)
        lines.extend(f"add chain {FAMILY} {TABLE} {ch.name}" for ch in port.chains)
    for port in rendered.ports:
        for ch in port.chains:
            lines.extend(f"add rule {FAMILY} {TABLE} {ch.name} {body}" for body in ch.rules)
    lines.extend(element_commands(e for port in rendered.ports for e in port.elements))
    return "\n".join(lines) + "\n"
