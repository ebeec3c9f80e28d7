"""The checks, one module per check id (the ids are a contract: issue 10). Each module has
``ID`` and ``check(facts) -> Finding``, a pure function of the node facts."""

from __future__ import annotations

from collections.abc import Callable

from clew.doctor.checks import (
    conntrack_errors,
    conntrack_random_fully,
    conntrack_stale_udp,
    conntrack_usage,
    forward_bridge_nf,
    forward_hairpin,
    forward_ip_forward,
    forward_policy,
    forward_route_localnet,
    forward_rp_filter,
    node_neighbours,
    node_rule_count,
    node_steal,
    podnet_bgp,
    podnet_mtu,
    podnet_offload,
    podnet_routes,
    podnet_subnet_overlap,
    podnet_vxlan_port,
    proxy_backends,
    proxy_healthz,
    proxy_mode,
    proxy_stale,
    proxy_sync,
)
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, skip

Check = Callable[[NodeFacts], Finding]
CHECKS: tuple[tuple[str, Check], ...] = tuple(
    (m.ID, m.check)
    for m in (
        proxy_mode,
        proxy_backends,
        proxy_stale,
        proxy_sync,
        proxy_healthz,
        forward_policy,
        forward_ip_forward,
        forward_rp_filter,
        forward_bridge_nf,
        forward_hairpin,
        forward_route_localnet,
        podnet_mtu,
        podnet_vxlan_port,
        podnet_offload,
        podnet_routes,
        podnet_bgp,
        podnet_subnet_overlap,
        conntrack_usage,
        conntrack_errors,
        conntrack_stale_udp,
        conntrack_random_fully,
        node_steal,
        node_neighbours,
        node_rule_count,
    )
)


def run_all(facts: NodeFacts) -> list[Finding]:
    """Every check on ``facts``; a check that raises is reported as ``skip`` naming the error
    (a bug in the doctor must not hide the other checks' answers)."""
    out = []
    for check_id, check in CHECKS:
        try:
            out.append(check(facts))
        except Exception as e:  # reported as skip, not swallowed
            out.append(skip(check_id, f"the check could not run: {type(e).__name__}: {e}"))
    return out
