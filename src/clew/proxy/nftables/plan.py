"""A partial sync's transaction in nftables mode: what clew's table holds (`Mirror`, kept in
memory — never read back from the kernel) and the commands that turn it into the new render of
the changed Service ports (`plan`). Pure.

Why a mirror and not a read: any ``nft list`` that shows a rule fetches every set element of the
table first (3.2 s for ``list chain`` beside a map of 200k elements, nft 1.0.6, measured), and a
one-Service change must cost about a millisecond.

What a plan does, in this order inside ONE transaction (nft applies a transaction in order, and
the kernel validates the result once, at commit):

1. ``add chain`` + ``flush chain`` for every per-port chain that is new or changed, ``flush chain``
   for those that go (so nothing references them or their sets any more);
2. when the set of endpoint-count groups changes: ``flush chain`` of the role chains (``dst``,
   ``dst-sc``, ``np``, ``np-sc``);
3. ``delete element`` for keys that go and for keys whose value (or comment) changes;
4. ``delete chain`` / ``delete set`` of per-port chains and sets that go (a set whose spec changed
   is deleted and added again), ``delete map`` of groups no port uses any more;
5. ``add map`` of new groups, ``add set`` of new per-port sets;
6. ``add rule`` of new or changed per-port chains; the role chains' rules for the new groups
   (taken from the renderer's ``fixed`` part, one rule per group);
7. ``add element`` for new keys and changed values.

Elements are reference counted by (set, key): an endpoint's ``hairpin`` element is wanted by
every Service port that has the endpoint, and stays while one of them does. The element the
kernel holds for a shared key is the first one added (the full render keeps the first in render
order, which is the same for the elements the renderer shares: they are equal).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from clew.proxy.nftables.layout import FAMILY, TABLE, Chain, Element, Group, PortNft, SetDecl

ROLES = ("dst", "dst-sc", "np", "np-sc")
_T = f"{FAMILY} {TABLE}"


def _add_set(s: SetDecl) -> str:
    return f"add {'map' if s.is_map else 'set'} {_T} {s.name} {{ {s.spec} }}"


def _delete_set(s: SetDecl) -> str:
    return f"delete {'map' if s.is_map else 'set'} {_T} {s.name}"


@dataclass
class Mirror:
    """What the last successful sync left in clew's table, per Service port."""

    ports: dict[str, PortNft] = field(default_factory=dict)
    held: dict[tuple[str, str], Element] = field(default_factory=dict)  # the element the kernel holds
    refs: dict[tuple[str, str], int] = field(default_factory=dict)  # only keys wanted more than once
    groups: Counter[Group] = field(default_factory=Counter)  # ports per group

    @classmethod
    def of(cls, ports: Iterable[PortNft]) -> Mirror:
        """The mirror of a full load of ``ports`` (in render order)."""
        m = cls()
        for p in ports:
            m.ports[p.key] = p
            m.groups.update(p.groups)
            for e in p.elements:
                m._want(e)
        return m

    @property
    def group_set(self) -> frozenset[Group]:
        return frozenset(self.groups)

    def _want(self, e: Element) -> bool:
        """One more port wants ``e``; True when the kernel lacks its key."""
        k = (e.set, e.key)
        if k not in self.held:
            self.held[k] = e
            return True
        self.refs[k] = self.refs.get(k, 1) + 1
        return False

    def _drop(self, e: Element) -> bool:
        """One port less wants ``e``; True when no port does any more."""
        k = (e.set, e.key)
        n = self.refs.get(k, 1)
        if n <= 1:
            self.refs.pop(k, None)
            self.held.pop(k, None)
            return True
        if n == 2:
            del self.refs[k]
        else:
            self.refs[k] = n - 1
        return False

    def elements(self) -> set[Element]:
        """Every element the kernel holds (tests compare it with a fresh render)."""
        return set(self.held.values())


@dataclass(frozen=True)
class Plan:
    commands: tuple[str, ...]
    groups_changed: bool
    elements_added: int
    elements_deleted: int

    def script(self) -> str:
        return "\n".join(self.commands) + "\n" if self.commands else ""


def plan(
    mirror: Mirror,
    changes: Mapping[str, PortNft | None],
    fixed: Callable[[frozenset[Group]], Iterable[str]],
) -> Plan:
    """The transaction that replaces the ports named in ``changes`` (None: the port goes) with
    their new render; updates ``mirror`` in place (the caller falls back to a full sync, which
    rebuilds it, when the transaction fails). ``fixed(groups)`` is the renderer's fixed part for
    a set of groups: only its ``add map`` of a group and its role chains' ``add rule`` are used."""
    old_groups = mirror.group_set
    new_chains: dict[str, Chain] = {}
    old_chains: dict[str, Chain] = {}
    new_sets: dict[str, SetDecl] = {}
    old_sets: dict[str, SetDecl] = {}
    forced: set[str] = set()  # chains rewritten because a set of their port is made anew
    removed: list[Element] = []
    added: list[Element] = []
    for key, new in changes.items():
        old = mirror.ports.pop(key, None)
        if old is not None and old is new:
            mirror.ports[key] = old
            continue
        if old is not None:
            mirror.groups.subtract(old.groups)
            old_chains.update((c.name, c) for c in old.chains)
            old_sets.update((s.name, s) for s in old.sets)
            removed.extend(old.elements)
        if new is not None:
            mirror.ports[key] = new
            mirror.groups.update(new.groups)
            new_chains.update((c.name, c) for c in new.chains)
            new_sets.update((s.name, s) for s in new.sets)
            added.extend(new.elements)
            if old is not None and old.sets != new.sets:
                forced.update(c.name for c in new.chains)
    for g in [g for g, n in mirror.groups.items() if n <= 0]:
        del mirror.groups[g]
    new_groups = mirror.group_set

    # elements: drop the old wants first, then add the new ones; a key both dropped and wanted
    # again is rewritten only when what the kernel should hold differs
    before = {(e.set, e.key): mirror.held[(e.set, e.key)] for e in removed if (e.set, e.key) in mirror.held}
    gone: dict[tuple[str, str], Element] = {}
    for e in removed:
        if mirror._drop(e):
            gone[(e.set, e.key)] = before[(e.set, e.key)]
    fresh: dict[tuple[str, str], Element] = {}
    for e in added:
        if mirror._want(e):
            fresh[(e.set, e.key)] = e
    deletes: list[Element] = []
    adds: list[Element] = []
    for k, e in gone.items():
        again = fresh.get(k)
        if again is not None and again == e:
            del fresh[k]  # unchanged: neither deleted nor added
        else:
            deletes.append(e)
    adds.extend(fresh.values())

    chains_written = [c for n, c in new_chains.items() if n in forced or old_chains.get(n) != c]
    chains_gone = [n for n in old_chains if n not in new_chains]
    sets_rewritten = [s for n, s in new_sets.items() if n in old_sets and old_sets[n] != s]
    sets_new = [s for n, s in new_sets.items() if n not in old_sets]
    sets_gone = [s for n, s in old_sets.items() if n not in new_sets]
    groups_changed = new_groups != old_groups

    out: list[str] = []
    for c in chains_written:
        out += [f"add chain {_T} {c.name}", f"flush chain {_T} {c.name}"]
    out += [f"flush chain {_T} {n}" for n in chains_gone]
    fixed_lines: list[str] = list(fixed(new_groups)) if groups_changed else []
    if groups_changed:
        out += [f"flush chain {_T} {role}" for role in ROLES if any(_is_chain(line, role) for line in fixed_lines)]
    out += [e.delete() for e in deletes]
    out += [f"delete chain {_T} {n}" for n in chains_gone]
    out += [_delete_set(s) for s in (*sets_gone, *(old_sets[s.name] for s in sets_rewritten))]
    out += [f"delete map {_T} {g.map_name}" for g in sorted(old_groups - new_groups)]
    for g in sorted(new_groups - old_groups):
        out += [line for line in fixed_lines if line.startswith(f"add map {_T} {g.map_name} ")]
    out += [_add_set(s) for s in (*sets_new, *sets_rewritten)]
    for c in chains_written:
        out += [f"add rule {_T} {c.name} {r}" for r in c.rules]
    if groups_changed:
        out += [line for line in fixed_lines if _role_rule(line)]
    out += [e.add() for e in adds]
    return Plan(tuple(out), groups_changed, len(adds), len(deletes))


def _is_chain(line: str, name: str) -> bool:
    """Does ``line`` declare chain ``name`` (``add chain ip clew NAME`` with or without a spec)?"""
    head = f"add chain {_T} {name}"
    return line == head or line.startswith(head + " ")


def _role_rule(line: str) -> bool:
    return any(line.startswith(f"add rule {_T} {role} ") for role in ROLES)
