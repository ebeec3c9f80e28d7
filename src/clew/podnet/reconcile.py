"""Move a node's kernel to a backend's desired level: read, diff, apply only the difference.

1. Read what the pod network owns (the backend's :class:`~clew.podnet.desired.Scope`): the
   main table's routes through its device (for host-gw only those inside the cluster network),
   the permanent neighbours and the FDB of ``flannel.<VNI>``.
2. :func:`clew.podnet.diff.plan` the difference (pure).
3. Apply it in at most three processes, in an order that never points a route at a missing
   neighbour: ``ip -batch`` (route deletes, neighbour deletes and replaces), ``bridge -batch``
   (FDB deletes and replaces), ``ip -batch`` (route replaces).

Level, not edge: a node that left the lease set is found as stale entries in step 1, whether
it left a second ago or while the agent was down. Applying the same Desired twice changes
nothing the second time (the returned :class:`~clew.podnet.diff.Changes` is empty).

Kernel access is through ``ip -j`` reads and ``ip``/``bridge -batch`` writes
(:mod:`clew.kernel.iproute` says why not pyroute2): a steady-state reconcile costs one to three
``ip``/``bridge`` reads of a few milliseconds each and no writes.
"""

from __future__ import annotations

from clew.kernel import fdb as kfdb
from clew.kernel import iproute
from clew.kernel import neighbours as kneigh
from clew.kernel import routes as kroutes
from clew.podnet.desired import Desired, FdbEntry, Neighbour, Route, Scope
from clew.podnet.diff import Changes, Current, Plan, plan


def read_current(netns: str, scope: Scope) -> Current:
    """The entries in ``netns`` that ``scope`` owns."""
    routes = tuple(
        (Route(r.dst, r.dev, r.gateway, r.onlink), r.metric)
        for r in kroutes.list_routes(netns)
        if r.dev is not None
        and r.type == "unicast"
        and r.protocol != "kernel"
        and scope.owns_route(r.dst, r.dev, r.protocol)
    )
    neighbours: tuple[Neighbour, ...] = ()
    if scope.neighbour_dev is not None:
        neighbours = tuple(
            Neighbour(n.ip, n.mac, n.dev)
            for n in kneigh.list_neighbours(netns, scope.neighbour_dev)
            if n.permanent and n.mac is not None
        )
    fdb: tuple[FdbEntry, ...] = ()
    if scope.fdb_dev is not None:
        fdb = tuple(FdbEntry(e.mac, e.dev, e.dst) for e in kfdb.list_fdb(netns, scope.fdb_dev) if e.dst is not None)
    return Current(routes, neighbours, fdb)


def reconcile(netns: str, desired: Desired, *, dry_run: bool = False) -> Changes:
    """Bring ``netns`` to ``desired``; returns what changed (with ``dry_run``: what would)."""
    todo = plan(read_current(netns, desired.scope), desired)
    if not dry_run:
        apply(netns, todo)
    return todo.changes


def apply(netns: str, todo: Plan) -> None:
    """Carry out a plan (see the module docstring for the order)."""
    first = [kroutes.delete_command(_kernel_route(r, m)) for r, m in todo.route_deletes]
    first += [kneigh.delete_command(n.ip, n.dev) for n in todo.neighbour_deletes]
    first += [kneigh.replace_command(n.ip, n.mac, n.dev) for n in todo.neighbour_puts]
    iproute.batch(netns, iproute.IP, first, "pod network routes and neighbours")
    bridge = [kfdb.delete_command(kfdb.FdbEntry(e.mac, e.dev, e.dst)) for e in todo.fdb_deletes]
    bridge += [kfdb.replace_command(e.mac, e.dev, e.dst) for e in todo.fdb_puts]
    kfdb.apply(netns, bridge)
    last = [kroutes.replace_command(r.dst, r.dev, r.gateway, onlink=r.onlink) for r in todo.route_puts]
    iproute.batch(netns, iproute.IP, last, "pod network routes")


def _kernel_route(route: Route, metric: int) -> kroutes.Route:
    return kroutes.Route(route.dst, route.dev, route.gateway, route.onlink, metric)
