"""One node's Service proxy sync in nftables mode: changes → policy → elements → kernel, in one
atomic transaction per sync, in time proportional to what changed.

* **Decide and render once per changed Service.** As in iptables mode (``proxy/sync.py``), a
  Service whose object and EndpointSlices are the same as at the last sync is neither decided
  nor rendered again (`decide_service` and the renderer's `render_port` are pure); with the
  source's change hint (`Snapshot.changes`) a sync does not even look at the others.
* **Partial sync** (``plan.py``): the changed ports' elements are diffed against what the last
  sync wrote — kept in memory (`Mirror`), never read back: ``delete element`` for keys that go
  or change, ``add element`` for new ones; a group map and its rule appear and go with the
  ports that use them; affinity Services' own chains and sets are written or deleted. One
  ``run()``: all or nothing.
* **Full sync**: one transaction that replaces clew's table with the render (the renderer's
  script: ``add table`` + ``delete table`` + everything): at the first sync, after any failure,
  when the configuration (hence the fixed part) changes, when the table was tampered with. The
  first one also removes iptables mode's rules (clew's and kube-proxy's KUBE-* chains and their
  jumps): the two modes must not both DNAT.
* **Periodic check** (every ``full_sync_period``, kube-proxy's 1 h full sync): the tamper check's
  reads, whatever the generation says; the table is replaced only when they find a difference,
  so affinity entries survive the hour. (``verify_elements`` also compares every element with
  the mirror: seconds at 10k Services, more than a full sync — off by default.)
* **Tamper check** (`tampered`, the agent calls it every second): the ruleset generation is
  read (one netlink round trip); only when someone else committed since the table was last
  found intact are the table's chains listed (``nft list chains``: no elements are read, ~5 ms
  beside 200k elements where ``list chain`` costs 3 s) and the table's rules dumped over
  netlink (`clew.kernel.nft_rules`: no elements either): the table or a chain gone, or a fixed
  chain's rules other than the render's number or our last commit's bytes, means a full sync.
* **Destination clashes** (two ports claiming one ``ip . proto . port``): decided as `render`
  does — the first port in render order keeps it — re-deciding only the ports connected to a
  change (``claims.py``).
* **Bad input**: a port the layout cannot express (`Rejected`) is left out, logged once while it
  stays, and reported in `SyncResult.rejected` (the agent counts it); every other port keeps its
  elements.
* **Conntrack**: UDP flows to removed endpoints are deleted after the sync, as in iptables mode
  (`clew.proxy.stale_flows`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from clew.model.objects import EndpointSlice, Service, Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.guard import Difference
from clew.proxy.nftables.apply import KernelError, NftKernel
from clew.proxy.nftables.claims import Claims, render_order
from clew.proxy.nftables.layout import FAMILY, TABLE, Group, NftRendered, PortNft, Rejected
from clew.proxy.nftables.plan import Mirror, plan
from clew.proxy.node_settings import node_config
from clew.proxy.policy import PortPolicy, decide_service, node_zone, slices_by_service
from clew.proxy.stale_flows import delete_stale, stale_udp_flows
from clew.proxy.sync import FULL_SYNC_PERIOD, SyncResult

log = logging.getLogger("clew.proxy")
_T = f"{FAMILY} {TABLE}"


class NftRenderer(Protocol):
    """What the sync needs of the renderer (``proxy/nftables/render.py``; tests may pass another)."""

    def render_port(self, policy: PortPolicy, config: ProxyConfig) -> PortNft | Rejected: ...

    def fixed(self, config: ProxyConfig, groups: Iterable[Group]) -> Sequence[str]: ...

    def destinations(self, p: PortPolicy) -> tuple[str, ...]: ...

    def regroup(self, old: Iterable[Group], new: Iterable[Group]) -> tuple[Sequence[str], Sequence[str]]: ...

    def script(self, rendered: NftRendered) -> str: ...


def default_renderer() -> NftRenderer:
    from clew.proxy.nftables import render

    return render


def chain_names(commands: Iterable[str]) -> set[str]:
    """Chains an nft script adds (``add chain ip clew NAME …``)."""
    prefix = f"add chain {_T} "
    return {line[len(prefix) :].split(" ", 1)[0] for line in commands if line.startswith(prefix)}


def listed_chains(listing: dict[str, Any]) -> set[str] | None:
    """The chains of clew's table in ``nft -j list chains`` output; None when the table is not there."""
    names: set[str] = set()
    table = False
    for item in listing.get("nftables", ()):
        if not isinstance(item, dict):
            continue
        t = item.get("table")
        if isinstance(t, dict) and t.get("family") == FAMILY and t.get("name") == TABLE:
            table = True
        c = item.get("chain")
        if isinstance(c, dict) and c.get("family") == FAMILY and c.get("table") == TABLE:
            table = True
            names.add(str(c.get("name")))
    return names if table else None


@dataclass
class _Cached:
    """One Service's decisions and renders, valid while its objects are the same."""

    service: Service
    slices: tuple[EndpointSlice, ...]
    policies: list[PortPolicy]
    ports: list[PortNft | Rejected]


@dataclass
class NftSyncer:
    """``netns`` names the node's namespace (``""``: this process's own). ``kernel`` is what the
    table is written to (default: the real one there); ``generation`` the ruleset generation
    (default: the real one when ``kernel`` is the default); ``delete_udp_flows`` the conntrack
    cleanup (default: the real one); ``leave_iptables_mode`` removes iptables mode's rules at the
    first sync (default: the real one; the CLI passes it, tests a fake's)."""

    netns: str
    config: ProxyConfig
    clock: Callable[[], float] = time.monotonic
    full_sync_period: float = FULL_SYNC_PERIOD
    kernel: NftKernel | None = None
    generation: Callable[[], int] | None = None
    delete_udp_flows: Callable[..., int] | None = None
    rules: Callable[[], dict[str, list[bytes]]] | None = None  # the table's rules per chain (tamper check)
    leave_iptables_mode: Callable[[], list[str]] | None = None
    renderer: NftRenderer | None = None
    verify_elements: bool = False  # the periodic check also reads every element (seconds; see _verify)
    needs_full: bool = True
    rejected: dict[str, Rejected] = field(default_factory=dict)  # port key → why it is left out
    cleanup_failures: int = 0  # times removing the other mode's rules failed (…_nftables_cleanup_failures_total)
    _mirror: Mirror = field(default_factory=Mirror)
    _policies: dict[str, PortPolicy] = field(default_factory=dict)  # port key → policy, as applied
    _candidates: dict[str, PortNft] = field(default_factory=dict)  # every port render_port could express
    _candidate_policies: dict[str, PortPolicy] = field(default_factory=dict)
    _claims: Claims = field(default_factory=Claims)  # their destinations (clashes: see claims.py)
    _services: dict[str, _Cached] = field(default_factory=dict)
    _fixed: tuple[str, ...] = ()  # the fixed part the kernel holds (for its chain names)
    _last_full: float = 0.0
    _left_iptables: bool = False
    _verified_gen: int | None = None
    _base: ProxyConfig | None = None
    _logged: set[tuple[str, str]] = field(default_factory=set)
    _cleanup_failed: bool = False
    _baseline: dict[str, list[bytes]] | None = None  # the fixed chains' rules as our last commit left them

    def __post_init__(self) -> None:
        from clew.proxy.nftables import apply

        real = self.kernel is None
        self._own_kernel: NftKernel | None = None  # opened at first use: a missing namespace fails a sync
        if self.generation is None and real:
            self.generation = apply.generation_for(self.netns)
        if self.rules is None and real:
            self.rules = apply.rules_for(self.netns)
        if self.delete_udp_flows is None:
            self.delete_udp_flows = apply.conntrack_for(self.netns) if real else (lambda **_: 0)
        self._renderer = self.renderer or default_renderer()

    @property
    def _kernel(self) -> NftKernel:
        if self.kernel is not None:
            return self.kernel
        if self._own_kernel is None:
            from clew.proxy.nftables import apply

            self._own_kernel = apply.kernel_for(self.netns)
        return self._own_kernel

    def close(self) -> None:
        """Release the nftables context this syncer opened (not one it was given)."""
        if self._own_kernel is not None:
            self._own_kernel.close()
            self._own_kernel = None

    # -- the agent's surface (as `ProxySyncer`)

    def request_full(self) -> None:
        """The next sync replaces the table (the kernel is known to differ)."""
        self.needs_full = True

    def intact(self) -> bool:
        return not self.tampered()

    def tampered(self) -> list[Difference]:
        """What changed in clew's table since the last sync (empty: nothing, or no sync yet):
        the table gone, a chain gone, a fixed chain's rules other than the render's (their
        number) or than our last commit left them (their bytes). One netlink round trip when the
        generation has not moved by someone else's commit; otherwise ``nft list chains`` (no
        elements read) and a netlink dump of the table's rules (no elements either). A read
        that fails is logged and tried again at the next check."""
        if self.needs_full or not self._fixed:
            return []
        try:
            return self._read_diffs()
        except KernelError as e:
            log.warning("cannot read clew's nftables table, trying again later: %s", e)
            return []

    def _read_diffs(self) -> list[Difference]:
        """`tampered` without its guards; raises `KernelError` when the table cannot be read."""
        gen = self._gen()
        if gen is not None and gen == self._verified_gen:
            return []
        listed = listed_chains(self._kernel.list_json("chains"))
        dump = self.rules() if self.rules is not None and listed is not None else None
        if listed is None:
            return [Difference(TABLE, "*", "table ip clew is gone")]
        want = chain_names(self._fixed) | {c.name for p in self._mirror.ports.values() for c in p.chains}
        diffs = [Difference(TABLE, name, "chain is gone") for name in sorted(want - listed)]
        if dump is not None:
            diffs += self._rule_diffs(dump, listed)
        if not diffs:
            self._verified_gen = gen
        return diffs

    def _check_now(self) -> bool | None:
        """The periodic check by default: the tamper check's reads whatever the generation says
        (chains listed, rules dumped over netlink: milliseconds, no element read)."""
        self._verified_gen = None
        try:
            return not self._read_diffs()
        except KernelError as e:
            log.warning("periodic check put off: cannot read clew's table: %s", e)
            return None

    def _verify(self) -> bool | None:
        """The thorough periodic check (``verify_elements``): does the whole table hold what the
        syncs wrote — every chain, the number of rules in each, every element with its value and
        comment (affinity sets' and the fixed part's own elements aside)? None when it cannot be
        read (tried at the next sync). Costly: ``nft -j list table`` of 10k Services takes 3.7 s
        and its parse 0.9 s (more than a full sync's 3.5 s; measured), so it is off by default;
        the tests use it to prove that the mirror is what the kernel holds."""
        from clew.proxy.nftables import apply

        try:
            state = apply.table_state(self._kernel)
        except KernelError as e:
            log.warning("periodic check put off: cannot read clew's table: %s", e)
            return None
        if state is None:
            log.warning("periodic check: table ip clew is gone")
            return False
        fixed_now = self._fixed_for_now()
        chains = {c.name: len(c.rules) for p in self._mirror.ports.values() for c in p.chains}
        for line in fixed_now:
            if line.startswith(f"add rule {_T} "):
                name = line.split(" ", 5)[4]
                chains[name] = chains.get(name, 0) + 1
        chains.update((c, chains.get(c, 0)) for c in chain_names(fixed_now))
        if state.rule_counts != chains:
            odd = sorted(
                c for c in chains.keys() | state.rule_counts.keys() if chains.get(c) != state.rule_counts.get(c)
            )
            log.warning("periodic check: chains differ from the syncs' (%s)", ", ".join(odd[:5]))
            return False
        skip = {line.split(" ", 5)[4] for line in fixed_now if line.startswith(f"add element {_T} ")}
        skip |= {s.name for p in self._mirror.ports.values() for s in p.sets}
        want: dict[str, dict[str, tuple[str | None, str]]] = {}
        for (name, key), held in self._mirror.held.items():
            want.setdefault(name, {})[key] = (held.value, held.comment)
        for name in state.sets.keys() | want.keys():
            if name in skip:
                continue
            got = {k: (x.value, x.comment) for k, x in state.elements.get(name, {}).items()}
            if got != want.get(name, {}):
                log.warning("periodic check: the elements of %s differ from the syncs'", name)
                return False
        return True

    def _rule_diffs(self, dump: dict[str, list[bytes]], listed: set[str]) -> list[Difference]:
        fixed_now = self._renderer.fixed(self.config, self._mirror.group_set)
        counts = Counter(line.split(" ", 5)[4] for line in fixed_now if line.startswith(f"add rule {_T} "))
        diffs = []
        chains = sorted(chain_names(fixed_now))
        for chain in chains:
            if chain not in listed:
                continue  # said already: the chain is gone
            got = dump.get(chain, [])
            if len(got) != counts.get(chain, 0):
                diffs.append(Difference(TABLE, chain, f"{len(got)} rules where the render has {counts.get(chain, 0)}"))
            elif self._baseline is not None and self._baseline.get(chain, []) != got:
                diffs.append(Difference(TABLE, chain, "rules changed"))
        if not diffs and self._baseline is None:
            self._baseline = {c: dump.get(c, []) for c in chains}
        return diffs

    def payload(self) -> str:
        """The full load of what the kernel holds now (for comparisons and benches)."""
        return self._renderer.script(self._rendered())

    @property
    def last_policies(self) -> list[PortPolicy]:
        """The policies of the ports the kernel holds (built when asked: O(ports))."""
        return list(self._policies.values())

    def sync(self, snapshot: Snapshot) -> SyncResult:
        start = self.clock()
        config = node_config(self._base_config(), snapshot)
        if config != self.config:
            self.config, self.needs_full = config, True
            self._services.clear()
        if not self.needs_full and start - self._last_full >= self.full_sync_period:
            intact = self._verify() if self.verify_elements else self._check_now()
            if intact is True:
                self._last_full = start
            elif intact is False:
                self.needs_full = True
        full = self.needs_full
        touched = None if full else self._incremental(snapshot)
        if touched is None:
            self._decide_all(snapshot)
            scope: Iterable[str] = set(self._candidates) | set(self._mirror.ports)
        else:
            scope = self._claims.component(touched) | touched
        changes = self._arbitrate(scope)
        before: dict[str, PortPolicy] = {}
        for k, new in changes.items():
            if k in self._policies:
                before[k] = self._policies.pop(k)
            if new is not None:
                self._policies[k] = self._candidate_policies[k]
        self._cleanup_failed = False
        try:
            if full:
                self._leave_iptables_mode()
                wrote = self._full({k: self._candidates[k] for k in self._policies})
            else:
                wrote = self._partial(changes)
        except KernelError as e:
            self.needs_full = True
            self._verified_gen = None
            log.error("%s sync failed: %s", "full" if full else "partial", e)
            return SyncResult(
                False, self.clock() - start, len(self._policies), 0, str(e), full, len(changes),
                cleanup_failed=self._cleanup_failed,
            )  # fmt: skip
        self.needs_full = False
        deleted = delete_stale(stale_udp_flows(before, self._policies), self._deleter)
        owned = len(self._mirror.held) + len(self._fixed)
        return SyncResult(
            True, self.clock() - start, len(self._mirror.ports), owned, None, full, len(changes), deleted,
            {TABLE: owned}, {TABLE: wrote}, wrote=wrote > 0,
            rejected=tuple((r.key, r.reason) for r in self.rejected.values()), cleanup_failed=self._cleanup_failed,
        )  # fmt: skip

    # -- writing

    def _full(self, ports: dict[str, PortNft]) -> int:
        ordered = [ports[k] for k in sorted(ports, key=render_order)]
        mirror = Mirror.of(ordered)
        fixed = tuple(self._renderer.fixed(self.config, mirror.group_set))
        rendered = NftRendered(fixed, mirror.group_set, tuple(ordered), tuple(self.rejected.values()))
        before = self._gen()
        self._kernel.run(self._renderer.script(rendered))  # replaces the table: add + delete + all
        self._mirror, self._fixed = mirror, fixed
        self._after_commit(before, full=True, fixed_rules=True)
        self._last_full = self.clock()
        return len(fixed) + len(mirror.held) + sum(len(c.rules) for p in ordered for c in p.chains)

    def _partial(self, changes: dict[str, PortNft | None]) -> int:
        step = plan(self._mirror, changes, self._renderer.regroup)
        if not step.commands:
            return 0
        before = self._gen()
        self._kernel.run(step.script())
        self._after_commit(before, full=False, fixed_rules=step.groups_changed)
        return len(step.commands)

    def _after_commit(self, before: int | None, *, full: bool, fixed_rules: bool) -> None:
        """The table stays verified (no read at the next tamper check) when only our commit moved
        the generation: after a full sync it holds just what we wrote; after a partial one, what
        was verified plus our change. When our commit rewrote fixed chains' rules, their new
        bytes are the baseline — read now if the commit was ours alone, else at the next check
        that finds their number right."""
        after = self._gen()
        ours = before is not None and after is not None and after - before == 1
        self._verified_gen = after if ours and (full or before == self._verified_gen) else None
        if fixed_rules:
            self._baseline = None
            if ours and self.rules is not None:
                try:
                    dump = self.rules()
                except KernelError:
                    return
                if self._gen() == after:
                    self._baseline = {c: dump.get(c, []) for c in chain_names(self._fixed_for_now())}

    def _fixed_for_now(self) -> Sequence[str]:
        return self._renderer.fixed(self.config, self._mirror.group_set)

    def _leave_iptables_mode(self) -> None:
        if self._left_iptables or self.leave_iptables_mode is None:
            return
        try:
            for what in self.leave_iptables_mode():
                log.info("removed iptables mode's %s", what)
            self._left_iptables = True
        except KernelError as e:
            self.cleanup_failures += 1
            self._cleanup_failed = True
            log.error("cannot remove iptables mode's rules (trying again at the next full sync): %s", e)

    # -- deciding

    def _base_config(self) -> ProxyConfig:
        if self._base is None:
            self._base = self.config
        return self._base

    def _render(self, svc: Service, slices: tuple[EndpointSlice, ...], zone: str | None) -> _Cached:
        policies = decide_service(svc, list(slices), self.config, zone)
        return _Cached(svc, slices, policies, [self._renderer.render_port(p, self.config) for p in policies])

    def _note(self, entry: _Cached, keys: set[str]) -> None:
        """Record one Service's rendered ports as candidates (and their claims); a port the
        layout cannot express is left out and logged once."""
        for p, r in zip(entry.policies, entry.ports, strict=True):
            keys.add(r.key)
            if isinstance(r, Rejected):
                self._reject(r)
                continue
            self.rejected.pop(r.key, None)
            self._candidates[r.key], self._candidate_policies[r.key] = r, p
            self._claims.claim(r.key, tuple(self._renderer.destinations(p)))

    def _reject(self, r: Rejected) -> None:
        self.rejected[r.key] = r
        if (r.key, r.reason) not in self._logged:
            self._logged.add((r.key, r.reason))
            log.warning("nftables mode cannot express %s, left out: %s", r.key, r.reason)

    def _forget(self, key: str) -> None:
        self._candidates.pop(key, None)
        self._candidate_policies.pop(key, None)
        self._claims.claim(key, None)
        self.rejected.pop(key, None)

    def _arbitrate(self, scope: Iterable[str]) -> dict[str, PortNft | None]:
        """The ports of ``scope`` that change in the kernel: a candidate that keeps its
        destinations is loaded, one that clashes with an earlier port is rejected as `render`
        does, a port no longer a candidate goes."""
        scope = set(scope)
        kept, lost = self._claims.arbitrate(scope)
        changes: dict[str, PortNft | None] = {}
        for k in scope:
            if k in lost:
                d, holder = lost[k]
                p = self._candidate_policies[k]
                held = self._candidate_policies[holder].spn  # the words of `render.render`
                why = f"destination {d} is already {held}'s (nft takes one value per map key)"
                why = f"Service port {p.spn} ({p.proto}): {why}"
                self._reject(Rejected(k, p.service_key, why))
            elif k in self._candidates and k in self.rejected:
                del self.rejected[k]  # its clash is over
            new = self._candidates[k] if k in kept else None
            if self._mirror.ports.get(k) is not new:
                changes[k] = new
        return changes

    def _decide_all(self, snapshot: Snapshot) -> None:
        """Every Service's ports as candidates; only changed Services are decided again."""
        by_service = slices_by_service(snapshot)
        zone = node_zone(snapshot, self.config)
        live: set[str] = set()
        self.rejected = {}
        self._candidates, self._candidate_policies, self._claims = {}, {}, Claims()
        keys: set[str] = set()
        for svc in snapshot.services:
            slices = tuple(by_service.get(svc.key, ()))
            hit = self._services.get(svc.key)
            if hit is None or (hit.service is not svc and hit.service != svc) or hit.slices != slices:
                hit = self._services[svc.key] = self._render(svc, slices, zone)
            live.add(svc.key)
            self._note(hit, keys)
        for gone in [k for k in self._services if k not in live]:
            del self._services[gone]

    def _incremental(self, snapshot: Snapshot) -> set[str] | None:
        """With the source's change hint: decide and render only the changed Services; the
        port keys they had and have. None when a full pass is needed (no hint, a Node changed,
        nothing applied yet)."""
        changes = snapshot.changes
        if changes is None or changes.nodes_changed or not self._services:
            return None
        zone = node_zone(snapshot, self.config)
        keys: set[str] = set()
        for key in changes.services:
            old = self._services.pop(key, None)
            if old is not None:
                for r in old.ports:
                    keys.add(r.key)
                    for d in self._claims.dests.get(r.key, ()):  # ports that shared a destination with it
                        keys.update(self._claims.holders.get(d, ()))
                    self._forget(r.key)
            svc = changes.service_index.get(key)
            if svc is None:
                continue
            slices = tuple(sorted(changes.slice_index.get(key, ()), key=lambda sl: sl.name))
            entry = self._services[key] = self._render(svc, slices, zone)
            self._note(entry, keys)
        return keys

    def _rendered(self) -> NftRendered:
        ordered = [self._mirror.ports[k] for k in sorted(self._mirror.ports, key=render_order)]
        groups = self._mirror.group_set
        fixed = tuple(self._renderer.fixed(self.config, groups))
        return NftRendered(fixed, groups, tuple(ordered), tuple(self.rejected.values()))

    def _gen(self) -> int | None:
        if self.generation is None:
            return None
        try:
            return self.generation()
        except KernelError:
            return None

    def _deleter(self, **kw: Any) -> int:
        return self.delete_udp_flows(**kw) if self.delete_udp_flows is not None else 0
