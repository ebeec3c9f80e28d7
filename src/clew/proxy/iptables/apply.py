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

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from clew.kernel import conntrack, iptables
from clew.kernel.errors import KernelError
from clew.kernel.iptables import IptablesKernel, NodeIptables
from clew.kernel.namespace import Where
from clew.kernel.nfgen import Generation
from clew.netfilter import chain_text
from clew.proxy import names
from clew.proxy.iptables import guard
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


TABLE_COMMITS = 2  # an iptables-nft restore of filter and nat commits each table on its own


@dataclass(frozen=True)
class FullSync:
    """What a full sync did: ``wrote`` (False: the kernel already held the render, nothing was
    written); ``foreign_commits``: commits by someone else between reading their chains and
    writing the tables back — a rule they wrote or deleted then may be lost or back (0 when no
    generation reader)."""

    wrote: bool
    foreign_commits: int = 0


def full_sync(
    node: Where | IptablesKernel,
    rendered: Rendered,
    *,
    verify: bool = False,
    generation: Callable[[], int] | None = None,
    seen: guard.Seen | None = None,
) -> FullSync:
    """Make filter and nat hold the render plus what others have there; ensure the rest.

    ``verify``: first read filter and nat (one iptables-save) and write nothing when every chain
    clew owns, the jumps and the canaries are already as rendered — the periodic full sync and a
    restarted agent's first one, which then cannot lose another program's concurrent write (see
    ``full.py``). Otherwise, or when they differ, the tables are replaced whole; with
    ``generation``, the commits others made inside that window are counted. ``seen``: see
    `guard.compare` (the caller keeps it from one full sync to the next)."""
    k = kernel_for(node)
    if verify:
        want = guard.expected(rendered, whole=True)
        try:
            read = read_owned(k)
        except KernelError:
            read = None  # could not look: replace, as without verify
        if read is not None and not guard.compare(want, read, seen) and not guard.stale_chains(want, read):
            _ensure_extras(k, rendered)
            return FullSync(False)
    before = generation() if generation is not None else None
    payload = compose(read_foreign(k), rendered)
    k.restore(payload, noflush=False, counters=True)
    after = generation() if generation is not None else None
    _ensure_extras(k, rendered)
    foreign = 0 if before is None or after is None else max(0, after - before - TABLE_COMMITS)
    return FullSync(True, foreign)


def _ensure_extras(k: IptablesKernel, rendered: Rendered) -> None:
    iptables.ensure_chain(k, "mangle", names.KUBE_PROXY_CANARY)
    if rendered.config.localhost_nodeports:
        k.set_sysctl("net.ipv4.conf.all.route_localnet", 1)


def read_owned(node: Where | IptablesKernel) -> dict[tuple[str, str], list[str] | None]:
    """Every chain of filter and nat with its ``-A`` lines, and the mangle canary, from one
    ``iptables-save`` (1 s at 10k Services; iptables-nft reads every table even with ``-t``)."""
    text = kernel_for(node).save()
    out: dict[tuple[str, str], list[str] | None] = {}
    for table in ("filter", "nat", "mangle"):
        for name, chain in chain_text.from_save(text, table).items():
            if table != "mangle" or name == names.KUBE_PROXY_CANARY:
                out[(table, name)] = chain.rules
    return out


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


def read_chains(
    node: Where | IptablesKernel, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[str] | None]:
    """The ``-A`` lines of each (table, chain) in ``keys``; None for a chain that does not exist.

    One ``iptables -S CHAIN`` per chain: iptables-nft then fetches that chain alone (~4 ms for a
    fixed chain, ~110 ms for nat KUBE-SERVICES at 10k Services), where ``iptables-save -t
    filter`` fetches every table (1.7 s at 10k Services, though filter itself is small)."""
    k = kernel_for(node)
    out: dict[tuple[str, str], list[str] | None] = {}
    for table, chain in dict.fromkeys(keys):
        done = k.iptables(["-t", table, "-S", chain])
        if done.returncode == 0:
            out[(table, chain)] = guard.parse_spec(done.stdout.splitlines())
        elif done.returncode == 1:  # no such chain (iptables-nft 1.8.9 says "incompatible")
            out[(table, chain)] = None
        else:
            raise KernelError(k.namespace, f"chain {table}/{chain}", done.stderr.strip() or f"exit {done.returncode}")
    return out


def generation_for(node: Where) -> Callable[[], int] | None:
    """The nftables ruleset generation reader for ``node`` (None on the legacy backend, whose
    tables have no generation: there every check reads the chains)."""
    if iptables.backend() != "nf_tables":
        return None
    return Generation(node)


OTHER_MODE_TABLES = (
    ("ip", "clew"),
    ("ip", "kube-proxy"),
    ("ip6", "kube-proxy"),
)  # clew's and kube-proxy's nftables mode


def remove_other_mode_leftovers(node: Where | IptablesKernel) -> list[str]:
    """At start in iptables mode, delete what the nftables mode leaves behind (its own table),
    as kube-proxy does when switching modes; returns what was removed.

    One ``nft delete table`` per table ("No such file or directory" when absent): ``nft list
    tables`` builds nft's whole cache first, 28-42 s over a 10k-Service iptables ruleset
    (measured), which a restarted agent's first sync would pay."""
    k = kernel_for(node)
    removed = []
    for family, table in OTHER_MODE_TABLES:
        done = k.nft(["delete", "table", family, table])
        if done.returncode == 0:
            removed.append(f"{family} {table}")
        elif "No such file or directory" not in done.stderr:
            raise KernelError(
                k.namespace, f"nft table {family} {table}", done.stderr.strip() or f"exit {done.returncode}"
            )
    return removed
