"""The agent's Prometheus metrics: kube-proxy's names where they exist, clew's own where not.

`ProxyMetrics` holds every metric in a registry of its own (never the process-global one), so
tests and several agents in one process do not collide. `Observer` is the one object the agent
loop talks to: it turns source changes and sync results into metrics and proxy health, as
kube-proxy's change trackers and ``syncProxyRules`` do:

* a source change counts the Services and EndpointSlices it touched (``…_changes_total``), how
  many differ from what the last sync loaded (``…_changes_pending``), queues a health update and
  stamps ``…_last_queued_timestamp_seconds``; EndpointSlices' trigger times are kept for
  ``network_programming_duration_seconds`` (only times after the agent started, like kube-proxy);
* a sync start checks the pending changes out (pending gauges to 0);
* a sync end observes the durations (failed syncs too), and on success marks health updated and
  sets the last-sync timestamp, rule counts per table and Services without local endpoints; on
  failure counts a restore failure (a partial one too, for a partial sync).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from clew.agent.health import IP_FAMILY, ProxyHealth
from clew.model.objects import EndpointSlice, Rejection, Snapshot

if TYPE_CHECKING:
    from clew.proxy.policy import PortPolicy
    from clew.proxy.sync import SyncResult

# ExponentialBuckets(0.001, 2, 15): 1 ms … 16.384 s
DURATION_BUCKETS = tuple(0.001 * 2**i for i in range(15))
# kube-proxy's MergeBuckets starts from a 0 bucket, then 0.25, 0.5, 1…59, 60…115 by 5, 120…300 by 30
PROGRAMMING_BUCKETS = (
    0.0,
    0.25,
    0.5,
    *(float(s) for s in range(1, 60)),
    *(float(s) for s in range(60, 120, 5)),
    *(float(s) for s in range(120, 301, 30)),
)
TABLES = ("filter", "nat")
POLICIES = ("internal", "external")


class ProxyMetrics:
    """Every metric the agent exposes, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None, *, mode: str = "iptables") -> None:
        """``mode``: the proxy mode; each mode's own metrics are registered only in it, as
        kube-proxy's ``RegisterMetrics(mode)`` does (the other mode's are kept unregistered)."""
        self.mode = mode
        disable_created_metrics()  # type: ignore[no-untyped-call]  # Go clients expose no _created series
        r = self.registry = registry or CollectorRegistry()
        fam = ("ip_family",)
        # Label names in byte order: Go's client sorts them, so the exposition reads the same.
        by_table, by_policy = ("ip_family", "table"), ("ip_family", "traffic_policy")

        def hist(name: str, doc: str, buckets: tuple[float, ...] = DURATION_BUCKETS) -> Histogram:
            return Histogram(f"kubeproxy_{name}", doc, fam, buckets=buckets, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = fam) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = fam, *, only: str | None = None) -> Counter:
            return Counter(name, doc, labels, registry=r if only in (None, mode) else None)

        def table_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, by_table, registry=r if mode == "iptables" else None)

        self.sync_duration = hist("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds")
        self.sync_full_duration = hist(
            "sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs"
        )
        self.sync_partial_duration = hist(
            "sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs"
        )
        self.network_programming = hist(
            "network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            PROGRAMMING_BUCKETS,
        )
        prefix = "kubeproxy_sync_proxy_rules_"
        self.last_sync = gauge(f"{prefix}last_timestamp_seconds", "The last time proxy rules were successfully synced")
        self.last_queued = gauge(
            f"{prefix}last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued"
        )
        self.endpoint_changes_pending = gauge(
            f"{prefix}endpoint_changes_pending", "Pending proxy rules Endpoint changes", ()
        )
        self.endpoint_changes_total = counter(
            f"{prefix}endpoint_changes_total", "Cumulative proxy rules Endpoint changes", ()
        )
        self.service_changes_pending = gauge(
            f"{prefix}service_changes_pending", "Pending proxy rules Service changes", ()
        )
        self.service_changes_total = counter(
            f"{prefix}service_changes_total", "Cumulative proxy rules Service changes", ()
        )
        self.no_local_endpoints = gauge(
            f"{prefix}no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            by_policy,
        )
        self.restore_failures = counter(
            f"{prefix}iptables_restore_failures_total", "Cumulative proxy iptables restore failures", only="iptables"
        )
        self.partial_restore_failures = counter(
            f"{prefix}iptables_partial_restore_failures_total",
            "Cumulative proxy iptables partial restore failures",
            only="iptables",
        )
        self.iptables_total = table_gauge(
            f"{prefix}iptables_total", "Total number of iptables rules owned by kube-proxy"
        )
        self.iptables_last = table_gauge(
            f"{prefix}iptables_last", "Number of iptables rules written by kube-proxy in last sync"
        )
        self.nftables_sync_failures = counter(
            f"{prefix}nftables_sync_failures_total", "Cumulative proxy nftables sync failures", only="nftables"
        )
        self.nftables_cleanup_failures = counter(
            f"{prefix}nftables_cleanup_failures_total", "Cumulative proxy nftables cleanup failures", only="nftables"
        )
        self.healthz_total = counter("kubeproxy_proxy_healthz_total", "Cumulative proxy healthz HTTP status", ("code",))
        self.livez_total = counter("kubeproxy_proxy_livez_total", "Cumulative proxy livez HTTP status", ("code",))
        self.rejected_objects = counter(
            "clew_rejected_objects_total",
            "Objects clew refused, by kind and by the field that was wrong",
            ("kind", "reason"),
        )
        self.podnet_failures = counter(
            "clew_pod_network_sync_failures_total", "Cumulative pod network sync failures", ()
        )
        self.bird_restarts = counter(
            "clew_bird_restarts_total",
            "BIRD processes (bgp backend) found dead between syncs and started again, by result",
            ("result",),
        )
        self.ruleset_tampered = counter(
            "clew_ruleset_tampered_total",
            "Changes someone else made to the chains clew owns (found by the guard, then repaired)",
            ("chain", "table"),
        )
        for metric in (
            self.sync_duration,
            self.sync_full_duration,
            self.sync_partial_duration,
            self.network_programming,
            self.last_sync,
            self.last_queued,
            *((self.restore_failures, self.partial_restore_failures) if mode == "iptables" else ()),
            *((self.nftables_sync_failures, self.nftables_cleanup_failures) if mode == "nftables" else ()),
        ):
            metric.labels(IP_FAMILY)  # the family is known: show its zero series from the start
        for policy in POLICIES:
            self.no_local_endpoints.labels(IP_FAMILY, policy)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, … as Go's

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry as the client asked (``Accept``): body and Content-Type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


# ---- pure helpers -------------------------------------------------------------------------------

_INDEX = re.compile(r"\[[^\]]*\]")


def reason_slug(field: str) -> str:
    """A short stable label for a rejected field: indices and keys dropped (``spec.ports.port``)."""
    slug = _INDEX.sub("", field).strip(".")
    return slug or "object"


def rejection_kind(r: Rejection) -> str:
    """The object's kind (``Service ns/name`` → ``Service``); ``Unknown`` for a document that had none."""
    word = r.object.split(" ", 1)[0]
    return word if word[:1].isupper() else "Unknown"


def rules_per_table(payload: str) -> dict[str, int]:
    """Rules written (``-A`` and ``-I`` lines) per table of an iptables-restore payload."""
    counts: dict[str, int] = {}
    for section in ("\n" + payload).split("\n*")[1:]:
        table, _, body = section.partition("\n")
        body = "\n" + body
        counts[table.strip()] = body.count("\n-A ") + body.count("\n-I ")
    return counts


def no_local_endpoints(policies: Iterable[PortPolicy]) -> dict[str, int]:
    """Service ports whose Local traffic policy drops traffic: endpoints exist, none on this node."""
    counts = dict.fromkeys(POLICIES, 0)
    for p in policies:
        if p.has_endpoints and not p.has_internal_endpoints:
            counts["internal"] += 1
        if p.has_endpoints and not p.has_external_endpoints:
            counts["external"] += 1
    return counts


def trigger_timestamp(text: str | None) -> float | None:
    """The ``last-change-trigger-time`` annotation (RFC 3339) as a Unix time; None if absent or bad."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


_T = TypeVar("_T")


def changed_keys(old: Mapping[str, _T], new: Mapping[str, _T]) -> set[str]:
    """Keys added, removed or whose value differs."""
    return {k for k in old.keys() | new.keys() if (a := old.get(k)) is not (b := new.get(k)) and a != b}


class _Index:
    """A snapshot's Services and EndpointSlices by key, built once per snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.services = {s.key: s for s in snapshot.services}
        self.slices = {s.key: s for s in snapshot.slices}


# ---- the agent's one object ---------------------------------------------------------------------


class Observer:
    """Turns the agent loop's events into metrics and proxy health."""

    def __init__(
        self,
        *,
        node_name: str,
        sync_period: float,
        metrics: ProxyMetrics | None = None,
        clock: Callable[[], float] = time.time,
        mode: str = "iptables",
    ) -> None:
        self.node_name = node_name
        self.metrics = metrics or ProxyMetrics(mode=mode)
        self.clock = clock
        self.started = clock()
        self.health = ProxyHealth(sync_period, clock=clock, node_eligible=self.node_eligible)
        self.health.updated()  # kube-proxy marks the proxier updated when its sync loop starts
        self.snapshot: Snapshot | None = None
        self._current = self._synced = _Index(Snapshot())  # the newest, and what the last sync loaded
        self._rejections: set[Rejection] = set()
        self._rejected_ports: set[tuple[str, str]] = set()  # ports the proxy mode could not express
        self._triggers: dict[str, list[float]] = {}  # Service key → trigger times not yet synced
        self._in_flight: list[float] = []

    # -- events from the loop

    def source_changed(self, snapshot: Snapshot) -> None:
        """The source produced a new snapshot (the agent requests a sync for it)."""
        old, new = self._current, _Index(snapshot)
        self.snapshot, self._current = snapshot, new
        self._count_rejections(snapshot)
        m = self.metrics
        m.service_changes_total.inc(len(changed_keys(old.services, new.services)))
        slice_changes = changed_keys(old.slices, new.slices)
        m.endpoint_changes_total.inc(len(slice_changes))
        self._note_triggers(slice_changes, new.slices, old.slices)
        m.service_changes_pending.set(len(changed_keys(self._synced.services, new.services)))
        m.endpoint_changes_pending.set(len(changed_keys(self._synced.slices, new.slices)))
        self.health.queued_update()
        m.last_queued.labels(IP_FAMILY).set(self.clock())

    def sync_started(self) -> None:
        """A sync begins: the pending changes are checked out (kube-proxy's trackers drain here)."""
        self._synced = self._current
        self._in_flight = [t for times in self._triggers.values() for t in times]
        self._triggers = {}
        self.metrics.service_changes_pending.set(0)
        self.metrics.endpoint_changes_pending.set(0)

    def sync_finished(
        self,
        result: SyncResult,
        *,
        full: bool = True,
        policies: Iterable[PortPolicy] | None = None,
        payload: str | None = None,
        owned: str | None = None,
    ) -> None:
        """A Service proxy sync ended.

        On success, ``policies`` (what was decided) set the no-local-endpoints gauges,
        ``payload`` (the restore input loaded) ``…_iptables_last``, and ``owned`` (a full
        render of every rule now owned; a full sync's payload by default) ``…_iptables_total``.
        Without them the counts come from the result (``written_by_table``, ``rules_by_table``:
        what the agent's syncer reports); a gauge without either keeps its value.
        """
        m = self.metrics
        for hist in (m.sync_duration, m.sync_full_duration if full else m.sync_partial_duration):
            hist.labels(IP_FAMILY).observe(result.seconds)
        in_flight, self._in_flight = self._in_flight, []
        nft = m.mode == "nftables"
        if result.cleanup_failed:
            m.nftables_cleanup_failures.labels(IP_FAMILY).inc()
        if not result.ok:
            if nft:
                m.nftables_sync_failures.labels(IP_FAMILY).inc()
                return
            m.restore_failures.labels(IP_FAMILY).inc()
            if not full:
                m.partial_restore_failures.labels(IP_FAMILY).inc()
            return  # no health update: a queued change stays pending
        self._count_rejected_ports(result.rejected)
        now = self.clock()
        for t in in_flight:
            m.network_programming.labels(IP_FAMILY).observe(now - t)
        if policies is not None:
            for policy, n in no_local_endpoints(policies).items():
                m.no_local_endpoints.labels(IP_FAMILY, policy).set(n)
        if nft:
            self.health.updated()
            m.last_sync.labels(IP_FAMILY).set(now)
            return  # kube-proxy's nftables mode has no rule-count gauges
        written = rules_per_table(payload) if payload is not None else result.written_by_table
        for table, n in written.items():
            m.iptables_last.labels(IP_FAMILY, table).set(n)
        if owned is None and full and payload is not None:
            owned = payload  # a full sync rewrites every owned rule: what it wrote is what is owned
        for table, n in (rules_per_table(owned) if owned is not None else result.rules_by_table).items():
            m.iptables_total.labels(IP_FAMILY, table).set(n)
        self.health.updated()
        m.last_sync.labels(IP_FAMILY).set(now)

    def source_problem(self, problem: str | None) -> None:
        """The source cannot be read (``problem``), or can again (None): /healthz follows."""
        self.health.set_source_problem(problem)

    def podnet_failed(self) -> None:
        self.metrics.podnet_failures.inc()

    def bird_restarted(self) -> None:
        self.metrics.bird_restarts.labels("started").inc()

    def bird_restart_failed(self) -> None:
        self.metrics.bird_restarts.labels("failed").inc()

    def ruleset_tampered(self, table: str, chain: str) -> None:
        self.metrics.ruleset_tampered.labels(chain, table).inc()

    def node_eligible(self) -> bool:
        """kube-proxy's nodeEligible: this node's Node object exists (the model keeps no
        deletionTimestamp or taints, so those two conditions cannot be seen yet)."""
        snap = self.snapshot
        return snap is not None and any(n.name == self.node_name for n in snap.nodes)

    # -- bookkeeping

    def _count_rejections(self, snapshot: Snapshot) -> None:
        """Count each rejection when it appears (not again while it stays)."""
        current = set(snapshot.rejections)
        for r in current - self._rejections:
            self.metrics.rejected_objects.labels(rejection_kind(r), reason_slug(r.field)).inc()
        self._rejections = current

    def _count_rejected_ports(self, rejected: Iterable[tuple[str, str]]) -> None:
        """Service ports the proxy mode cannot express (nftables: `Rejected`), counted once each
        while they stay, as ``clew_rejected_objects_total{kind="Service",reason="<mode>"}``."""
        current = set(rejected)
        for _ in current - self._rejected_ports:
            self.metrics.rejected_objects.labels("Service", self.metrics.mode).inc()
        self._rejected_ports = current

    def _note_triggers(
        self, keys: set[str], new: Mapping[str, EndpointSlice], old: Mapping[str, EndpointSlice]
    ) -> None:
        for key in keys:
            sl = new.get(key)
            if sl is None:  # a deleted slice's annotation dates its last update, not the deletion
                self._triggers.pop(old[key].service_key, None)
                continue
            t = trigger_timestamp(sl.trigger_time)
            if t is not None and t > self.started:
                self._triggers.setdefault(sl.service_key, []).append(t)
