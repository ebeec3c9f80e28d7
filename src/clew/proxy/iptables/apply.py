"""Load renders into a node's kernel: full syncs and partial syncs.

Full sync (`full_sync`): the filter and nat tables are replaced whole — clew's chains from the
render, everything else exactly as it was (see ``full.py`` for why this is 20× faster than
kube-proxy's ``--noflush`` restore at 10k Services, and what it costs). Then the mangle canary
and ``route_localnet`` (with localhost NodePorts). Idempotent.

Partial sync (`partial_sync`): one ``iptables-restore --noflush --counters`` of a plan from
``partial.py``; a failure raises and the caller falls back to a full sync, as kube-proxy does.

Every call names the node's network namespace; nothing here touches any other.
"""

from __future__ import annotations

from clew.kernel import iptables, netns
from clew.proxy import names
from clew.proxy.iptables.full import BUILTIN, ForeignTable, compose, foreign_from_spec, owned
from clew.proxy.iptables.render import Rendered

MAX_FOREIGN_CHAINS = 200  # past this, one iptables-save per table is cheaper than -S per chain


def read_foreign(node_netns: str, chains: dict[str, list[str]] | None = None) -> dict[str, ForeignTable]:
    """Everything in filter and nat that is not clew's, read without listing clew's rules."""
    if chains is None:
        chains = iptables.list_chains(node_netns)
    out: dict[str, ForeignTable] = {}
    for table in ("filter", "nat"):
        names_ = [c for c in chains.get(table, []) if c in BUILTIN[table] or not owned(c)]
        for builtin in BUILTIN[table]:
            if builtin not in names_:
                names_.append(builtin)
        if len(names_) > MAX_FOREIGN_CHAINS:
            specs = _from_save(iptables.save(node_netns, table), names_)
        else:
            specs = {c: iptables.chain_spec(node_netns, table, c) for c in names_}
        out[table] = foreign_from_spec(table, specs)
    return out


def _from_save(text: str, wanted: list[str]) -> dict[str, list[str]]:
    specs: dict[str, list[str]] = {c: [] for c in wanted}
    for line in text.splitlines():
        if line.startswith(":"):
            name, policy, counters = [*line[1:].split(), "", ""][:3]
            if name in specs and policy != "-":
                p, _, b = counters.strip("[]").partition(":")
                specs[name].append(f"-P {name} {policy} -c {p or 0} {b or 0}")
        elif line.startswith("-A "):
            chain = line.split(" ", 2)[1]
            if chain in specs:
                specs[chain].append(line)
    return specs


def full_sync(node_netns: str, rendered: Rendered) -> None:
    """Replace filter and nat with the render plus what others have there; ensure the rest."""
    listing = iptables.start_list_chains(node_netns)  # the kernel lists while we read
    chains = iptables.parse_chain_list(listing.result(), netns=node_netns)
    payload = compose(read_foreign(node_netns, chains), rendered)
    iptables.restore(node_netns, payload, noflush=False, counters=True)
    iptables.ensure_chain(node_netns, "mangle", names.KUBE_PROXY_CANARY)
    if rendered.config.localhost_nodeports:
        netns.set_sysctl(node_netns, "net.ipv4.conf.all.route_localnet", 1)


def partial_sync(node_netns: str, plan_text: str) -> None:
    """Apply a partial plan in one --noflush transaction (raises on failure)."""
    iptables.restore(node_netns, plan_text, noflush=True, counters=True)


def canary_present(node_netns: str) -> bool:
    """False when someone flushed the tables (the canary chain is gone): time for a full sync."""
    return iptables.chain_exists(node_netns, "mangle", names.KUBE_PROXY_CANARY) and iptables.chain_exists(
        node_netns, "nat", names.KUBE_PROXY_CANARY
    )


def postrouting_present(node_netns: str) -> bool:
    """False after ``iptables -t nat -F``: flushing empties chains but leaves them (and the
    canary) in place, so the canary alone cannot tell; KUBE-POSTROUTING is never empty."""
    proc = iptables.iptables(node_netns, ["-t", "nat", "-S", names.KUBE_POSTROUTING, "1"], check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())


OTHER_MODE_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))  # kube-proxy's (and clew's) nftables mode


def remove_other_mode_leftovers(node_netns: str) -> list[str]:
    """At start in iptables mode, delete what the nftables mode leaves behind (its own table),
    as kube-proxy does when switching modes; returns what was removed."""
    removed = []
    listing = netns.run(node_netns, ["nft", "list", "tables"], check=False).stdout
    for family, table in OTHER_MODE_TABLES:
        if f"table {family} {table}" in listing.splitlines():
            netns.run(node_netns, ["nft", "delete", "table", family, table])
            removed.append(f"{family} {table}")
    return removed
