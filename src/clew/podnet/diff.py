"""The difference between what the kernel holds and what a backend wants: a pure plan.

Given the owned entries the kernel holds now (:class:`Current`, already filtered by the
backend's :class:`~clew.podnet.desired.Scope`) and a :class:`~clew.podnet.desired.Desired`,
:func:`plan` says what to add, replace and delete, and records each as a :class:`Change`:

* routes are keyed by destination (metric 0, main table): absent → add, different next hop or
  flags → replace; an owned route to a destination nobody wants, or a duplicate at another
  metric, → delete;
* neighbours are keyed by IP: absent → add, other MAC → replace, unwanted → delete;
* FDB entries are keyed by MAC (a vxlan MAC may have several remote VTEPs): absent → add,
  pointing elsewhere → replace (extra remotes deleted), unwanted → every remote deleted.

Equal input gives an empty plan, which is what makes reconcile idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from clew.podnet.desired import Desired, FdbEntry, Neighbour, Route

ADD, REPLACE, DELETE = "add", "replace", "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One change: ``action`` add|replace|delete, ``kind`` route|neigh|fdb, ``entry`` the entry
    (after the change; for a delete, the one removed) and ``previous`` what it replaced."""

    action: str
    kind: str
    entry: str
    previous: str | None = None

    def __str__(self) -> str:
        was = f" (was {self.previous})" if self.previous is not None else ""
        return f"{self.action} {self.kind} {self.entry}{was}"


@dataclass(frozen=True, slots=True)
class Changes:
    """What a reconcile changed (or, dry, would change); empty and falsy when in sync."""

    items: tuple[Change, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.items)

    def __str__(self) -> str:
        return "\n".join(str(c) for c in self.items) if self.items else "no changes"

    def of(self, action: str | None = None, kind: str | None = None) -> list[Change]:
        return [c for c in self.items if action in (None, c.action) and kind in (None, c.kind)]


@dataclass(frozen=True, slots=True)
class Current:
    """The owned entries in the kernel now; routes carry their metric."""

    routes: tuple[tuple[Route, int], ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    route_deletes: tuple[tuple[Route, int], ...] = ()
    route_puts: tuple[Route, ...] = ()
    neighbour_deletes: tuple[Neighbour, ...] = ()
    neighbour_puts: tuple[Neighbour, ...] = ()
    fdb_deletes: tuple[FdbEntry, ...] = ()
    fdb_puts: tuple[FdbEntry, ...] = ()
    changes: Changes = field(default_factory=Changes)


def plan(current: Current, desired: Desired) -> Plan:
    """What to do to bring ``current`` to ``desired`` (pure)."""
    changes: list[Change] = []
    route_deletes, route_puts = _routes(current, desired, changes)
    neighbour_deletes, neighbour_puts = _neighbours(current, desired, changes)
    fdb_deletes, fdb_puts = _fdb(current, desired, changes)
    return Plan(
        tuple(route_deletes),
        tuple(route_puts),
        tuple(neighbour_deletes),
        tuple(neighbour_puts),
        tuple(fdb_deletes),
        tuple(fdb_puts),
        Changes(tuple(changes)),
    )


def _routes(current: Current, desired: Desired, changes: list[Change]) -> tuple[list[tuple[Route, int]], list[Route]]:
    have = {route.dst: route for route, metric in current.routes if metric == 0}
    wanted = {route.dst for route in desired.routes}
    puts: list[Route] = []
    for route in sorted(desired.routes):
        old = have.get(route.dst)
        if old == route:
            continue
        puts.append(route)
        changes.append(Change(ADD if old is None else REPLACE, "route", str(route), None if old is None else str(old)))
    deletes = [(r, m) for r, m in sorted(current.routes) if m != 0 or r.dst not in wanted]
    changes += [Change(DELETE, "route", str(r) + (f" metric {m}" if m else "")) for r, m in deletes]
    return deletes, puts


def _neighbours(current: Current, desired: Desired, changes: list[Change]) -> tuple[list[Neighbour], list[Neighbour]]:
    have = {(n.dev, n.ip): n for n in current.neighbours}
    wanted = {(n.dev, n.ip) for n in desired.neighbours}
    puts: list[Neighbour] = []
    for neigh in sorted(desired.neighbours):
        old = have.get((neigh.dev, neigh.ip))
        if old == neigh:
            continue
        puts.append(neigh)
        changes.append(Change(ADD if old is None else REPLACE, "neigh", str(neigh), None if old is None else str(old)))
    deletes = [n for n in sorted(current.neighbours) if (n.dev, n.ip) not in wanted]
    changes += [Change(DELETE, "neigh", str(n)) for n in deletes]
    return deletes, puts


def _fdb(current: Current, desired: Desired, changes: list[Change]) -> tuple[list[FdbEntry], list[FdbEntry]]:
    have: dict[tuple[str, str], list[FdbEntry]] = defaultdict(list)
    for entry in sorted(current.fdb):
        have[(entry.dev, entry.mac)].append(entry)
    deletes: list[FdbEntry] = []
    puts: list[FdbEntry] = []
    for entry in sorted(desired.fdb):
        old = have.pop((entry.dev, entry.mac), [])
        if old == [entry]:
            continue
        deletes += [e for e in old if e != entry]
        if entry not in old:
            puts.append(entry)
        previous = ", ".join(str(e) for e in old) or None
        changes.append(Change(ADD if not old else REPLACE, "fdb", str(entry), previous))
    for stale in have.values():
        deletes += stale
        changes += [Change(DELETE, "fdb", str(e)) for e in stale]
    return deletes, puts
