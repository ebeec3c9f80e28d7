"""API objects → model: valid ones convert, each malformed one becomes one Rejection naming its field."""

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from clew.model.from_kube import build_snapshot
from clew.model.objects import Protocol, ServiceType, TrafficPolicy

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "type": "LoadBalancer",
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "externalIPs": ["192.168.99.1"],
        "loadBalancerSourceRanges": [" 203.0.113.0/25"],
        "sessionAffinity": "ClientIP",
        "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 31000,
        "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ],
    },
    "status": {
        "loadBalancer": {
            "ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}, {"ip": "9.9.9.9", "ipMode": "Proxy"}]
        }
    },
}
SLICE: dict[str, Any] = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4",
    "endpoints": [
        {
            "addresses": ["10.244.1.5"],
            "conditions": {"ready": False, "serving": True, "terminating": True},
            "nodeName": "n1",
        },
        {"addresses": ["010.244.1.06"]},
    ],
    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"port": 9090}],
}
NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00::/64"]},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.2"}, {"type": "Hostname", "address": "n1"}]},
}


def test_valid_objects_convert() -> None:
    snap = build_snapshot([SERVICE, SLICE, NODE])
    assert snap.rejections == ()
    (svc,) = snap.services
    assert svc.type is ServiceType.LOAD_BALANCER and svc.cluster_ip == "10.96.0.10"
    assert svc.load_balancer_ips == ("5.6.7.8",)  # hostname skipped, ipMode Proxy skipped
    assert svc.source_ranges == ("203.0.113.0/25",)  # whitespace trimmed like kube-proxy
    assert svc.affinity_timeout == 10800 and svc.external_traffic_policy is TrafficPolicy.LOCAL
    assert [(p.name, p.protocol, p.port, p.node_port) for p in svc.ports] == [
        ("http", Protocol.TCP, 80, 30080),
        ("dns", Protocol.UDP, 53, 0),
    ]
    (sl,) = snap.slices
    assert sl.service_key == "shop/web"
    assert [p.name for p in sl.ports] == ["http"]  # a port without a name is ignored, as kube-proxy does
    first, second = sl.endpoints
    assert (first.ready, first.serving, first.terminating, first.node_name) == (False, True, True, "n1")
    assert second.address == "10.244.1.6" and second.ready  # leading zeros normalised, defaults applied
    (node,) = snap.nodes
    assert node.pod_cidrs == ("10.244.1.0/24",) and node.internal_ips == ("192.168.50.2",) and node.zone == "z1"


def test_skipped_objects_are_noted_not_rejected() -> None:
    headless = copy.deepcopy(SERVICE)
    headless["metadata"]["name"] = "headless"
    headless["spec"]["clusterIP"] = "None"
    headless["spec"]["clusterIPs"] = ["None"]
    ext_name = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x", "namespace": "a"},
        "spec": {"type": "ExternalName", "externalName": "example.com"},
    }
    v6 = copy.deepcopy(SLICE)
    v6["addressType"] = "IPv6"
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    snap = build_snapshot([headless, ext_name, v6, deploy], ignored_kinds=["Deployment"])
    assert snap.rejections == () and snap.services == () and snap.slices == ()
    assert len(snap.notes) == 3
    assert any("headless" in n for n in snap.notes)


@dataclass(frozen=True)
class Bad:
    name: str
    base: dict[str, Any]
    path: tuple[Any, ...]
    value: Any
    field: str
    reason: str


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    cur: Any = out
    for key in path[:-1]:
        cur = cur[key]
    if value is KeyError:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return out


BAD = [
    Bad("bad cluster IP", SERVICE, ("spec", "clusterIP"), "10.96.0.300", "spec.clusterIP", "not an IP address"),
    Bad("port out of range", SERVICE, ("spec", "ports", 0, "port"), 70000, "spec.ports[0].port", "out of range"),
    Bad("port is a string", SERVICE, ("spec", "ports", 0, "port"), "80", "spec.ports[0].port", "must be an integer"),
    Bad("nodePort negative", SERVICE, ("spec", "ports", 0, "nodePort"), -1, "spec.ports[0].nodePort", "out of range"),
    Bad("duplicate port names", SERVICE, ("spec", "ports", 1, "name"), "http", "spec.ports[1].name", "duplicate"),
    Bad("missing port name", SERVICE, ("spec", "ports", 1, "name"), KeyError, "spec.ports[1].name", "required"),
    Bad("bad protocol", SERVICE, ("spec", "ports", 1, "protocol"), "ICMP", "spec.ports[1].protocol", "not one of"),
    Bad("missing name", SERVICE, ("metadata", "name"), KeyError, "metadata.name", "required"),
    Bad("bad name", SERVICE, ("metadata", "name"), "Web_1", "metadata.name", "not a valid DNS"),
    Bad("ports not a list", SERVICE, ("spec", "ports"), {"port": 80}, "spec.ports", "must be a list"),
    Bad("bad external IP", SERVICE, ("spec", "externalIPs", 0), "example.com", "spec.externalIPs[0]", "not an IP"),
    Bad(
        "bad source range",
        SERVICE,
        ("spec", "loadBalancerSourceRanges", 0),
        "1.2.3.4/40",
        "spec.loadBalancerSourceRanges[0]",
        "not a CIDR",
    ),
    Bad(
        "bad lb ip",
        SERVICE,
        ("status", "loadBalancer", "ingress", 0, "ip"),
        "x",
        "status.loadBalancer.ingress[0].ip",
        "not an IP",
    ),
    Bad(
        "bad policy",
        SERVICE,
        ("spec", "externalTrafficPolicy"),
        "Nearby",
        "spec.externalTrafficPolicy",
        "Cluster or Local",
    ),
    Bad("bad affinity", SERVICE, ("spec", "sessionAffinity"), "Cookie", "spec.sessionAffinity", "None or ClientIP"),
    Bad("bad type", SERVICE, ("spec", "type"), "Magic", "spec.type", "not a Service type"),
    Bad("spec not an object", SERVICE, ("spec",), "oops", "spec", "must be an object"),
    Bad(
        "slice without service label",
        SLICE,
        ("metadata", "labels"),
        {},
        "metadata.labels[kubernetes.io/service-name]",
        "required",
    ),
    Bad(
        "slice bad address", SLICE, ("endpoints", 1, "addresses", 0), "10.0.0", "endpoints[1].addresses[0]", "not an IP"
    ),
    Bad("slice empty addresses", SLICE, ("endpoints", 1, "addresses"), [], "endpoints[1].addresses", "at least one"),
    Bad(
        "slice ready not bool",
        SLICE,
        ("endpoints", 0, "conditions", "ready"),
        "yes",
        "endpoints[0].conditions.ready",
        "true or false",
    ),
    Bad("slice port range", SLICE, ("ports", 0, "port"), 0, "ports[0].port", "out of range"),
    Bad("node bad pod cidr", NODE, ("spec", "podCIDR"), "10.244.1.0/33", "spec.podCIDRs", "not a CIDR"),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_malformed_object_is_rejected_by_field_and_others_survive(bad: Bad) -> None:
    broken = _set(bad.base, bad.path, bad.value)
    other = copy.deepcopy(bad.base)
    other["metadata"]["name"] = "other"
    snap = build_snapshot([broken, other])
    (rejection,) = snap.rejections
    assert rejection.field == bad.field
    assert bad.reason in rejection.reason
    assert rejection.object.startswith(bad.base["kind"])
    survivors = [*snap.services, *snap.slices, *snap.nodes]
    assert [s.name for s in survivors] == ["other"]


def test_non_object_documents_and_duplicates_are_rejected() -> None:
    snap = build_snapshot(["text", SERVICE, SERVICE])
    assert [r.object for r in snap.rejections] == ["document 1", "Service shop/web"]
    assert len(snap.services) == 1
