"""Partial syncs: the smallest ``iptables-restore --noflush`` that turns the kernel's rules for
the previous render into those of the next one. Pure.

Why not kube-proxy's way. kube-proxy's partial sync rewrites every top-level chain in full
(KUBE-SERVICES holds one rule per Service IP and port) and re-declares its chains. On
iptables-nft, appending a rule in a ``--noflush`` restore costs time proportional to the number
of chains in the table (measured here: 20k rules into one chain take 0.13 s in an empty table,
1.7 s in a table with 10k empty chains), so with 10k Services rewriting KUBE-SERVICES alone
costs seconds. Instead, clew edits the shared chains rule by rule:

* a port's own chains (KUBE-SVC/SVL/EXT/FW/SEP) are declared (which flushes them) and written
  whole — only for ports whose rules changed;
* in the shared chains, a rule that went away is deleted by its spec (``-D CHAIN spec``) and a
  new rule is inserted at the top (``-I CHAIN 1 spec``): the rules there are one per Service
  IP, port and protocol and never overlap, so their order carries no meaning — except the
  final KUBE-SERVICES → KUBE-NODEPORTS rule, which stays last because nothing is appended;
* chains of ports that went away (or of endpoints that did) are flushed and deleted (``-X``)
  after every reference to them is gone, in the same transaction.

The fixed rules (KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD, the final nodeports rule) only
change with the configuration; then `needs_full` says so and the caller does a full sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from clew.netfilter.restore import TableText, payload
from clew.proxy.iptables.render import PortRules, Rendered


@dataclass
class PartialPlan:
    """What a partial sync changes; ``text`` is None when nothing does."""

    text: str | None
    changed_ports: list[str] = field(default_factory=list)
    removed_ports: list[str] = field(default_factory=list)
    rules_written: int = 0

    @property
    def empty(self) -> bool:
        return self.text is None


def needs_full(old: Rendered | None, new: Rendered) -> bool:
    """True when something a partial sync cannot express changed (config, fixed rules)."""
    if old is None:
        return True
    return (old.filter_chains, old.filter_head, old.filter_tail, old.nat_head, old.nat_tail) != (
        new.filter_chains,
        new.filter_head,
        new.filter_tail,
        new.nat_head,
        new.nat_tail,
    )


def _chain_of(rule: str) -> tuple[str, str]:
    """("CHAIN", "spec") of an ``-A CHAIN spec`` line."""
    _, chain, spec = rule.split(" ", 2)
    return chain, spec


def plan(old_ports: Mapping[str, PortRules], new_ports: Mapping[str, PortRules]) -> PartialPlan:
    changed = [k for k, p in new_ports.items() if (o := old_ports.get(k)) is not p and o != p]
    removed = [k for k in old_ports if k not in new_ports]
    if not changed and not removed:
        return PartialPlan(None)
    filt = TableText("filter")
    nat = TableText("nat")
    deletes: dict[str, list[str]] = {"filter": [], "nat": []}
    inserts: dict[str, list[str]] = {"filter": [], "nat": []}
    stale: list[str] = []
    written = 0
    for key in [*changed, *removed]:
        old, new = old_ports.get(key), new_ports.get(key)
        for table, old_rules, new_rules in (
            ("filter", old.filter_rules if old else (), new.filter_rules if new else ()),
            ("nat", old.nat_top_rules if old else (), new.nat_top_rules if new else ()),
        ):
            keep = set(new_rules)
            had = set(old_rules)
            deletes[table] += [r for r in old_rules if r not in keep]
            inserts[table] += [r for r in new_rules if r not in had]
        if new is not None:
            nat.chains.extend(new.chains)
            nat.rules.extend(new.chain_rules)
            written += len(new.chain_rules)
        new_chains = set(new.chains) if new else set()
        stale += [c for c in (old.chains if old else ()) if c not in new_chains]
    for table, text in (("filter", filt), ("nat", nat)):
        dels = [f"-D {chain} {spec}" for chain, spec in map(_chain_of, deletes[table])]
        ins = [f"-I {chain} 1 {spec}" for chain, spec in map(_chain_of, reversed(inserts[table]))]
        text.rules[:0] = dels  # references go before the chains they point to are deleted
        text.rules.extend(ins)
        written += len(ins)
    nat.chains.extend(stale)
    nat.rules.extend(f"-X {c}" for c in stale)
    tables = [t for t in (filt, nat) if t.chains or t.rules]
    return PartialPlan(payload(tables), changed, removed, written)
