"""What both backends check before programming a remote lease."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from clew.podnet.annotations import Lease


def remote_leases(
    self_lease: Lease, leases: Sequence[Lease], network: ipaddress.IPv4Network, backend_type: str
) -> tuple[list[Lease], list[str]]:
    """The leases of the other nodes that this backend can program, and notes on the rest.

    Skipped (with a note): other backend types, subnets outside ``network``, and subnets that
    overlap this node's or an earlier node's (by node name). Never fails: one bad lease must not
    stop the others.
    """
    kept: list[Lease] = []
    notes: list[str] = []
    taken = {self_lease.subnet: self_lease.node}
    for lease in sorted(leases, key=lambda item: item.node):
        if lease.node == self_lease.node:
            continue
        why = _skip_reason(lease, network, backend_type, taken)
        if why is not None:
            notes.append(f'node "{lease.node}" skipped: {why}')
            continue
        taken[lease.subnet] = lease.node
        kept.append(lease)
    return kept, notes


def _skip_reason(
    lease: Lease, network: ipaddress.IPv4Network, backend_type: str, taken: dict[ipaddress.IPv4Network, str]
) -> str | None:
    if lease.backend_type != backend_type:
        return f"backend {lease.backend_type}, not {backend_type}"
    if not lease.subnet.subnet_of(network):
        return f"subnet {lease.subnet} is outside the cluster network {network}"
    for subnet, owner in taken.items():
        if lease.subnet.overlaps(subnet):
            return f'subnet {lease.subnet} overlaps node "{owner}"\'s {subnet}'
    return None
