"""One node's Service proxy sync: changes → policy → rules → kernel, in time proportional to
what changed.

* Policy and rules are cached per Service: a Service whose object and EndpointSlices are the
  same objects as at the last sync is not decided or rendered again (`decide_service` and
  `render_port` are pure, so the cache is exact). With the source's change hint
  (`Snapshot.changes`, which the Kubernetes source provides) a sync touches only the changed
  Services — no pass over the others at all.
* A partial sync (``partial.py``) writes only the changed ports' chains and edits the shared
  chains rule by rule; a full sync (``full.py``) replaces filter and nat whole, which can lose a
  rule another program writes meanwhile — so only when clew's part is known to differ: after
  any failure, when the fixed rules change (configuration), when too much changed at once to be
  worth editing, when the rules were tampered with (`tampered`). At start, filter and nat are
  first compared with the render (a restarted agent writes nothing when they match). Every
  ``full_sync_period`` (kube-proxy: 1 h) the shared chains are checked; intact, the sync stays
  partial.
* `tampered` (the agent calls it every second) compares what clew owns in the shared chains —
  KUBE-SERVICES, KUBE-NODEPORTS, KUBE-FORWARD, KUBE-FIREWALL…, the canaries and the jumps from
  the built-in chains — with what the last sync left (``guard.py``), reading those chains only
  when the kernel's nftables generation moved since they were last found intact.
* After each sync, UDP conntrack entries that still point at removed endpoints are deleted, as
  kube-proxy does, so a DNS client is not black-holed by a stale mapping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clew.model.objects import EndpointSlice, Service, Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables import apply, guard, partial
from clew.proxy.iptables.apply import IptablesKernel, KernelError
from clew.proxy.iptables.apply import conntrack as conntrack  # re-exported: see apply.__all__
from clew.proxy.iptables.render import PortRules, Rendered, assemble, render_port
from clew.proxy.node_settings import node_config
from clew.proxy.policy import LARGE_CLUSTER_ENDPOINTS, PortPolicy, decide_service, node_zone, slices_by_service
from clew.proxy.stale_flows import delete_stale, stale_udp_flows

log = logging.getLogger("clew.proxy")
FULL_SYNC_PERIOD = 3600.0
PARTIAL_LIMIT = 0.2  # past this share of ports changed, a full sync is cheaper than editing


@dataclass
class SyncResult:
    ok: bool
    seconds: float
    service_ports: int
    rules: int
    error: str | None = None
    full: bool = False
    changed_ports: int = 0
    conntrack_deleted: int = 0
    rules_by_table: dict[str, int] = field(default_factory=dict)  # owned after the sync (…_iptables_total)
    written_by_table: dict[str, int] = field(default_factory=dict)  # written by this sync (…_iptables_last)
    wrote: bool = True  # False: nothing was written (a full sync found the kernel already as rendered)
    foreign_commits: int = 0  # others' commits inside a full sync's replace window (see apply.FullSync)
    cleanup_failed: bool = False  # removing the other mode's rules failed (…_nftables_cleanup_failures_total)
    rejected: tuple[tuple[str, str], ...] = ()  # (port key, reason): ports the mode cannot express, left out


def _count(p: PortRules) -> int:
    return len(p.chain_rules) + len(p.nat_top_rules) + len(p.filter_rules)


def _filter_count(p: PortRules) -> int:
    return len(p.filter_rules)


def _fixed_counts(r: Rendered) -> dict[str, int]:
    return {"filter": len(r.filter_head) + len(r.filter_tail), "nat": len(r.nat_head) + len(r.nat_tail)}


def _written(text: str) -> dict[str, int]:
    """Rules a restore payload writes (``-A`` and ``-I`` lines), per table."""
    counts: dict[str, int] = {}
    for section in ("\n" + text).split("\n*")[1:]:
        table, _, body = section.partition("\n")
        body = "\n" + body
        counts[table.strip()] = body.count("\n-A ") + body.count("\n-I ")
    return counts


def _render_order(key: str) -> tuple[str, str]:
    """The order `render` writes ports in (by service port name, then protocol), from a port key
    ``spn/proto``: a full sync loads exactly what ``clew render`` prints."""
    spn, _, proto = key.rpartition("/")
    return spn, proto


@dataclass
class _Cached:
    """One Service's decisions and rules, valid while its objects are the same."""

    service: Service
    slices: tuple[EndpointSlice, ...]
    policies: list[PortPolicy]
    rules: list[PortRules] | None = None
    quiet: bool = False
    endpoints: int = 0  # across its ports: for large cluster mode without a second pass

    def __post_init__(self) -> None:
        self.endpoints = sum(len(p.endpoints) for p in self.policies)


@dataclass
class ProxySyncer:
    """``netns`` names the node's namespace (``""``: this process's own); ``kernel`` is what the
    rules are written to — by default the real one there (`apply.kernel_for`), in tests a fake
    (``clew.fakes.iptables.FakeIptables``)."""

    netns: str
    config: ProxyConfig
    clock: Callable[[], float] = time.monotonic
    full_sync_period: float = FULL_SYNC_PERIOD
    kernel: IptablesKernel | None = None
    generation: Callable[[], int] | None = None  # the ruleset generation; default: nftables' (real kernel)
    needs_full: bool = True
    last_policies: list[PortPolicy] = field(default_factory=list)
    _applied: dict[str, PortRules] = field(default_factory=dict)  # what the kernel holds, per port
    _applied_policies: dict[str, PortPolicy] = field(default_factory=dict)
    _rendered: Rendered | None = None
    _last_full: float = 0.0
    _services: dict[str, _Cached] = field(default_factory=dict)
    _endpoints: int = 0  # over all cached Services: large cluster mode without a scan
    _rules_total: int = 0
    _expected: guard.Expected | None = None  # the guarded chains after the last sync (built lazily)
    _verified_gen: int | None = None  # the generation at which they were last found as expected
    _suspect: bool = False  # the kernel is known to differ (tampered, a failed sync): replace, no verify
    _seen_shared: guard.Seen = field(default_factory=dict)  # chains the guard found equal (guard.compare)
    _seen_whole: guard.Seen = field(default_factory=dict)  # … and the full sync's check
    _filter_total: int = 0  # of _rules_total, the per-port rules in the filter table
    _base: ProxyConfig | None = None  # the configuration as given, before the Node completes it

    def __post_init__(self) -> None:
        self._kernel: IptablesKernel = self.kernel if self.kernel is not None else apply.kernel_for(self.netns)
        self._generation = self.generation
        if self._generation is None and self.kernel is None:
            self._generation = apply.generation_for(self.netns)

    def request_full(self) -> None:
        """The next sync is a full one that replaces the tables (the kernel is known to differ)."""
        self.needs_full = self._suspect = True

    def intact(self) -> bool:
        """Are clew's rules in the shared chains as the last sync left them?"""
        return not self.tampered()

    def tampered(self) -> list[guard.Difference]:
        """What changed in the chains clew shares with the system since the last sync (empty:
        nothing, or no sync to compare with yet). Costs one netlink round trip when the ruleset
        generation has not moved; otherwise a read of the guarded chains (~0.15 s at 10k
        Services, see ``guard.py``). A read that fails is logged and tried again at the next
        check, not taken for tampering: replacing the tables then could lose others' writes,
        and iptables-nft's reads fail mostly while someone writes back to back (each read starts
        over when the generation moves)."""
        if self.needs_full or self._rendered is None:
            return []
        try:
            return self._shared_diffs()
        except KernelError as e:
            log.warning("cannot read the shared chains, trying again later: %s", e)
            return []

    def _shared_diffs(self) -> list[guard.Difference]:
        """`tampered` without its guards; raises `KernelError` when a chain cannot be read."""
        gen = None
        if self._generation is not None:
            try:
                gen = self._generation()
            except KernelError as e:
                log.warning("cannot read the ruleset generation, reading the chains instead: %s", e)
        if gen is not None and gen == self._verified_gen:
            return []
        if self._expected is None:
            self._expected = guard.expected(assemble(list(self._applied.values()), self.config))
        read = apply.read_chains(self._kernel, self._expected.reads())
        diffs = guard.compare(self._expected, read, self._seen_shared)
        if not diffs:
            self._verified_gen = gen
        return diffs

    def _gen_or_none(self) -> int | None:
        if self._generation is None:
            return None
        try:
            return self._generation()
        except KernelError:
            return None

    def _own_commits_only(self, before: int, payload: str) -> int | None:
        """The generation after our restore of ``payload``, when nobody else committed since
        ``before`` (it moved by exactly our tables' commits): the kernel then holds exactly the
        verified state plus this restore, so the guard need not read the chains again (at 10k
        Services that read costs ~0.5 s after every partial sync)."""
        after = self._gen_or_none()
        commits = sum(1 for line in payload.splitlines() if line == "COMMIT")
        return after if after is not None and after - before == commits else None

    def _periodic_check(self) -> bool | None:
        """The periodic full sync's check: True when the shared chains are intact (the sync can
        stay partial), False when they differ (replace the tables), None when they cannot be
        read (put the full sync off until the next sync)."""
        try:
            return not self._shared_diffs()
        except KernelError as e:
            log.warning("periodic full sync put off: cannot read the shared chains: %s", e)
            return None

    def sync(self, snapshot: Snapshot) -> SyncResult:
        start = self.clock()
        periodic = start - self._last_full >= self.full_sync_period
        # checked before anything below updates the applied state in place: the kernel should
        # still hold the last sync's rules
        check = self._periodic_check() if periodic and not self.needs_full and self._rendered is not None else False
        config = self._node_config(snapshot)
        reconfigured = config != self.config
        if reconfigured:
            self.config, self.needs_full = config, True
            self._services.clear()
        step_hint = self._incremental(snapshot) if not self.needs_full else None
        if step_hint is not None:
            policies, ports = self._applied_policies, self._applied  # updated in place
            old_ports, old_policies, new_keys = step_hint
            changed = len(set(old_ports) | new_keys)
        else:
            policies, ports = self._decide_and_render(snapshot)
            old_ports, old_policies, new_keys = self._applied, self._applied_policies, None
            changed = sum(1 for k, p in ports.items() if old_ports.get(k) is not p) + sum(
                1 for k in old_ports if k not in ports
            )
        fixed = assemble((), config)
        too_many = changed > max(50, PARTIAL_LIMIT * max(len(ports), 1))
        known = self.needs_full or partial.needs_full(self._rendered, fixed) or too_many
        full = known or (periodic and check is not None)  # unreadable: put off to the next sync
        # Replacing the tables can lose a rule another program writes meanwhile (``full.py``), so
        # a full sync replaces them only when clew's part is known to differ. The periodic one
        # first checks the shared chains (the guard's check): intact, it is a partial sync.
        # A restarted agent's first sync compares all of filter and nat with the render.
        periodic_ok = full and not known and check is True
        verify = self._rendered is None and not self._suspect
        # the guard compares with this sync's result; it stays verified without a read when only
        # this sync's own restore moved the generation (see `_own_commits_only`)
        was_verified, verified_after = self._verified_gen, None
        self._expected, self._verified_gen = None, None
        rendered = fixed
        outcome = apply.FullSync(False)
        written: dict[str, int] = {}
        try:
            if full and not periodic_ok:
                rendered = assemble([ports[k] for k in sorted(ports, key=_render_order)], config)
                if self._last_full == 0.0:
                    for table in apply.remove_other_mode_leftovers(self._kernel):
                        log.info("removed the nftables mode's leftover table %s", table)
                outcome = apply.full_sync(
                    self._kernel, rendered, verify=verify, generation=self._generation, seen=self._seen_whole
                )
                if outcome.foreign_commits:
                    log.warning(
                        "%d commit(s) by another program landed while the full sync replaced filter and nat:"
                        " a rule it wrote or deleted then may be lost or back",
                        outcome.foreign_commits,
                    )
                self._last_full = self.clock()
            else:
                new_part = ports if new_keys is None else {k: ports[k] for k in new_keys}
                step = partial.plan(old_ports, new_part)
                if step.text is not None:
                    before = self._gen_or_none() if was_verified is not None else None
                    apply.partial_sync(self._kernel, step.text)
                    outcome = apply.FullSync(True)
                    written = _written(step.text)
                    if before is not None and before == was_verified:
                        verified_after = self._own_commits_only(before, step.text)
                else:
                    verified_after = was_verified  # nothing written: what was verified still is
                if periodic_ok:
                    self._last_full = self.clock()
        except KernelError as e:
            self.needs_full = self._suspect = True
            log.error("%s sync failed: %s", "full" if full else "partial", e)
            return SyncResult(False, self.clock() - start, len(ports), 0, str(e), full, changed)
        deleted = self._clear_stale_udp(old_policies, policies)
        self._verified_gen = verified_after
        self.needs_full = False
        if full:
            self._suspect = False
        self._applied, self._applied_policies, self._rendered = ports, policies, rendered
        self.last_policies = list(policies.values())
        if new_keys is None:
            self._rules_total = sum(_count(p) for p in ports.values())
            self._filter_total = sum(_filter_count(p) for p in ports.values())
        else:
            self._rules_total += sum(_count(ports[k]) for k in new_keys) - sum(_count(p) for p in old_ports.values())
            self._filter_total += sum(_filter_count(ports[k]) for k in new_keys) - sum(
                _filter_count(p) for p in old_ports.values()
            )
        base = _fixed_counts(fixed)
        owned = {
            "filter": base["filter"] + self._filter_total,
            "nat": base["nat"] + self._rules_total - self._filter_total,
        }
        replaced = full and not periodic_ok and outcome.wrote
        written = owned if replaced else {"filter": written.get("filter", 0), "nat": written.get("nat", 0)}
        return SyncResult(
            True, self.clock() - start, len(ports), self._rules_total, None, full, changed, deleted, owned, written,
            wrote=outcome.wrote, foreign_commits=outcome.foreign_commits,
        )  # fmt: skip

    def _incremental(self, snapshot: Snapshot) -> tuple[dict[str, PortRules], dict[str, PortPolicy], set[str]] | None:
        """With the source's change hint: decide and render only the changed Services, updating
        the applied maps in place; returns (old rules and policies of the touched ports, the
        touched ports' new keys). None when a full pass is needed instead (no hint, a Node
        changed, nothing applied yet, or large cluster mode flips)."""
        changes = snapshot.changes
        if changes is None or changes.nodes_changed or not self._applied:
            return None
        quiet = self._endpoints > LARGE_CLUSTER_ENDPOINTS
        old_ports: dict[str, PortRules] = {}
        old_policies: dict[str, PortPolicy] = {}
        new_keys: set[str] = set()
        zone = node_zone(snapshot, self.config)
        for key in changes.services:
            old = self._services.pop(key, None)
            if old is not None:
                self._endpoints -= old.endpoints
                for p, r in zip(old.policies, old.rules or (), strict=False):
                    old_ports[r.key] = self._applied.pop(r.key, r)
                    old_policies[r.key] = self._applied_policies.pop(r.key, p)
            svc = changes.service_index.get(key)
            if svc is None:
                continue
            slices = tuple(sorted(changes.slice_index.get(key, ()), key=lambda sl: sl.name))  # as the full pass
            entry = _Cached(svc, slices, decide_service(svc, list(slices), self.config, zone))
            entry.rules, entry.quiet = [render_port(p, self.config, quiet) for p in entry.policies], quiet
            self._services[key] = entry
            self._endpoints += entry.endpoints
            for p, r in zip(entry.policies, entry.rules, strict=True):
                self._applied[r.key], self._applied_policies[r.key] = r, p
                new_keys.add(r.key)
        if (self._endpoints > LARGE_CLUSTER_ENDPOINTS) != quiet:
            self.needs_full = True  # every port's comments change: a full pass and a full sync
            return None
        return old_ports, old_policies, new_keys

    def payload(self) -> str:
        """The full restore payload of what the kernel holds now (for comparisons and benches)."""
        return assemble([self._applied[k] for k in sorted(self._applied, key=_render_order)], self.config).text()

    def _decide_and_render(self, snapshot: Snapshot) -> tuple[dict[str, PortPolicy], dict[str, PortRules]]:
        """Per port key: policy and rules, computed again only for Services whose objects changed
        (and for all when large cluster mode flips, since it drops comments everywhere)."""
        by_service = slices_by_service(snapshot)
        zone = node_zone(snapshot, self.config)
        entries: list[_Cached] = []
        for svc in snapshot.services:
            key = svc.key
            slices = tuple(by_service.get(key, ()))
            hit = self._services.get(key)
            if hit is None or (hit.service is not svc and hit.service != svc) or hit.slices != slices:
                hit = _Cached(svc, slices, decide_service(svc, list(slices), self.config, zone))
                self._services[key] = hit
            entries.append(hit)
        if len(self._services) != len(entries):
            live = {e.service.key for e in entries}
            for gone in [k for k in self._services if k not in live]:
                del self._services[gone]
        self._endpoints = sum(e.endpoints for e in entries)
        quiet = self._endpoints > LARGE_CLUSTER_ENDPOINTS
        policies: dict[str, PortPolicy] = {}
        ports: dict[str, PortRules] = {}
        for e in entries:
            if e.rules is None or e.quiet != quiet:
                e.rules, e.quiet = [render_port(p, self.config, quiet) for p in e.policies], quiet
            for p, r in zip(e.policies, e.rules, strict=True):
                policies[r.key] = p
                ports[r.key] = r
        return policies, ports

    def _clear_stale_udp(self, before: dict[str, PortPolicy], policies: dict[str, PortPolicy]) -> int:
        """kube-proxy's conntrack cleanup (`clew.proxy.stale_flows`)."""
        return delete_stale(stale_udp_flows(before, policies), self._kernel.delete_udp_flows)

    def _node_config(self, snapshot: Snapshot) -> ProxyConfig:
        """The configuration completed with this node's Node object, by `clew render`'s function;
        from the configuration given at construction each time, so a changed Node is read again."""
        if self._base is None:
            self._base = self.config
        return node_config(self._base, snapshot)
