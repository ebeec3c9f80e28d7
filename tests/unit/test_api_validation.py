"""What the API server would refuse, clew refuses too (a folder and the lab bypass the API server):
each refusal is one `Rejection` naming the object and field, counted in the metrics, and every
other Service keeps its rules."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clew.agent.metrics import Observer, ProxyMetrics
from clew.model.admission import Admission, node_addresses
from clew.model.from_kube import RANGE_UNKNOWN, build_snapshot, service_from_kube
from clew.model.objects import Service, Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide
from clew.sources.files import FolderSource

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",))


def service(name: str, ip: str, *, ns: str = "ns", node_port: int = 0, created: str | None = None,
            external_ips: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "nodePort": node_port or None}]}
    if node_port:
        spec["type"] = "NodePort"
    if external_ips:
        spec["externalIPs"] = external_ips
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint_slice(service_name: str, *addresses: str, name: str | None = None, ns: str = "ns") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name or f"{service_name}-1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": [{"addresses": [a]} for a in addresses],
            "ports": [{"name": "http", "port": 10249}]}  # fmt: skip


def node(name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}  # fmt: skip


def service_cidr(*cidrs: str, name: str = "kubernetes") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": name},
            "spec": {"cidrs": list(cidrs)}}  # fmt: skip


GOOD = [service("good", "10.96.0.20"), endpoint_slice("good", "10.244.1.9")]


def rejected(snap: Snapshot) -> list[tuple[str, str]]:
    return [(r.object, r.field) for r in snap.rejections]


def assert_good_kept(snap: Snapshot) -> None:
    assert "ns/good" in {s.key for s in snap.services}
    assert "--to-destination 10.244.1.9:10249" in render(decide(snap, CONFIG), CONFIG).text()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.3.2.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local range"),
        ("224.0.0.251", "link-local multicast"),
    ],
)
def test_an_endpoint_that_reaches_the_node_is_refused(address: str, reason: str) -> None:
    snap = build_snapshot([service("web", "10.96.0.10"), endpoint_slice("web", address), *GOOD])
    assert rejected(snap) == [("EndpointSlice ns/web-1", "endpoints[0].addresses[0]")]
    assert reason in snap.rejections[0].reason
    text = render(decide(snap, CONFIG), CONFIG).text()
    assert f"--to-destination {address}" not in text  # no DNAT to the node agent's /metrics
    assert_good_kept(snap)


def test_every_address_of_an_endpoint_is_checked_as_the_api_server_does() -> None:
    snap = build_snapshot([endpoint_slice("web", "10.244.1.5"), *GOOD])
    assert snap.rejections == ()
    slice_ = endpoint_slice("web", "10.244.1.5")
    slice_["endpoints"][0]["addresses"].append("127.0.0.1")
    snap = build_snapshot([slice_, *GOOD])
    assert rejected(snap) == [("EndpointSlice ns/web-1", "endpoints[0].addresses[1]")]


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "169.254.169.254"])
def test_special_external_and_cluster_ips_are_refused(address: str) -> None:
    snap = build_snapshot([service("ext", "10.96.0.10", external_ips=["192.168.99.1", address]), *GOOD])
    assert rejected(snap) == [("Service ns/ext", "spec.externalIPs[1]")]
    snap = build_snapshot([service("cip", address), *GOOD])
    assert rejected(snap) == [("Service ns/cip", "spec.clusterIP")]
    assert_good_kept(snap)


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        (service("a" * 64, "10.96.0.10"), "metadata.name", "more than a DNS label's 63"),
        (service("a" * 300, "10.96.0.10"), "metadata.name", "300 characters"),
        (service("1web", "10.96.0.10"), "metadata.name", "DNS-1035"),
        (service("web.x", "10.96.0.10"), "metadata.name", "DNS-1035"),
        (endpoint_slice("good", "10.244.1.1", name="s" * 254), "metadata.name", "more than a DNS subdomain's 253"),
        (node("n" * 254, "192.168.0.9"), "metadata.name", "more than a DNS subdomain's 253"),
        (endpoint_slice("good", "10.244.1.1", ns="n" * 64), "metadata.namespace", "not a valid DNS label"),
    ],
)
def test_names_longer_or_other_than_the_api_allows_are_refused(obj: dict[str, Any], field: str, reason: str) -> None:
    snap = build_snapshot([obj, *GOOD])
    ((_, got),) = rejected(snap)
    assert got == field and reason in snap.rejections[0].reason
    assert len(str(snap.rejections[0])) < 300  # one readable line, not the 300 characters
    assert_good_kept(snap)


def test_names_at_the_limits_are_accepted() -> None:
    snap = build_snapshot([service("a" * 63, "10.96.0.10"), endpoint_slice("a" * 63, "10.244.1.1", name="s" * 253)])
    assert snap.rejections == () and len(snap.services) == 1 and len(snap.slices) == 1


@pytest.mark.parametrize("kind", ["Service", "EndpointSlice", "Node"])
def test_annotations_over_256_kib_are_refused(kind: str) -> None:
    obj = {"Service": service("big", "10.96.0.10"), "EndpointSlice": endpoint_slice("good", "10.244.1.1", name="big"),
           "Node": node("big", "192.168.0.9")}[kind]  # fmt: skip
    obj["metadata"]["annotations"] = {"example.com/blob": "x" * (1 << 20)}
    snap = build_snapshot([obj, *GOOD])
    assert [f for _, f in rejected(snap)] == ["metadata.annotations"]
    assert "262144" in snap.rejections[0].reason
    obj["metadata"]["annotations"] = {"example.com/blob": "x" * (200 << 10)}
    assert build_snapshot([obj]).rejections == ()


@pytest.mark.parametrize(
    ("labels", "field"),
    [({"app": "x" * 64}, "metadata.labels[app]"), ({"bad key!": "x"}, "metadata.labels[bad key!]")],
)
def test_labels_the_api_would_not_store_are_refused(labels: dict[str, str], field: str) -> None:
    obj = service("web", "10.96.0.10")
    obj["metadata"]["labels"] = labels
    assert rejected(build_snapshot([obj])) == [("Service ns/web", field)]


def test_a_slice_over_the_api_limits_is_refused() -> None:
    big = endpoint_slice("good", *(f"10.244.{i // 250}.{i % 250 + 1}" for i in range(1001)), name="big")
    snap = build_snapshot([big, *GOOD])
    assert rejected(snap) == [("EndpointSlice ns/big", "endpoints")]


def test_cluster_ips_outside_the_service_cidr_are_refused() -> None:
    objs = [service_cidr("10.96.0.0/16"), service("out", "10.97.0.1"), service("net", "10.96.0.0"),
            service("bcast", "10.96.255.255"), *GOOD]  # fmt: skip
    snap = build_snapshot(objs)
    assert sorted(rejected(snap)) == [(f"Service ns/{n}", "spec.clusterIP") for n in ("bcast", "net", "out")]
    assert all("not in the service range (10.96.0.0/16" in r.reason for r in snap.rejections)
    assert snap.service_cidrs == ("10.96.0.0/16",) and RANGE_UNKNOWN not in snap.notes
    assert_good_kept(snap)
    two = build_snapshot([service_cidr("10.96.0.0/16"), service_cidr("10.97.0.0/24", "fd00::/112", name="extra"),
                          service("out", "10.97.0.1")])  # fmt: skip
    assert two.rejections == () and len(two.services) == 1  # any of the ranges holds it


def test_without_a_service_cidr_the_range_is_not_guessed_and_a_note_says_so() -> None:
    snap = build_snapshot([service("far", "172.31.0.1"), *GOOD])
    assert snap.rejections == () and len(snap.services) == 2
    assert RANGE_UNKNOWN in snap.notes


def test_a_malformed_service_cidr_is_refused_and_checks_nothing() -> None:
    snap = build_snapshot([service_cidr("10.96.0.0/16", "10.97.0.0/16"), service("far", "172.31.0.1")])
    assert rejected(snap) == [("ServiceCIDR kubernetes", "spec.cidrs")]
    assert len(snap.services) == 1 and RANGE_UNKNOWN in snap.notes


def test_a_cluster_ip_that_is_a_node_address_is_refused() -> None:
    snap = build_snapshot([node("n2", "10.96.0.10"), service("steal", "10.96.0.10"), *GOOD])
    assert rejected(snap) == [("Service ns/steal", "spec.clusterIP")]
    assert "Node n2's address" in snap.rejections[0].reason
    assert_good_kept(snap)


def test_duplicate_cluster_ip_the_first_created_keeps_it() -> None:
    old = service("zz-old", "10.96.0.10", created="2024-01-01T00:00:00Z")
    new = service("aa-new", "10.96.0.10", created="2024-06-01T00:00:00+02:00")
    for order in ([old, new], [new, old]):
        snap = build_snapshot([*order, *GOOD])
        assert [s.name for s in snap.services if s.name != "good"] == ["zz-old"]
        assert rejected(snap) == [("Service ns/aa-new", "spec.clusterIP")]
        assert "already allocated to Service ns/zz-old" in snap.rejections[0].reason
    untimed = build_snapshot([service("b", "10.96.0.10"), service("a", "10.96.0.10"), old])
    assert [s.name for s in untimed.services] == ["zz-old"]  # a timestamp beats none; then by name
    assert sorted(r.object for r in untimed.rejections) == ["Service ns/a", "Service ns/b"]
    by_name = build_snapshot([service("b", "10.96.0.10"), service("a", "10.96.0.10")])
    assert [s.name for s in by_name.services] == ["a"]


def test_duplicate_node_port_the_first_created_keeps_it_and_a_loser_holds_nothing() -> None:
    a = service("a", "10.96.0.1", node_port=30080, created="2024-01-01T00:00:00Z")
    b = service("b", "10.96.0.1", node_port=30090, created="2024-01-02T00:00:00Z")  # loses the IP to a
    c = service("c", "10.96.0.3", node_port=30090, created="2024-01-03T00:00:00Z")  # b holds nothing: c keeps 30090
    d = service("d", "10.96.0.4", node_port=30080, created="2024-01-04T00:00:00Z")  # loses 30080 to a
    snap = build_snapshot([d, c, b, a])
    assert sorted(s.name for s in snap.services) == ["a", "c"]
    assert sorted(rejected(snap)) == [("Service ns/b", "spec.clusterIP"), ("Service ns/d", "spec.ports[0].nodePort")]


def test_refusals_are_counted_by_kind_and_field() -> None:
    snap = build_snapshot([service("a", "10.96.0.1", node_port=30080), service("b", "10.96.0.2", node_port=30080),
                           endpoint_slice("a", "127.0.0.1")])  # fmt: skip
    obs = Observer(node_name="n1", sync_period=30, metrics=ProxyMetrics(CollectorRegistry()))
    obs.source_changed(snap)
    registry = obs.metrics.registry
    count = registry.get_sample_value
    name = "clew_rejected_objects_total"
    assert count(name, {"kind": "Service", "reason": "spec.ports.nodePort"}) == 1
    assert count(name, {"kind": "EndpointSlice", "reason": "endpoints.addresses"}) == 1


def test_the_folder_source_refuses_them_and_keeps_the_rest(tmp_path: Path) -> None:
    import json

    items = [service("web", "10.96.0.10"), endpoint_slice("web", "127.0.0.1"), service("dup", "10.96.0.10"), *GOOD]
    (tmp_path / "objs.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    snap = FolderSource(tmp_path).poll()
    assert snap is not None
    assert sorted(rejected(snap)) == [("EndpointSlice ns/web-1", "endpoints[0].addresses[0]"),
                                      ("Service ns/web", "spec.clusterIP")]  # fmt: skip
    assert_good_kept(snap)


def _services(rng: random.Random, n: int) -> list[Service]:
    out = []
    for i in range(n):
        created = rng.choice([None, "2024-01-01T00:00:00Z", f"2024-01-0{rng.randint(1, 9)}T00:00:00Z"])
        port = rng.choice([0, 30001, 30002, 30003])
        obj = service(f"s{i}", f"10.96.0.{rng.randint(1, 12)}", node_port=port, created=created)
        out.append(service_from_kube(obj))
    return out


def test_incremental_admission_agrees_with_a_fresh_one_at_every_step() -> None:
    """The watch source's `Admission` is updated change by change; at every step it must let in
    and refuse exactly what one built from scratch does, and report every Service whose
    standing changed."""
    rng = random.Random(12)
    pool = _services(rng, 40)
    nodes = {"10.96.0.5": "n1"}
    live: dict[str, Service] = {}
    incremental = Admission()
    incremental.update((), [], nodes)
    for _ in range(400):
        before = dict(incremental.rejected)
        svc = copy.copy(rng.choice(pool))
        if svc.key in live and rng.random() < 0.4:
            del live[svc.key]
            changed = incremental.update([svc.key], [])
        else:
            svc = rng.choice([s for s in _services(rng, 40) if s.key == svc.key])
            live[svc.key] = svc
            changed = incremental.update([svc.key], [svc])
        if rng.random() < 0.05:
            nodes = {f"10.96.0.{rng.randint(1, 12)}": "n1"}
            changed |= incremental.update((), [], nodes)
        fresh = Admission()
        fresh.update((), list(live.values()), nodes)
        assert incremental.rejected == fresh.rejected
        moved = {k for k in before.keys() | fresh.rejected.keys() if before.get(k) != fresh.rejected.get(k)}
        assert moved <= changed


def test_batch_admission_is_the_one_build_snapshot_applies() -> None:
    objs = [service("a", "10.96.0.1"), service("b", "10.96.0.1"), node("n1", "10.96.0.2"), service("c", "10.96.0.2")]
    snap = build_snapshot(objs, admit=False)
    assert snap.rejections == () and len(snap.services) == 3
    admission = Admission()
    admission.update((), snap.services, node_addresses(snap.nodes))
    assert sorted(admission.rejected) == ["ns/b", "ns/c"]
    assert sorted(r.object for r in build_snapshot(objs).rejections) == ["Service ns/b", "Service ns/c"]


def test_the_lab_publishes_its_service_range_and_its_agents_refuse_a_cluster_ip_outside_it(tmp_path: Path) -> None:
    from clew.lab.controlplane import _write_objects
    from clew.lab.plan import LabConfig
    from clew.lab.state import LabState

    state = LabState(LabConfig(name="hvl", service_cidr="10.96.0.0/16"))
    state.services = {"ns/in": service("in", "10.96.0.10"), "ns/out": service("out", "10.200.0.1")}
    _write_objects(state, tmp_path)
    snap = FolderSource(tmp_path / "objects").poll()
    assert snap is not None and snap.service_cidrs == ("10.96.0.0/16",)
    assert [s.name for s in snap.services] == ["in"] and rejected(snap) == [("Service ns/out", "spec.clusterIP")]
