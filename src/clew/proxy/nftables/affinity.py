"""Chains of their own for Service ports with ClientIP affinity, kube-proxy's nftables style.

A ClientIP-affine port must remember, per endpoint, which clients used it (an ``affinity-…``
set with the Service's timeout, refreshed by ``update`` on every new connection) and look that
up before choosing at random; that needs per-endpoint rules, which the shared data maps cannot
hold. Such ports are few, so they keep kube-proxy's chains and names (``service-``, ``local-``,
``external-``, ``endpoint-``, ``affinity-``), reached through the ``service-ips`` and
``service-nodeports`` verdict maps. Their destinations appear in no other nat set. Hairpin
masquerading, firewalls and no-endpoint verdicts use the shared sets like every other port.
"""

from __future__ import annotations

from clew.model.proxy_config import ProxyConfig
from clew.proxy.nftables import names
from clew.proxy.nftables.fixed import local_match, mark
from clew.proxy.nftables.layout import Chain, SetDecl
from clew.proxy.policy import Endpoint, PortPolicy


def port_chain_names(p: PortPolicy) -> tuple[str, str, str]:
    """(service-…, local-…, external-…) of one port."""
    args = (p.namespace, p.name, p.proto, p.port_name)
    return names.service_chain(*args), names.local_chain(*args), names.external_chain(*args)


def _endpoint_names(p: PortPolicy, e: Endpoint) -> tuple[str, str]:
    args = (p.namespace, p.name, p.proto, p.port_name, e.ip, e.port)
    return names.endpoint_chain(*args), names.affinity_set(*args)


def _policy_chain(p: PortPolicy, name: str, endpoints: tuple[Endpoint, ...], masq_rule: str | None) -> Chain:
    """service-… or local-…: ClusterIP masquerade (if this is the internal chain), the affinity
    checks in endpoint order, then a uniform random choice."""
    rules = [masq_rule] if masq_rule else []
    for e in endpoints:
        chain, aff = _endpoint_names(p, e)
        rules.append(f"ip saddr @{aff} goto {chain}")
    choices = ", ".join(f"{i} : goto {_endpoint_names(p, e)[0]}" for i, e in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {choices} }}")
    return Chain(name, tuple(rules))


def affinity_port(p: PortPolicy, config: ProxyConfig) -> tuple[tuple[Chain, ...], tuple[SetDecl, ...]]:
    """The chains and affinity sets of one ClientIP-affine port with endpoints (iptables
    mode's KUBE-SVC/SVL/EXT/SEP chains with ``recent``, in nftables)."""
    svc, svl, ext = port_chain_names(p)
    m = mark(config)
    masq: str | None = None
    if p.has_internal_endpoints:
        if config.masquerade_all:
            masq = f"ip daddr {p.cluster_ip} {m}"
        elif (not_local := local_match(config, negate=True)) is not None:
            masq = f"ip daddr {p.cluster_ip} {not_local} {m}"
    internal_is_local = p.internal_policy_local
    chains: list[Chain] = []
    if p.uses_external_chain:
        rules: list[str] = []
        if not p.external_policy_local:
            rules += [m, f"goto {svc}"]
        else:
            if (is_local := local_match(config, negate=False)) is not None:
                rules.append(f"{is_local} goto {svc}")
            rules += [f"fib saddr type local {m}", f"fib saddr type local goto {svc}"]
            if p.has_external_endpoints:
                rules.append(f"goto {svl}")
        chains.append(Chain(ext, tuple(rules)))
    if p.uses_cluster_chain:
        chains.append(_policy_chain(p, svc, p.cluster_endpoints, None if internal_is_local else masq))
    if p.uses_local_chain:
        chains.append(_policy_chain(p, svl, p.local_endpoints, masq if internal_is_local else None))
    sets: list[SetDecl] = []
    timeout = p.affinity_timeout
    for e in p.all_reachable:
        chain, aff = _endpoint_names(p, e)
        sets.append(SetDecl(aff, f"type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ;"))
        chains.append(
            Chain(chain, (f"update @{aff} {{ ip saddr }}", f"meta l4proto {p.proto} dnat to {e.ip}:{e.port}"))
        )
    return tuple(chains), tuple(sets)
