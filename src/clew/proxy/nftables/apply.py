"""The nftables mode's way into a node's kernel: the `NftKernel` seam (a long-lived libnftables
context, `clew.kernel.nftables.NodeNft`), the ruleset generation, and conntrack — each for the
node's namespace. ``proxy/nftables/sync.py`` goes through here only, so that it stays free of
``clew.kernel`` (see tests/unit/test_layering.py) and its tests pass fakes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clew.kernel import conntrack, nft_json
from clew.kernel.errors import KernelError
from clew.kernel.namespace import Where
from clew.kernel.nfgen import Generation
from clew.kernel.nft_rules import RuleDump
from clew.kernel.nftables import NftKernel, nft_kernel_for

__all__ = ["KernelError", "NftKernel", "conntrack_for", "generation_for", "kernel_for", "rules_for", "table_state"]


def kernel_for(node: Where) -> NftKernel:
    """The real nftables context in ``node``'s namespace (``""``: this process's own)."""
    return nft_kernel_for(node)


def generation_for(node: Where) -> Callable[[], int]:
    """The namespace's nftables ruleset generation (one netlink round trip per read)."""
    return Generation(node)


def conntrack_for(node: Where) -> Callable[..., int]:
    """``delete(dst_nat=…, orig_dst=…, orig_port=…)``: delete UDP conntrack entries there."""

    def delete(**kw: Any) -> int:
        return conntrack.delete_udp(node, **kw)

    return delete


def rules_for(node: Where) -> Callable[[], dict[str, list[bytes]]]:
    """The rules of clew's table per chain, read over netlink (no set elements are read)."""
    return RuleDump(node, "ip", "clew")


def table_state(kernel: NftKernel) -> nft_json.State | None:
    """Everything comparable in clew's table (``nft -j list table ip clew``: seconds at 100k
    Services — the periodic check's read, not a sync's); None when there is no such table."""
    return nft_json.state_of(kernel.list_json("table ip clew"), "ip", "clew")
