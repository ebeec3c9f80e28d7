"""kube-proxy's endpoint categorisation (topology.go) and the verdicts derived from it."""

from dataclasses import dataclass

import pytest

from clew.model.objects import (
    EndpointSlice,
    Node,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    SliceEndpoint,
    SlicePort,
    Snapshot,
    TrafficPolicy,
)
from clew.model.proxy_config import ProxyConfig
from clew.proxy.policy import FilterVerdict, PortPolicy, Topology, decide

NODE = "me"


def ep(
    ip: str,
    *,
    node: str | None = None,
    ready: bool = True,
    serving: bool = True,
    terminating: bool = False,
    zones: tuple[str, ...] = (),
) -> SliceEndpoint:
    return SliceEndpoint(ip, ready=ready, serving=serving, terminating=terminating, node_name=node, zone_hints=zones)


def one(
    endpoints: list[SliceEndpoint],
    *,
    etp: str = "Cluster",
    itp: str = "Cluster",
    svc_type: str = "NodePort",
    zone: str | None = None,
) -> PortPolicy:
    svc = Service(
        "ns",
        "svc",
        ServiceType(svc_type),
        "10.96.0.1",
        (ServicePort("p", Protocol.TCP, 80, 30080),),
        external_traffic_policy=TrafficPolicy(etp),
        internal_traffic_policy=TrafficPolicy(itp),
    )
    sl = EndpointSlice("ns", "svc-1", "svc", tuple(endpoints), (SlicePort("p", Protocol.TCP, 8080),))
    nodes = (Node(NODE, labels={"topology.kubernetes.io/zone": zone}),) if zone else ()
    (policy,) = decide(Snapshot((svc,), (sl,), nodes), ProxyConfig(node_name=NODE))
    return policy


def ips(endpoints: tuple[object, ...]) -> list[str]:
    return [e.ip for e in endpoints]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Case:
    name: str
    endpoints: list[SliceEndpoint]
    etp: str
    itp: str
    cluster: list[str]
    local: list[str]
    reachable: list[str]
    internal: FilterVerdict | None
    external: FilterVerdict | None


CASES = [
    Case(
        "all ready, cluster",
        [ep("10.0.0.2"), ep("10.0.0.1", node=NODE)],
        "Cluster",
        "Cluster",
        ["10.0.0.1", "10.0.0.2"],
        [],
        ["10.0.0.1", "10.0.0.2"],
        None,
        None,
    ),
    Case(
        "not ready ignored",
        [ep("10.0.0.1", ready=False, serving=False), ep("10.0.0.2")],
        "Cluster",
        "Cluster",
        ["10.0.0.2"],
        [],
        ["10.0.0.2"],
        None,
        None,
    ),
    Case(
        "terminating fallback",
        [ep("10.0.0.1", ready=False, terminating=True), ep("10.0.0.2", ready=False, serving=False)],
        "Cluster",
        "Cluster",
        ["10.0.0.1"],
        [],
        ["10.0.0.1"],
        None,
        None,
    ),
    Case(
        "terminating unused while one is ready",
        [ep("10.0.0.1", ready=False, terminating=True), ep("10.0.0.2")],
        "Cluster",
        "Cluster",
        ["10.0.0.2"],
        [],
        ["10.0.0.2"],
        None,
        None,
    ),
    Case(
        "no usable endpoint: reject",
        [ep("10.0.0.1", ready=False, serving=False)],
        "Cluster",
        "Cluster",
        [],
        [],
        [],
        FilterVerdict.REJECT,
        FilterVerdict.REJECT,
    ),
    Case(
        "no endpoints at all: reject", [], "Cluster", "Cluster", [], [], [], FilterVerdict.REJECT, FilterVerdict.REJECT
    ),
    Case(
        "eTP Local with a local endpoint",
        [ep("10.0.0.1", node=NODE), ep("10.0.0.2", node="other")],
        "Local",
        "Cluster",
        ["10.0.0.1", "10.0.0.2"],
        ["10.0.0.1"],
        ["10.0.0.1", "10.0.0.2"],
        None,
        None,
    ),
    Case(
        "eTP Local without a local endpoint drops external",
        [ep("10.0.0.2", node="other")],
        "Local",
        "Cluster",
        ["10.0.0.2"],
        [],
        ["10.0.0.2"],
        None,
        FilterVerdict.DROP,
    ),
    Case(
        "iTP Local without a local endpoint drops internal",
        [ep("10.0.0.2", node="other")],
        "Cluster",
        "Local",
        ["10.0.0.2"],
        [],
        ["10.0.0.2"],
        FilterVerdict.DROP,
        None,
    ),
    Case(
        "eTP Local falls back to local terminating, merged reachable",
        [ep("10.0.0.1", node=NODE, ready=False, terminating=True), ep("10.0.0.2", node="other")],
        "Local",
        "Cluster",
        ["10.0.0.2"],
        ["10.0.0.1"],
        ["10.0.0.1", "10.0.0.2"],
        None,
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_categorize(case: Case) -> None:
    p = one(case.endpoints, etp=case.etp, itp=case.itp)
    assert ips(p.cluster_endpoints) == case.cluster
    assert ips(p.local_endpoints) == case.local
    assert ips(p.all_reachable) == case.reachable
    assert p.internal_verdict == case.internal
    assert p.external_verdict == case.external


def test_endpoints_sorted_by_ip_port_string_like_kube_proxy() -> None:
    p = one([ep("10.2.2.2"), ep("10.2.2.22"), ep("10.2.2.10")])
    # byte order of "ip:port": "10.2.2.10:8080" < "10.2.2.22:8080" < "10.2.2.2:8080"
    assert [e.key for e in p.cluster_endpoints] == ["10.2.2.10:8080", "10.2.2.22:8080", "10.2.2.2:8080"]


def test_zone_hints_apply_only_when_every_ready_endpoint_has_one() -> None:
    hinted = [ep("10.0.0.1", zones=("z1",)), ep("10.0.0.2", zones=("z2",))]
    assert ips(one(hinted, zone="z1").cluster_endpoints) == ["10.0.0.1"]
    assert one(hinted, zone="z1").topology is Topology.PREFER_SAME_ZONE
    partly = [ep("10.0.0.1", zones=("z1",)), ep("10.0.0.2")]
    assert ips(one(partly, zone="z1").cluster_endpoints) == ["10.0.0.1", "10.0.0.2"]
    assert ips(one(hinted, zone="z9").cluster_endpoints) == ["10.0.0.1", "10.0.0.2"]


def test_clusterip_service_has_no_external_traffic() -> None:
    p = one([ep("10.0.0.2", node="other")], etp="Local", svc_type="ClusterIP")
    assert not p.externally_accessible and not p.external_policy_local and p.node_port == 0
    assert p.external_verdict is None and not p.uses_external_chain
