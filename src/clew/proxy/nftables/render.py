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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class _Port:
    """What every element of one port repeats, computed once (render runs 100k times per sync)."""

    p: PortPolicy
    proto: str
    comment: str
    external_ips: tuple[str, ...]  # externalIPs then LB IPs, each once, without the ClusterIP

    def dest(self, ip: str) -> str:
        return f"{ip} . {self.proto} . {self.p.port}"

    def element(self, name: str, key: str, value: str | None = None) -> Element:
        return Element(name, key, value, self.comment)

    def dnat(self, role: str, key: str, endpoints: tuple[Endpoint, ...]) -> Iterator[Element]:
        """Slot i of ``key`` → the i-th endpoint, in the group map of (role, proto, len)."""
        name = f"{role}-{self.proto}-{len(endpoints)}"
        for i, e in enumerate(endpoints):
            yield Element(name, f"{key} . {i}", f"{e.ip} . {e.port}", self.comment)


def _firewall(x: _Port, config: ProxyConfig) -> Iterator[Element]:
    """LB IP . proto . port . allowed source: the ranges, plus every LB IP when a range holds a
    node IP (iptables mode's ``-s <lb ip> -j KUBE-EXT``), collapsed so no two intervals overlap
    (nft refuses overlapping intervals)."""
    p = x.p
    nets = [ipaddress.IPv4Network(cidr, strict=False) for cidr in p.source_ranges]
    node = [ipaddress.ip_address(ip) for ip in config.node_ips]
    lbs = _lb_only(p)
    allowed = list(nets)
    if any(ip in n for n in nets for ip in node if ip.version == 4):
        allowed += [ipaddress.IPv4Network(ip) for ip in lbs]
    sources = [str(n) if n.prefixlen < 32 else str(n.network_address) for n in ipaddress.collapse_addresses(allowed)]
    for ip in lbs:
        yield x.element(fx.FIREWALL_IPS, x.dest(ip))
        for src in sources:
            yield x.element(fx.FIREWALL_ALLOW, f"{x.dest(ip)} . {src}")


def _verdicts(x: _Port) -> Iterator[Element]:
    """REJECT when no endpoint anywhere, DROP for a Local policy without a local endpoint."""
    p = x.p
    ivd, evd = p.internal_verdict, p.external_verdict
    if ivd is not None:
        yield x.element(
            fx.NO_ENDPOINT_REJECT if ivd is FilterVerdict.REJECT else fx.NO_ENDPOINT_DROP, x.dest(p.cluster_ip)
        )
    if evd is not None:
        reject = evd is FilterVerdict.REJECT
        name = fx.NO_ENDPOINT_EXTERNAL_REJECT if reject else fx.NO_ENDPOINT_EXTERNAL_DROP
        for ip in x.external_ips:
            yield x.element(name, x.dest(ip))
        if p.node_port:
            name = fx.NO_ENDPOINT_NODEPORTS_REJECT if reject else fx.NO_ENDPOINT_NODEPORTS_DROP
            yield x.element(name, f"{x.proto} . {p.node_port}")


def _shared(x: _Port, config: ProxyConfig) -> Iterator[Element]:
    """The nat elements of a port without chains of its own (see README.md for each set)."""
    p = x.p
    internal = p.local_endpoints if p.internal_policy_local else p.cluster_endpoints
    if p.has_internal_endpoints and internal:
        if config.masquerade_all or fx.local_match(config, negate=True) is not None:
            yield x.element(fx.CLUSTER_MASQ, x.dest(p.cluster_ip))
        yield from x.dnat("dst", f"{p.cluster_ip} . {p.port}", internal)
    if not p.uses_external_chain:
        return
    local = p.external_policy_local
    external = p.local_endpoints if local else p.cluster_endpoints
    use_external = p.has_external_endpoints and bool(external)
    for ip in x.external_ips:
        yield x.element(fx.EXTERNAL_LOCAL if local else fx.EXTERNAL_MASQ, x.dest(ip))
        if local and p.cluster_endpoints:
            yield from x.dnat("dst-sc", f"{ip} . {p.port}", p.cluster_endpoints)
        if use_external:
            yield from x.dnat("dst", f"{ip} . {p.port}", external)
    if p.node_port:
        yield x.element(fx.NODEPORT_LOCAL if local else fx.NODEPORT_MASQ, f"{x.proto} . {p.node_port}")
        if local and p.cluster_endpoints:
            yield from x.dnat("np-sc", str(p.node_port), p.cluster_endpoints)
        if use_external:
            yield from x.dnat("np", str(p.node_port), external)


def _own(x: _Port) -> Iterator[Element]:
    """Verdict-map elements leading to the chains of a ClientIP-affine port."""
    p = x.p
    svc, svl, ext = port_chain_names(p)
    if p.has_internal_endpoints:
        yield x.element(fx.SERVICE_IPS, x.dest(p.cluster_ip), f"jump {svl if p.internal_policy_local else svc}")
    if p.uses_external_chain:
        for ip in x.external_ips:
            yield x.element(fx.SERVICE_IPS, x.dest(ip), f"jump {ext}")
        if p.node_port:
            yield x.element(fx.SERVICE_NODEPORTS, f"{x.proto} . {p.node_port}", f"jump {ext}")


def render_port(p: PortPolicy, config: ProxyConfig) -> PortNft | Rejected:
    """Everything one Service port contributes, or why it cannot be expressed."""
    proto, spn = p.protocol.lowercase, p.spn
    key = f"{spn}/{proto}"
    if (problem := _problem(p)) is not None:
        return Rejected(key, p.service_key, f"Service port {spn} ({proto}): {problem}")
    x = _Port(p, proto, element_comment(spn), tuple(_external_ips(p)))
    affine = p.affinity_timeout is not None and p.has_endpoints
    elements = list(_own(x) if affine else _shared(x, config))
    if p.uses_firewall_chain:
        elements += _firewall(x, config)
    elements += _verdicts(x)
    # iptables mode marks `-s <endpoint>` in every KUBE-SEP chain: the same endpoints here.
    elements += (x.element(fx.HAIRPIN, f"{ip} . {ip}") for ip in dict.fromkeys(e.ip for e in p.all_reachable))
    groups = frozenset(g for name in {e.set for e in elements} if (g := group_of(name)) is not None)
    chains, sets = affinity_port(p, config) if affine else ((), ())
    return PortNft(key, p.service_key, spn, tuple(dict.fromkeys(elements)), groups, chains, sets)


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
        mine = destinations(p)
        if isinstance(r, PortNft) and (clash := next((d for d in mine if d in claimed), None)) is not None:
            why = f"destination {clash} is already {claimed[clash]}'s (nft takes one value per map key)"
            r = Rejected(r.key, r.service_key, f"Service port {p.spn} ({p.proto}): {why}")
        if isinstance(r, Rejected):
            rejected.append(r)
            continue
        claimed.update(dict.fromkeys(mine, p.spn))
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
