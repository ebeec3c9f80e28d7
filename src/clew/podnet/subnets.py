"""Node pod subnets: read the node's own (flannel's kube subnet manager) and allocate them for
the lab's control plane (what kube-controller-manager's range allocator does).

In kube mode a node's subnet is ``Node.spec.podCIDR`` (the first IPv4 entry of ``podCIDRs``);
flannel exits with ``node "<name>" pod cidr not assigned`` without one, the most common flannel
startup failure, and the subnet must lie inside net-conf's ``Network``.

The allocator is a pure function: every node keeps the CIDR it has; each node without one gets
the lowest free ``/subnet_len`` of the network, in the order the names are given (the range
allocator hands out the first subnet too: kubeadm's first node gets ``10.244.0.0/24``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping

from clew.model.objects import Node
from clew.podnet.errors import SubnetError

IPv4Network = ipaddress.IPv4Network


def node_subnet(node: Node, network: IPv4Network) -> IPv4Network:
    """The node's pod subnet: its first IPv4 pod CIDR, which must lie inside ``network``."""
    for cidr in node.pod_cidrs:
        try:
            subnet = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SubnetError(f'node "{node.name}" pod cidr {cidr!r} is not a CIDR') from None
        if isinstance(subnet, ipaddress.IPv4Network):
            if not subnet.subnet_of(network):
                raise SubnetError(f'node "{node.name}" pod cidr {subnet} is not inside the cluster network {network}')
            return subnet
    raise SubnetError(f'node "{node.name}" pod cidr not assigned')


def allocate_pod_cidrs(
    network: IPv4Network,
    subnet_len: int,
    node_names: Iterable[str],
    existing: Mapping[str, IPv4Network],
) -> dict[str, IPv4Network]:
    """Pod CIDRs for ``node_names``: kept from ``existing`` where present, else the lowest free.

    ``existing`` entries of nodes not in ``node_names`` are released (the node is gone).
    Raises :class:`SubnetError` if an existing CIDR is outside the network, of another size, or
    shared by two nodes, or when no subnet is left (kube-controller-manager's CIDRNotAvailable).
    """
    if not network.prefixlen <= subnet_len <= 32:
        raise SubnetError(f"subnet length /{subnet_len} does not fit in {network}")
    names = list(dict.fromkeys(node_names))
    kept = {name: existing[name] for name in names if name in existing}
    owners: dict[IPv4Network, str] = {}
    for name, cidr in kept.items():
        if cidr.prefixlen != subnet_len or not cidr.subnet_of(network):
            raise SubnetError(f'node "{name}" pod cidr {cidr} is not a /{subnet_len} inside {network}')
        if cidr in owners:
            raise SubnetError(f'nodes "{owners[cidr]}" and "{name}" share pod cidr {cidr}')
        owners[cidr] = name
    free = _free(network, subnet_len, set(owners))
    result: dict[str, IPv4Network] = {}
    for name in names:
        if name in kept:
            result[name] = kept[name]
            continue
        picked = next(free, None)
        if picked is None:
            total = 1 << (subnet_len - network.prefixlen)
            raise SubnetError(f'no free /{subnet_len} left in {network} for node "{name}" (all {total} are assigned)')
        result[name] = picked
    return result


def _free(network: IPv4Network, subnet_len: int, used: set[IPv4Network]) -> Iterator[IPv4Network]:
    return (s for s in network.subnets(new_prefix=subnet_len) if s not in used)
