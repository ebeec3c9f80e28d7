"""kube-proxy's OWN nftables layout (v1.33) for the rules clew renders — to time beside clew's.

``clew bench sync --mode nftables`` loads this once (it is what kube-proxy would hold for the same
Services) and applies, with ``nft -f``, kube-proxy's partial sync for each change the bench makes
to clew: the layout's cost, not clew's, is what the figure shows. Shapes (shared/reference/
kube-proxy.md §3, upstream ``TestOverallNFTablesRules``; names from `clew.proxy.nftables.names`):

* table ``ip kube-proxy``; base chains at kube-proxy's hooks and priorities; fixed chains
  ``services`` (``vmap @service-ips``, NodePorts ``ip daddr @nodeport-ips … vmap
  @service-nodeports``), ``service-endpoints-check``, ``nodeport-endpoints-check``,
  ``firewall-check``, ``cluster-ips-check``, ``reject-chain``, ``mark-for-masquerade``,
  ``masquerading``; the verdict maps and sets ``service-ips``, ``service-nodeports``,
  ``no-endpoint-services``, ``no-endpoint-nodeports``, ``firewall-ips``, ``cluster-ips``,
  ``nodeport-ips`` (the node's primary IP: kube-proxy's default ``--nodeport-addresses primary``);
* per Service port: ``service-<H8>-ns/svc/proto/port`` (masquerade off-cluster sources, then
  ``numgen random mod N vmap { i : goto endpoint-… }`` — one anonymous map per Service, the
  quadratic load), ``external-…`` for NodePorts (masquerade, ``goto service-…``), one
  ``endpoint-…`` chain per endpoint (hairpin masquerade, ``dnat``), and the map elements.

A change (`KubeProxyNft.change`) is kube-proxy's partial sync through knftables: the changed
Service's chains ``add`` + ``flush`` + their rules, map and set elements diffed against the
previous state (new → add, changed value → delete + add, gone → delete), chains that went away
flushed; their ``delete chain`` is a second transaction (kube-proxy deletes stale chains ≥ 1 s
later), returned apart so the bench does not time it. Not timed either: kube-proxy's ``nft
--json list chains`` of every sync (seconds at 10k Services) — the figure is kube-proxy's best case.

Only what the synthetic clusters use is expressed (ClusterIP, NodePort, cluster traffic policy,
no affinity, no external or LoadBalancer IPs); a port with more raises ValueError naming it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from clew.model.proxy_config import ProxyConfig
from clew.proxy.nftables import names
from clew.proxy.policy import PortPolicy

TABLE = "ip kube-proxy"

BASE_CHAINS: tuple[tuple[str, str, str, int, tuple[str, ...]], ...] = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110, ("ct state new jump firewall-check",)),
    ("filter-output-pre-dnat", "filter", "output", -110, ("ct state new jump firewall-check",)),
    ("filter-forward", "filter", "forward", 0,
     ("ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check")),
    ("filter-input", "filter", "input", 0,
     ("ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check")),
    ("filter-output", "filter", "output", 0,
     ("ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check")),
    ("nat-prerouting", "nat", "prerouting", -100, ("jump services",)),
    ("nat-output", "nat", "output", -100, ("jump services",)),
    ("nat-postrouting", "nat", "postrouting", 100, ("jump masquerading",)),
)  # fmt: skip

KEY3 = "ipv4_addr . inet_proto . inet_service"
KEY2 = "inet_proto . inet_service"
SETS = (
    ("cluster-ips", "set", "ipv4_addr", "Active ClusterIPs"),
    ("nodeport-ips", "set", "ipv4_addr", "IPs that accept NodePort traffic"),
    ("service-ips", "map", f"{KEY3} : verdict", "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    ("service-nodeports", "map", f"{KEY2} : verdict", "NodePort traffic"),
    ("no-endpoint-services", "map", f"{KEY3} : verdict",
     "vmap to drop or reject packets to services with no endpoints"),
    ("no-endpoint-nodeports", "map", f"{KEY2} : verdict",
     "vmap to drop or reject packets to service nodeports with no endpoints"),
    ("firewall-ips", "map", f"{KEY3} : verdict", "destinations that are subject to LoadBalancerSourceRanges"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PortLayout:
    """One Service port in kube-proxy's table: its chains (name → rule bodies) and its elements
    ((set, key) → value, or "" in a set)."""

    service_key: str
    chains: dict[str, tuple[str, ...]]
    elements: dict[tuple[str, str], str]


def _mark(config: ProxyConfig) -> str:
    return config.masquerade_mark


def fixed(config: ProxyConfig) -> tuple[list[str], list[str]]:
    """The table, its chains and rules that do not depend on the Services, and the empty maps
    (declared before any rule refers to them, as knftables orders a transaction): declarations
    and rules apart, so that every chain is declared before the first rule."""
    out = [f'add table {TABLE} {{ comment "rules for kube-proxy" ; }}']
    rules: list[str] = []
    for name, kind, hook, prio, body in BASE_CHAINS:
        out.append(f"add chain {TABLE} {name} {{ type {kind} hook {hook} priority {prio} ; }}")
        rules += [f"add rule {TABLE} {name} {r}" for r in body]
    np_ips = "ip daddr @nodeport-ips"
    regular: dict[str, tuple[str, ...]] = {
        "services": ("ip daddr . meta l4proto . th dport vmap @service-ips",
                     f"{np_ips} meta l4proto . th dport vmap @service-nodeports"),
        "service-endpoints-check": ("ip daddr . meta l4proto . th dport vmap @no-endpoint-services",),
        "nodeport-endpoints-check": (f"{np_ips} meta l4proto . th dport vmap @no-endpoint-nodeports",),
        "firewall-check": ("ip daddr . meta l4proto . th dport vmap @firewall-ips",),
        "cluster-ips-check": ('ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',),
        "reject-chain": ("reject",),
        "mark-for-masquerade": (f"mark set mark or {_mark(config)}",),
        "masquerading": (f"mark and {_mark(config)} == 0 return", f"mark set mark xor {_mark(config)}",
                         "masquerade fully-random" if config.random_fully else "masquerade"),
    }  # fmt: skip
    for name, body in regular.items():
        out.append(f"add chain {TABLE} {name}")
        rules += [f"add rule {TABLE} {name} {r}" for r in body]
    for name, kind, spec, comment in SETS:
        out.append(f'add {kind} {TABLE} {name} {{ type {spec} ; comment "{comment}" ; }}')
    out += [f"add element {TABLE} nodeport-ips {{ {ip} }}" for ip in config.node_ips[:1]]
    return out, rules


def port_layout(p: PortPolicy, config: ProxyConfig) -> PortLayout:
    """kube-proxy's chains and elements for one Service port (see the module docstring)."""
    if (
        p.external_ips
        or p.load_balancer_ips
        or p.affinity_timeout
        or p.internal_policy_local
        or (p.external_policy_local)
    ):
        raise ValueError(f"{p.spn}: kube-proxy's layout here expresses ClusterIPs and NodePorts with cluster policy")
    args = (p.namespace, p.name, p.proto, p.port_name)
    svc, ext = names.service_chain(*args), names.external_chain(*args)
    chains: dict[str, tuple[str, ...]] = {}
    elements: dict[tuple[str, str], str] = {(("cluster-ips"), p.cluster_ip): ""}
    key = f"{p.cluster_ip} . {p.proto} . {p.port}"
    np_key = f"{p.proto} . {p.node_port}"
    eps = p.cluster_endpoints
    if not eps:
        elements[("no-endpoint-services", key)] = "goto reject-chain"
        if p.node_port:
            elements[("no-endpoint-nodeports", np_key)] = "goto reject-chain"
        return PortLayout(p.service_key, chains, elements)
    ep_chains = [names.endpoint_chain(*args, e.ip, e.port) for e in eps]
    masq = [f"ip daddr {p.cluster_ip} {p.proto} dport {p.port} ip saddr != {c} jump mark-for-masquerade"
            for c in config.local_cidrs[:1]]  # fmt: skip
    vmap = " , ".join(f"{i} : goto {c}" for i, c in enumerate(ep_chains))
    chains[svc] = (*masq, f"numgen random mod {len(eps)} vmap {{ {vmap} }}")
    for e, c in zip(eps, ep_chains, strict=True):
        chains[c] = (f"ip saddr {e.ip} jump mark-for-masquerade", f"meta l4proto {p.proto} dnat to {e.ip}:{e.port}")
    elements[("service-ips", key)] = f"goto {svc}"
    if p.node_port:
        chains[ext] = ("jump mark-for-masquerade", f"goto {svc}")
        elements[("service-nodeports", np_key)] = f"goto {ext}"
    return PortLayout(p.service_key, chains, elements)


def _element(set_: str, key: str, value: str) -> str:
    return f"add element {TABLE} {set_} {{ {key}{' : ' + value if value else ''} }}"


def full_script(policies: Iterable[PortPolicy], config: ProxyConfig) -> str:
    """The whole table in one transaction (a first sync into an empty namespace)."""
    out, rules = fixed(config)
    elements: list[str] = []
    for p in policies:
        layout = port_layout(p, config)
        for name, body in layout.chains.items():
            out.append(f"add chain {TABLE} {name}")
            rules += [f"add rule {TABLE} {name} {r}" for r in body]
        elements += [_element(s, k, v) for (s, k), v in layout.elements.items()]
    return "\n".join([*out, *rules, *elements]) + "\n"


def change_script(old: Iterable[PortPolicy], new: Iterable[PortPolicy], config: ProxyConfig) -> tuple[str, str]:
    """kube-proxy's partial sync from one Service's ports ``old`` to ``new`` (either may be
    empty: added, deleted), and the later transaction deleting its stale chains ("" if none)."""
    before = [port_layout(p, config) for p in old]
    after = [port_layout(p, config) for p in new]
    old_chains = {c: r for v in before for c, r in v.chains.items()}
    new_chains = {c: r for v in after for c, r in v.chains.items()}
    old_el = {k: v for p in before for k, v in p.elements.items()}
    new_el = {k: v for p in after for k, v in p.elements.items()}
    out = [f"add chain {TABLE} {c}" for c in new_chains]
    out += [f"flush chain {TABLE} {c}" for c in new_chains]
    for name, rules in new_chains.items():
        out += [f"add rule {TABLE} {name} {r}" for r in rules]
    for (set_, key), value in new_el.items():
        if (set_, key) not in old_el:
            out.append(_element(set_, key, value))
        elif old_el[(set_, key)] != value:
            out += [f"delete element {TABLE} {set_} {{ {key} }}", _element(set_, key, value)]
    out += [f"delete element {TABLE} {s} {{ {k} }}" for (s, k) in old_el if (s, k) not in new_el]
    stale = [c for c in old_chains if c not in new_chains]
    out += [f"flush chain {TABLE} {c}" for c in stale]
    later = "".join(f"delete chain {TABLE} {c}\n" for c in stale)
    return ("\n".join(out) + "\n" if out else ""), later


class KubeProxyNft:
    """kube-proxy's table for a set of Service ports, kept up to date one Service at a time.
    Holds the policies only (shared with the caller's), not the text: the bench's memory figure
    is the sync engine's."""

    def __init__(self, policies: Iterable[PortPolicy], config: ProxyConfig) -> None:
        self.config = config
        self.policies: dict[str, PortPolicy] = {f"{p.spn}/{p.proto}": p for p in policies}

    def full(self) -> str:
        """The whole table in one transaction (a first sync into an empty namespace)."""
        return full_script(self.policies.values(), self.config)

    def change(self, service_key: str, policies: Iterable[PortPolicy]) -> tuple[str, str]:
        """kube-proxy's partial sync after ``service_key`` (``ns/name``) changed, and the later
        transaction deleting its stale chains ("" when none). ``policies``: the Service ports
        after the change (others are ignored; none if the Service was deleted)."""
        old = {k: p for k, p in self.policies.items() if p.service_key == service_key}
        for k in old:
            del self.policies[k]
        new = {f"{p.spn}/{p.proto}": p for p in policies if p.service_key == service_key}
        self.policies.update(new)
        return change_script(old.values(), new.values(), self.config)
