"""The agent's metrics: kube-proxy's names, types, labels and buckets in the text exposition, and
the Observer's bookkeeping of source changes and syncs on a fake clock."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from clew.agent.metrics import (
    DURATION_BUCKETS,
    PROGRAMMING_BUCKETS,
    Observer,
    ProxyMetrics,
    no_local_endpoints,
    reason_slug,
    rules_per_table,
    trigger_timestamp,
)
from clew.model.from_kube import build_snapshot
from clew.model.objects import (
    EndpointSlice,
    Protocol,
    Rejection,
    Service,
    ServicePort,
    ServiceType,
    SliceEndpoint,
    SlicePort,
    Snapshot,
    TrafficPolicy,
)
from clew.model.proxy_config import ProxyConfig
from clew.proxy.policy import decide
from clew.proxy.sync import SyncResult

FAM = {"ip_family": "IPv4"}

# name → (type, label names of its samples); the exposition must hold exactly these families.
EXPECTED = {
    "kubeproxy_sync_proxy_rules_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_full_proxy_rules_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_partial_proxy_rules_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_network_programming_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds": ("gauge", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": ("gauge", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": ("gauge", set()),
    "kubeproxy_sync_proxy_rules_endpoint_changes_total": ("counter", set()),
    "kubeproxy_sync_proxy_rules_service_changes_pending": ("gauge", set()),
    "kubeproxy_sync_proxy_rules_service_changes_total": ("counter", set()),
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total": ("gauge", {"ip_family", "traffic_policy"}),
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total": ("counter", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total": ("counter", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_iptables_total": ("gauge", {"ip_family", "table"}),
    "kubeproxy_sync_proxy_rules_iptables_last": ("gauge", {"ip_family", "table"}),
    "kubeproxy_proxy_healthz_total": ("counter", {"code"}),
    "kubeproxy_proxy_livez_total": ("counter", {"code"}),
    "clew_rejected_objects_total": ("counter", {"kind", "reason"}),
    "clew_pod_network_sync_failures_total": ("counter", set()),
    "clew_ruleset_tampered_total": ("counter", set()),  # labels appear with the first change found
    "clew_bird_restarts_total": ("counter", set()),  # result="started"|"failed", with the first restart
}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def text(m: ProxyMetrics) -> str:
    body, content_type = m.exposition()
    assert content_type.startswith("text/plain")
    return body.decode()


def samples(m: ProxyMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text(m)):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: ProxyMetrics, name: str, **labels: str) -> float:
    return samples(m)[(name, frozenset(labels.items()))]


def touch(m: ProxyMetrics) -> None:
    """Give every labelled metric one series, so the test can see its label names."""
    m.iptables_total.labels("IPv4", "nat").set(1)
    m.iptables_last.labels("IPv4", "nat").set(1)
    m.healthz_total.labels("200").inc()
    m.livez_total.labels("200").inc()
    m.rejected_objects.labels("Service", "spec.ports.port").inc()


def test_exposition_has_exactly_kube_proxys_names_types_and_labels() -> None:
    m = ProxyMetrics()
    touch(m)
    body = text(m)
    seen = {}
    for fam in text_string_to_metric_families(body):
        if fam.name.startswith("process_"):  # the process collector's, as Go clients have them
            continue
        labels = {k for s in fam.samples for k in s.labels if k != "le"}
        seen[fam.name if fam.type != "counter" else fam.name + "_total"] = (fam.type, labels)
    assert seen == EXPECTED
    for name, (kind, _) in EXPECTED.items():
        assert f"# TYPE {name} {kind}\n" in body  # the wire names, suffix included
    assert "_created" not in body  # Go clients expose no creation timestamps
    assert 'traffic_policy="internal"' in body and 'traffic_policy="external"' in body
    assert "\nprocess_resident_memory_bytes " in body


def test_histogram_buckets_are_kube_proxys() -> None:
    assert DURATION_BUCKETS[0] == 0.001 and len(DURATION_BUCKETS) == 15
    assert abs(DURATION_BUCKETS[-1] - 16.384) < 1e-9
    assert PROGRAMMING_BUCKETS[:4] == (0.0, 0.25, 0.5, 1.0)
    assert PROGRAMMING_BUCKETS[62:64] == (60.0, 65.0) and PROGRAMMING_BUCKETS[-2:] == (270.0, 300.0)
    assert len(PROGRAMMING_BUCKETS) == 1 + 2 + 59 + 12 + 7
    m = ProxyMetrics()
    m.sync_duration.labels("IPv4").observe(0.003)
    s = samples(m)
    bucket = "kubeproxy_sync_proxy_rules_duration_seconds_bucket"
    assert s[(bucket, frozenset({**FAM, "le": "0.002"}.items()))] == 0
    assert s[(bucket, frozenset({**FAM, "le": "0.004"}.items()))] == 1
    assert s[(bucket, frozenset({**FAM, "le": "+Inf"}.items()))] == 1
    les = {dict(k[1])["le"] for k in s if k[0] == "kubeproxy_network_programming_duration_seconds_bucket"}
    assert {"0.0", "0.25", "59.0", "115.0", "300.0", "+Inf"} <= les and len(les) == len(PROGRAMMING_BUCKETS) + 1


def test_registries_are_private() -> None:
    a, b = ProxyMetrics(), ProxyMetrics()  # a second one must not collide with the first
    a.podnet_failures.inc()
    assert value(a, "clew_pod_network_sync_failures_total") == 1
    assert value(b, "clew_pod_network_sync_failures_total") == 0


def svc(name: str, port: int = 80, etp: TrafficPolicy = TrafficPolicy.CLUSTER) -> Service:
    kind = ServiceType.NODE_PORT if etp is TrafficPolicy.LOCAL else ServiceType.CLUSTER_IP
    ports = (ServicePort("", Protocol.TCP, port, 30080 if etp is TrafficPolicy.LOCAL else 0),)
    return Service("ns", name, kind, "10.96.0.1", ports, external_traffic_policy=etp)


def eps(service: str, *ips: str, trigger: str | None = None, node: str = "other") -> EndpointSlice:
    endpoints = tuple(SliceEndpoint(ip, node_name=node) for ip in ips)
    return EndpointSlice("ns", f"{service}-1", service, endpoints, (SlicePort("", Protocol.TCP, 8080),), trigger)


def test_source_changes_count_and_pend_until_a_sync_checks_them_out() -> None:
    clock = Clock()
    obs = Observer(node_name="n1", sync_period=30, clock=clock)
    m = obs.metrics
    obs.source_changed(Snapshot((svc("a"), svc("b")), (eps("a", "10.0.0.1"),)))
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_total") == 2
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_pending") == 2
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_total") == 1
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 1
    assert value(m, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", **FAM) == clock.now
    obs.sync_started()
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_pending") == 0
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 0
    # b changes and back again before the next sync: two changes seen, none pending
    obs.source_changed(Snapshot((svc("a"), svc("b", 81)), (eps("a", "10.0.0.1"),)))
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_pending") == 1
    obs.source_changed(Snapshot((svc("a"), svc("b")), (eps("a", "10.0.0.1"),)))
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_total") == 4
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_pending") == 0


def test_sync_finished_observes_durations_and_success_state() -> None:
    clock = Clock()
    obs = Observer(node_name="n1", sync_period=30, clock=clock)
    m = obs.metrics
    obs.source_changed(Snapshot((svc("a"),)))
    obs.sync_started()
    clock.now += 5
    payload = "*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j X\nCOMMIT\n*nat\n-A A -j B\n-A B -j C\nCOMMIT\n"
    obs.sync_finished(SyncResult(True, 0.05, 1, 3), full=True, payload=payload)
    assert value(m, "kubeproxy_sync_proxy_rules_duration_seconds_count", **FAM) == 1
    assert value(m, "kubeproxy_sync_full_proxy_rules_duration_seconds_sum", **FAM) == 0.05
    assert value(m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", **FAM) == 0
    assert value(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", **FAM) == clock.now
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_last", table="filter", **FAM) == 1
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_total", table="nat", **FAM) == 2
    assert obs.health.oldest_queued is None and obs.health.last_updated == clock.now


def test_a_partial_sync_sets_rules_written_and_owned_from_their_own_texts() -> None:
    obs = Observer(node_name="n1", sync_period=30, clock=Clock())
    full = "*filter\nCOMMIT\n*nat\n-A A -j B\n-A B -j C\n-A C -j D\nCOMMIT\n"
    obs.sync_finished(SyncResult(True, 0.05, 1, 3), payload=full)
    partial = "*nat\n:C - [0:0]\n-A C -j E\nCOMMIT\n"
    obs.sync_finished(SyncResult(True, 0.01, 1, 3), full=False, payload=partial)
    m, nat = obs.metrics, {"table": "nat", **FAM}
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_last", **nat) == 1
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_total", **nat) == 3  # unknown: kept
    obs.sync_finished(SyncResult(True, 0.01, 1, 2), full=False, payload=partial, owned="*nat\n-A A -j B\n-A C -j E\n")
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_total", **nat) == 2
    assert value(m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", **FAM) == 2


def test_failed_syncs_count_and_leave_health_pending() -> None:
    clock = Clock()
    obs = Observer(node_name="n1", sync_period=30, clock=clock)
    m = obs.metrics
    obs.source_changed(Snapshot((svc("a"),)))
    queued = obs.health.oldest_queued
    obs.sync_started()
    obs.sync_finished(SyncResult(False, 0.2, 1, 0, "iptables-restore: line 3 failed"))
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total", **FAM) == 1
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total", **FAM) == 0
    assert value(m, "kubeproxy_sync_proxy_rules_duration_seconds_count", **FAM) == 1  # failed syncs too
    assert value(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", **FAM) == 0
    assert obs.health.oldest_queued == queued
    obs.sync_finished(SyncResult(False, 0.2, 1, 0, "x"), full=False)
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total", **FAM) == 2
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total", **FAM) == 1
    assert value(m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", **FAM) == 1
    obs.podnet_failed()
    assert value(m, "clew_pod_network_sync_failures_total") == 1


def test_network_programming_latency_from_trigger_times() -> None:
    clock = Clock(1_700_000_100.0)
    obs = Observer(node_name="n1", sync_period=30, clock=clock)
    m = obs.metrics
    before_start = "2023-11-14T22:13:00Z"  # 1_699_999_980: older than the agent, ignored
    obs.source_changed(Snapshot((svc("a"), svc("b")), (eps("a", "10.0.0.1", trigger=before_start),)))
    obs.source_changed(
        Snapshot(
            (svc("a"), svc("b")),
            (eps("a", "10.0.0.2", trigger="2023-11-14T22:15:01.5Z"), eps("b", "10.0.0.3", trigger="bad")),
        )
    )
    obs.sync_started()
    clock.now += 3
    obs.sync_finished(SyncResult(True, 0.01, 2, 4))
    name = "kubeproxy_network_programming_duration_seconds"
    assert value(m, f"{name}_count", **FAM) == 1
    assert value(m, f"{name}_sum", **FAM) == 1_700_000_103.0 - 1_700_000_101.5
    obs.sync_started()
    obs.sync_finished(SyncResult(True, 0.01, 2, 4))  # nothing new: nothing observed
    assert value(m, f"{name}_count", **FAM) == 1


def test_trigger_times_of_a_failed_sync_are_dropped_and_deletions_forget_them() -> None:
    clock = Clock(1_700_000_100.0)
    obs = Observer(node_name="n1", sync_period=30, clock=clock)
    obs.source_changed(Snapshot((svc("a"),), (eps("a", "10.0.0.1", trigger="2023-11-14T22:15:01Z"),)))
    obs.sync_started()
    obs.sync_finished(SyncResult(False, 0.01, 1, 0, "boom"))  # kube-proxy drained its trackers already
    obs.sync_started()
    obs.sync_finished(SyncResult(True, 0.01, 1, 4))
    assert value(obs.metrics, "kubeproxy_network_programming_duration_seconds_count", **FAM) == 0
    obs.source_changed(Snapshot((svc("a"),), (eps("a", "10.0.0.2", trigger="2023-11-14T22:15:02Z"),)))
    obs.source_changed(Snapshot((svc("a"),)))  # the slice is deleted before the sync
    obs.sync_started()
    obs.sync_finished(SyncResult(True, 0.01, 1, 4))
    assert value(obs.metrics, "kubeproxy_network_programming_duration_seconds_count", **FAM) == 0


def test_trigger_timestamp_parses_rfc3339() -> None:
    assert trigger_timestamp("1970-01-01T00:00:10Z") == 10.0
    assert trigger_timestamp("1970-01-01T00:00:10.123456789Z") == 10.123456
    assert trigger_timestamp("garbage") is None and trigger_timestamp(None) is None


def test_rejections_count_by_kind_and_reason_once_each() -> None:
    obs = Observer(node_name="n1", sync_period=30, clock=Clock())
    bad_port = Rejection("Service ns/web", "spec.ports[0].port", "70000 is out of range 1-65535")
    bad_label = Rejection(
        "EndpointSlice ns/web-1",
        "metadata.labels[kubernetes.io/service-name]",
        "is required: it names the slice's Service",
    )
    junk = Rejection("document 3", "", "is not an object")
    obs.source_changed(Snapshot(rejections=(bad_port, bad_label, junk)))
    obs.source_changed(Snapshot(rejections=(bad_port, bad_label, junk)))  # still there: not again
    m = obs.metrics
    name = "clew_rejected_objects_total"
    assert value(m, name, kind="Service", reason="spec.ports.port") == 1
    assert value(m, name, kind="EndpointSlice", reason="metadata.labels") == 1
    assert value(m, name, kind="Unknown", reason="object") == 1
    obs.source_changed(Snapshot())  # fixed …
    obs.source_changed(Snapshot(rejections=(bad_port,)))  # … and broken again: a new rejection
    assert value(m, name, kind="Service", reason="spec.ports.port") == 2


def test_rejections_from_real_manifests() -> None:
    snap = build_snapshot(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "demo"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 70000}]},
            }
        ]
    )
    obs = Observer(node_name="n1", sync_period=30, clock=Clock())
    obs.source_changed(snap)
    assert [(r.object, reason_slug(r.field)) for r in snap.rejections] == [("Service demo/web", "spec.ports.port")]
    assert value(obs.metrics, "clew_rejected_objects_total", kind="Service", reason="spec.ports.port") == 1


def test_reason_slug() -> None:
    assert reason_slug("spec.ports[0].port") == "spec.ports.port"
    assert reason_slug("endpoints[12].addresses[0]") == "endpoints.addresses"
    assert reason_slug("spec.clusterIP") == "spec.clusterIP"
    assert reason_slug("") == "object"


def test_no_local_endpoints_counts_local_policies_without_local_endpoints() -> None:
    snap = Snapshot(
        (svc("local", etp=TrafficPolicy.LOCAL), svc("empty", etp=TrafficPolicy.LOCAL), svc("cluster")),
        (eps("local", "10.0.0.1", node="other"), eps("cluster", "10.0.0.2")),
    )
    policies = decide(snap, ProxyConfig(node_name="n1"))
    assert no_local_endpoints(policies) == {"internal": 0, "external": 1}  # "empty" has no endpoints at all
    obs = Observer(node_name="n1", sync_period=30, clock=Clock())
    obs.sync_finished(SyncResult(True, 0.01, 3, 10), policies=policies)
    name = "kubeproxy_sync_proxy_rules_no_local_endpoints_total"
    assert value(obs.metrics, name, traffic_policy="external", **FAM) == 1
    assert value(obs.metrics, name, traffic_policy="internal", **FAM) == 0


def test_rules_per_table() -> None:
    payload = "*filter\n:A - [0:0]\n-A A -j B\nCOMMIT\n*nat\n:X - [0:0]\n-A X -j Y\n-A X -j Z\n-X OLD\nCOMMIT\n"
    assert rules_per_table(payload) == {"filter": 1, "nat": 2}
    partial = "*nat\n-D KUBE-SERVICES -d 10.0.0.1 -j OLD\n-I KUBE-SERVICES 1 -d 10.0.0.2 -j NEW\nCOMMIT\n"
    assert rules_per_table(partial) == {"nat": 1}  # deletions are not rules written
    assert rules_per_table("") == {}


def test_node_eligible_needs_this_nodes_node_object() -> None:
    from clew.model.objects import Node

    obs = Observer(node_name="n1", sync_period=30, clock=Clock())
    assert not obs.node_eligible()  # no snapshot yet
    obs.source_changed(Snapshot(nodes=(Node("n2"),)))
    assert not obs.node_eligible()
    obs.source_changed(Snapshot(nodes=(Node("n1"),)))
    assert obs.node_eligible()
