"""The reconcile plan: add missing, replace changed, delete stale; equal input, empty plan."""

from __future__ import annotations

import ipaddress

from clew.podnet.desired import Desired, FdbEntry, Neighbour, Route, Scope
from clew.podnet.diff import Change, Changes, Current, plan

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
DEV = "flannel.1"
SCOPE = Scope(DEV, None, DEV, DEV)
M2, M3, M4 = "0a:00:00:00:00:02", "0a:00:00:00:00:03", "0a:00:00:00:00:04"


def route(n: int, dev: str = DEV) -> Route:
    return Route(NET(f"10.244.{n}.0/24"), dev, IP(f"10.244.{n}.0"), onlink=True)


def neigh(n: int, mac: str) -> Neighbour:
    return Neighbour(IP(f"10.244.{n}.0"), mac, DEV)


def fdb(mac: str, ip: str) -> FdbEntry:
    return FdbEntry(mac, DEV, IP(ip))


DESIRED = Desired(
    SCOPE,
    frozenset({route(2), route(3)}),
    frozenset({neigh(2, M2), neigh(3, M3)}),
    frozenset({fdb(M2, "192.168.1.12"), fdb(M3, "192.168.1.13")}),
)
IN_SYNC = Current(
    ((route(2), 0), (route(3), 0)),
    (neigh(2, M2), neigh(3, M3)),
    (fdb(M2, "192.168.1.12"), fdb(M3, "192.168.1.13")),
)


def test_empty_kernel_gets_everything_added() -> None:
    todo = plan(Current(), DESIRED)
    assert todo.route_puts == (route(2), route(3)) and todo.route_deletes == ()
    assert len(todo.neighbour_puts) == 2 and len(todo.fdb_puts) == 2
    assert [c.action for c in todo.changes] == ["add"] * 6
    assert str(todo.changes.items[0]) == "add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"


def test_in_sync_is_an_empty_plan() -> None:
    todo = plan(IN_SYNC, DESIRED)
    assert not todo.changes and str(todo.changes) == "no changes" and len(todo.changes) == 0
    assert todo.route_puts == () and todo.neighbour_puts == () and todo.fdb_puts == ()
    assert todo.route_deletes == () and todo.neighbour_deletes == () and todo.fdb_deletes == ()


def test_changed_entries_are_replaced_and_stale_ones_deleted() -> None:
    current = Current(
        ((Route(NET("10.244.2.0/24"), DEV, IP("10.244.2.1"), onlink=True), 0), (route(3), 50), (route(4), 0)),
        (neigh(2, M4), neigh(3, M3), neigh(4, M4)),
        (fdb(M2, "192.168.1.99"), fdb(M3, "192.168.1.13"), fdb(M3, "192.168.1.77"), fdb(M4, "192.168.1.14")),
    )
    todo = plan(current, DESIRED)
    assert todo.route_puts == (route(2), route(3))
    assert todo.route_deletes == ((route(3), 50), (route(4), 0))
    assert todo.neighbour_puts == (neigh(2, M2),) and todo.neighbour_deletes == (neigh(4, M4),)
    assert todo.fdb_puts == (fdb(M2, "192.168.1.12"),)
    assert set(todo.fdb_deletes) == {fdb(M2, "192.168.1.99"), fdb(M3, "192.168.1.77"), fdb(M4, "192.168.1.14")}
    assert todo.changes.of("replace", "route") == [
        Change("replace", "route", str(route(2)), "10.244.2.0/24 via 10.244.2.1 dev flannel.1 onlink")
    ]
    assert [str(c) for c in todo.changes.of("delete")] == [
        "delete route 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink metric 50",
        "delete route 10.244.4.0/24 via 10.244.4.0 dev flannel.1 onlink",
        f"delete neigh 10.244.4.0 lladdr {M4} dev flannel.1 permanent",
        f"delete fdb {M4} dev flannel.1 dst 192.168.1.14 self permanent",
    ]
    assert len(todo.changes.of("replace", "fdb")) == 2  # M2 repointed, M3's extra remote dropped


def test_changes_is_a_value() -> None:
    assert Changes() == Changes(()) and not Changes()
    one = Changes((Change("add", "route", "x"),))
    assert one and list(one) == [Change("add", "route", "x")] and str(one) == "add route x"
