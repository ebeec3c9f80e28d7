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
2. when the set of endpoint-count groups changes, the renderer's ``regroup`` commands: new
   group maps, the role chains (``dnat-dst``…) flushed and refilled with one rule per group;
3. ``delete element`` for keys that go and for keys whose value (or comment) changes;
4. ``delete chain`` / ``delete set`` of per-port chains and sets that go (a set whose spec changed
   is deleted and added again), ``delete map`` of groups no port uses any more;
5. ``add set`` of new per-port sets;
6. ``add rule`` of new or changed per-port chains;
7. ``add element`` for new keys and changed values.

Elements are reference counted by (set, key): an endpoint's ``hairpin`` element is wanted by
every Service port that has the endpoint, and stays while one of them does. Of several ports'
elements with one key the kernel holds the one of the first port in render order (the least
Service port name, which is its comment), as a full load does; when that port lets go, the
element is rewritten with the next port's comment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clew.proxy.nftables.layout import FAMILY, TABLE, Chain, Element, Group, PortNft, SetDecl

_T = f"{FAMILY} {TABLE}"


def _add_set(s: SetDecl) -> str:
    return f"add {'map' if s.is_map else 'set'} {_T} {s.name} {{ {s.spec} }}"


def _delete_set(s: SetDecl) -> str:
    return f"delete {'map' if s.is_map else 'set'} {_T} {s.name}"


def _rank(e: Element) -> tuple[str, str]:
    """Which of several ports' elements with one key the kernel holds: the least comment (the
    Service port's name), i.e. the first port in render order, as the full load keeps it."""
    return e.comment, e.value or ""


@dataclass
class Mirror:
    """What the last successful sync left in clew's table, per Service port."""

    ports: dict[str, PortNft] = field(default_factory=dict)
    held: dict[tuple[str, str], Element] = field(default_factory=dict)  # the element the kernel holds
    shared: dict[tuple[str, str], list[Element]] = field(default_factory=dict)  # keys wanted by 2+ ports
    groups: Counter[Group] = field(default_factory=Counter)  # ports per group

    @classmethod
    def of(cls, ports: Iterable[PortNft]) -> Mirror:
        """The mirror of a full load of ``ports``."""
        m = cls()
        for p in ports:
            m.ports[p.key] = p
            m.groups.update(p.groups)
            for e in p.elements:
                m.want(e)
        return m

    @property
    def group_set(self) -> frozenset[Group]:
        return frozenset(self.groups)

    def want(self, e: Element) -> None:
        """One more port wants ``e``."""
        k = (e.set, e.key)
        held = self.held.get(k)
        if held is None:
            self.held[k] = e
            return
        wanting = self.shared.setdefault(k, [held])
        wanting.append(e)
        self.held[k] = min(wanting, key=_rank)

    def drop(self, e: Element) -> None:
        """One port less wants ``e``."""
        k = (e.set, e.key)
        wanting = self.shared.get(k)
        if wanting is None:
            self.held.pop(k, None)
            return
        wanting.remove(e)
        self.held[k] = min(wanting, key=_rank)
        if len(wanting) == 1:
            del self.shared[k]

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


Regroup = Callable[[frozenset[Group], frozenset[Group]], tuple[Sequence[str], Sequence[str]]]


def plan(mirror: Mirror, changes: Mapping[str, PortNft | None], regroup: Regroup) -> Plan:
    """The transaction that replaces the ports named in ``changes`` (None: the port goes) with
    their new render; updates ``mirror`` in place (the caller falls back to a full sync, which
    rebuilds it, when the transaction fails). ``regroup(old, new)`` is the renderer's commands
    that take the group maps and role chains from one set of groups to another, as (before the
    element changes, after them)."""
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

    # elements: what the kernel holds for every touched key, before and after
    touched = dict.fromkeys([(e.set, e.key) for e in removed] + [(e.set, e.key) for e in added])  # ordered
    before = {k: mirror.held.get(k) for k in touched}
    for e in removed:
        mirror.drop(e)
    for e in added:
        mirror.want(e)
    deletes: list[Element] = []
    adds: list[Element] = []
    for k in touched:
        was, now = before[k], mirror.held.get(k)
        if was == now:
            continue
        if was is not None:
            deletes.append(was)
        if now is not None:
            adds.append(now)

    chains_written = [c for n, c in new_chains.items() if n in forced or old_chains.get(n) != c]
    chains_gone = [n for n in old_chains if n not in new_chains]
    sets_rewritten = [s for n, s in new_sets.items() if n in old_sets and old_sets[n] != s]
    sets_new = [s for n, s in new_sets.items() if n not in old_sets]
    sets_gone = [s for n, s in old_sets.items() if n not in new_sets]
    groups_changed = new_groups != old_groups
    regroup_before, regroup_after = regroup(old_groups, new_groups) if groups_changed else ((), ())

    out: list[str] = []
    for c in chains_written:
        out += [f"add chain {_T} {c.name}", f"flush chain {_T} {c.name}"]
    out += [f"flush chain {_T} {n}" for n in chains_gone]
    out += regroup_before  # new group maps; role chains refilled for the new groups
    out += [e.delete() for e in deletes]
    out += [f"delete chain {_T} {n}" for n in chains_gone]
    out += [_delete_set(s) for s in (*sets_gone, *(old_sets[s.name] for s in sets_rewritten))]
    out += regroup_after  # maps of groups that went (their elements and rule are gone)
    out += [_add_set(s) for s in (*sets_new, *sets_rewritten)]
    for c in chains_written:
        out += [f"add rule {_T} {c.name} {r}" for r in c.rules]
    out += [e.add() for e in adds]
    return Plan(tuple(out), groups_changed, len(adds), len(deletes))
