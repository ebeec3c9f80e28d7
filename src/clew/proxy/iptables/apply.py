"""Load renders into a node's kernel: full syncs and partial syncs.

Full sync (`full_sync`): the filter and nat tables are replaced whole — clew's chains from the
render, everything else exactly as it was (see ``full.py`` for why this is 20× faster than
kube-proxy's ``--noflush`` restore at 10k Services, and what it costs). Then the mangle canary
and ``route_localnet`` (with localhost NodePorts). Idempotent.

Partial sync (`partial_sync`): one ``iptables-restore --noflush --counters`` of a plan from
``partial.py``; a failure raises and the caller falls back to a full sync, as kube-proxy does.

Every call names the node's kernel: an `IptablesKernel` (the seam: the real `NodeIptables` for a
namespace, or ``clew.fakes.iptables.FakeIptables`` in tests), or a namespace (name, path, or
``""`` for this process's own), which means the real one there. Nothing here touches any other.
"""

from __future__ import annotations

from clew.kernel import conntrack, iptables
from clew.kernel.errors import KernelError
from clew.kernel.iptables import IptablesKernel, NodeIptables
from clew.kernel.namespace import Where
from clew.netfilter import chain_text
from clew.proxy import names
from clew.proxy.iptables.full import BUILTIN, ForeignTable, compose, foreign_from_chains, owned
from clew.proxy.iptables.render import Rendered

# The seam, for proxy.sync. ``conntrack`` stays reachable as ``proxy.sync.conntrack`` for tests
# written before the seam that patch ``conntrack.delete_udp`` (NodeIptables calls it).
__all__ = ["IptablesKernel", "KernelError", "NodeIptables", "conntrack", "kernel_for"]

MAX_FOREIGN_CHAINS = 200  # past this, one iptables-save per table is cheaper than -S per chain


def kernel_for(node: Where | IptablesKernel) -> IptablesKernel:
    """The kernel to write to: ``node`` itself, or the real one in the namespace it names."""
    return NodeIptables.of(node)


def read_foreign(node: Where | IptablesKernel, chains: dict[str, list[str]] | None = None) -> dict[str, ForeignTable]:
    """Everything in filter and nat that is not clew's, read without listing clew's rules."""
    k = kernel_for(node)
    if chains is None:
        chains = k.list_chains(("filter", "nat"))
    out: dict[str, ForeignTable] = {}
    for table in ("filter", "nat"):
        names_ = [c for c in chains.get(table, []) if c in BUILTIN[table] or not owned(c)]
        for builtin in BUILTIN[table]:
            if builtin not in names_:
                names_.append(builtin)
        if len(names_) > MAX_FOREIGN_CHAINS:
            read = chain_text.from_save(k.save(table), table, names_)
        else:
            read = {c: chain_text.from_spec(c, iptables.chain_spec(k, table, c)) for c in names_}
        out[table] = foreign_from_chains(table, read)
    return out


def full_sync(node: Where | IptablesKernel, rendered: Rendered) -> None:
    """Replace filter and nat with the render plus what others have there; ensure the rest."""
    k = kernel_for(node)
    payload = compose(read_foreign(k), rendered)
    k.restore(payload, noflush=False, counters=True)
    iptables.ensure_chain(k, "mangle", names.KUBE_PROXY_CANARY)
    if rendered.config.localhost_nodeports:
        k.set_sysctl("net.ipv4.conf.all.route_localnet", 1)


def partial_sync(node: Where | IptablesKernel, plan_text: str) -> None:
    """Apply a partial plan in one --noflush transaction (raises on failure)."""
    kernel_for(node).restore(plan_text, noflush=True, counters=True)


def canary_present(node: Where | IptablesKernel) -> bool:
    """False when someone flushed the tables (the canary chain is gone): time for a full sync."""
    k = kernel_for(node)
    return iptables.chain_exists(k, "mangle", names.KUBE_PROXY_CANARY) and iptables.chain_exists(
        k, "nat", names.KUBE_PROXY_CANARY
    )


def postrouting_present(node: Where | IptablesKernel) -> bool:
    """False after ``iptables -t nat -F``: flushing empties chains but leaves them (and the
    canary) in place, so the canary alone cannot tell; KUBE-POSTROUTING is never empty."""
    proc = kernel_for(node).iptables(["-t", "nat", "-S", names.KUBE_POSTROUTING, "1"])
    return proc.returncode == 0 and bool(proc.stdout.strip())


OTHER_MODE_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))  # kube-proxy's (and clew's) nftables mode


def remove_other_mode_leftovers(node: Where | IptablesKernel) -> list[str]:
    """At start in iptables mode, delete what the nftables mode leaves behind (its own table),
    as kube-proxy does when switching modes; returns what was removed."""
    k = kernel_for(node)
    removed = []
    listing = k.nft(["list", "tables"]).stdout
    for family, table in OTHER_MODE_TABLES:
        if f"table {family} {table}" in listing.splitlines():
            done = k.nft(["delete", "table", family, table])
            if done.returncode != 0:
                raise KernelError(k.namespace, f"nft table {family} {table}", done.stderr or f"exit {done.returncode}")
            removed.append(f"{family} {table}")
    return removed
