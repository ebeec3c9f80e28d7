"""Full syncs that stay fast with 10,000 Services: replace the filter and nat tables whole.

A full sync the way kube-proxy does it — one ``iptables-restore --noflush`` rewriting every
owned chain — costs, on iptables-nft, time proportional to rules × chains in the table: 58 s at
10k Services × 3 endpoints on our machines, against 2.6 s for the same payload loaded into an
empty namespace. The difference is ``--noflush``: without it iptables-restore builds the table
anew and each rule is cheap. So clew's full sync is a restore *without* ``--noflush`` of the
filter and nat tables, carrying everything that is not clew's verbatim:

1. list the chains of filter and nat (``nft list chains``, no rules printed);
2. read the chains that are not clew's — the built-in ones (with their policies) and other
   components' (Docker, flannel, kubelet's canaries…) — one ``iptables -v -S CHAIN`` each, with
   their counters;
3. write both tables whole: the foreign chains and rules as read (in the built-in chains, clew's
   jump rules keep their place when present and are inserted first otherwise, as kube-proxy's
   EnsureRule does) and clew's own chains from the render; stale KUBE-SVC/SEP/… chains simply
   are not written, so they are gone.

The cost: a rule another component adds to filter or nat between step 2 and 3 (a window of the
restore's duration) is lost, and one it deletes then comes back. So the sync engine replaces the
tables only when clew's part is known to differ (``sync.py``) and counts others' commits inside
the window by the nftables generation. raw and mangle are never touched. `compose` is pure;
`read_foreign` is the only kernel read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from clew.netfilter.chain_text import ChainText, from_spec
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import canonical
from clew.proxy import names as n
from clew.proxy.iptables.jumps import jump_rules
from clew.proxy.iptables.render import Rendered

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
OWNED_FIXED = {
    n.KUBE_SERVICES, n.KUBE_EXTERNAL_SERVICES, n.KUBE_NODEPORTS, n.KUBE_POSTROUTING, n.KUBE_MARK_MASQ,
    n.KUBE_FORWARD, n.KUBE_PROXY_FIREWALL, n.KUBE_FIREWALL, n.KUBE_PROXY_CANARY,
}  # fmt: skip


def owned(chain: str) -> bool:
    """A chain clew writes (and may delete); everything else belongs to someone else."""
    return chain in OWNED_FIXED or chain.startswith(n.SERVICE_CHAIN_PREFIXES)


@dataclass
class ForeignTable:
    """What is not clew's in one table: built-in policies and foreign chains with their rules."""

    name: str
    policies: dict[str, str] = field(default_factory=dict)  # built-in chain → "ACCEPT [p:b]"
    chains: list[str] = field(default_factory=list)  # foreign user chains, in listing order
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain → "-A CHAIN … -c p b" lines


def foreign_from_chains(table: str, chains: dict[str, ChainText]) -> ForeignTable:
    """Build from the foreign chains as read (``netfilter.chain_text``: ``iptables -v -S CHAIN``
    per chain, or one ``iptables-save``)."""
    ft = ForeignTable(table)
    for name, chain in chains.items():
        if name not in BUILTIN[table]:
            ft.chains.append(name)
        elif chain.policy is not None:
            ft.policies[name] = chain.policy
        ft.rules[name] = list(chain.rules)
    return ft


def foreign_from_spec(table: str, specs: dict[str, list[str]]) -> ForeignTable:
    """Build from ``iptables -v -S CHAIN`` output per chain (see kernel.iptables.chain_spec)."""
    return foreign_from_chains(table, {c: from_spec(c, lines) for c, lines in specs.items()})


def _jump_line(table: str, chain: str, args: Iterable[str]) -> str:
    shown = [f'"{a}"' if " " in a else a for a in args]
    return f"-A {chain} {' '.join(shown)}"


def _builtin_rules(table: str, chain: str, foreign: list[str], rendered: Rendered) -> list[str]:
    """Foreign rules of a built-in chain, with clew's jumps kept in place or put first."""
    ours = [
        _jump_line(table, chain, r.args) for r in jump_rules(rendered.config) if r.table == table and r.chain == chain
    ]
    if not ours:
        return foreign
    parsed = parse("\n".join([f"*{table}", *foreign, "COMMIT"]))
    have = [canonical(r) for r in parsed.chain(table, chain).rules] if parsed.chain(table, chain) else []  # type: ignore[union-attr]
    mine = parse("\n".join([f"*{table}", *ours, "COMMIT"]))
    want = [canonical(r) for r in mine.chain(table, chain).rules]  # type: ignore[union-attr]
    # EnsureRule prepends each missing jump in row order, so later rows end up above earlier ones
    missing = [line for line, key in zip(ours, want, strict=True) if key not in have]
    return [*reversed(missing), *foreign]


def compose(foreign: dict[str, ForeignTable], rendered: Rendered) -> str:
    """The restore input (without --noflush, with --counters) for filter and nat, whole.

    Built from the render's rule lists directly: no intermediate text of clew's 12 MB of rules
    at 10k Services is made and split again (memory is a target too)."""
    own = {t.name: t for t in rendered.tables()}
    out: list[str] = []
    for table in ("filter", "nat"):
        ft = foreign.get(table, ForeignTable(table))
        mine = own[table]
        out.append(f"*{table}")
        for chain in BUILTIN[table]:
            out.append(f":{chain} {ft.policies.get(chain, 'ACCEPT [0:0]')}")
        out.extend(f":{c} - [0:0]" for c in ft.chains if not owned(c))
        out.extend(f":{c} - [0:0]" for c in mine.chains)
        out.append(f":{n.KUBE_PROXY_CANARY} - [0:0]")
        for chain in BUILTIN[table]:
            out.extend(_builtin_rules(table, chain, ft.rules.get(chain, []), rendered))
        for chain in ft.chains:
            if not owned(chain):
                out.extend(ft.rules.get(chain, []))
        out.extend(mine.rules)
        out.append("COMMIT")
    return "\n".join(out) + "\n"
