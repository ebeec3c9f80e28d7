"""``clew lab apply`` admission: what the API server refuses, the lab refuses — one line naming
the object and field, before anything changes — and nothing it is given makes it crash."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clew.lab.admit import admit
from clew.lab.inputs import MAX_PODS_PER_NODE, ApplyError
from clew.lab.plan import LabConfig
from clew.lab.state import LabState
from clew.model.from_kube import service_from_kube


def deployment(name: str = "web", replicas: object = 2, ns: str = "lab", **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name[:63]}},
            "template": {
                "metadata": {"labels": {"app": name[:63]}},
                "spec": {"containers": [{"name": "echo", "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }
    obj.update(extra)
    return obj


def service(name: str = "web", ns: str = "lab", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec},
    }


def lab(nodes: int = 3) -> LabState:
    return LabState(LabConfig(name="u", nodes=nodes))


def refused(objects: list[Any], state: LabState | None = None) -> list[str]:
    with pytest.raises(ApplyError) as info:
        admit(state or lab(), objects)
    return info.value.problems


def test_a_300_character_name_is_one_line_naming_object_and_field() -> None:
    long = "a" * 300
    (svc,) = refused([service(long)])
    (dep,) = refused([deployment(long)])
    assert svc.startswith("Service lab/aaaa") and "metadata.name: must be no more than 63 characters (300 given)" in svc
    assert dep.startswith("Deployment lab/aaaa") and "metadata.name: must be no more than 63 characters" in dep
    assert len(svc) < 200 and "\n" not in svc  # the name is not echoed whole


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (service("Web"), "Service lab/Web: metadata.name: 'Web' is not a valid DNS-1035 label"),
        (service("1web"), "metadata.name: '1web' is not a valid DNS-1035 label"),  # a Service name starts with a letter
        (service("a/b"), "metadata.name: 'a/b' is not a valid DNS-1035 label"),
        (deployment("Web/x"), "Deployment lab/Web/x: metadata.name: 'Web/x' is not a valid DNS-1123 subdomain"),
        (deployment(ns="Bad_NS"), "metadata.namespace: 'Bad_NS' is not a valid DNS-1123 label"),
        (deployment(replicas=-1), "Deployment lab/web: spec.replicas: -1 is out of range 0-2147483647"),
        (deployment(replicas="3"), "spec.replicas: must be an integer, not '3'"),
        (deployment(replicas=True), "spec.replicas: must be an integer, not True"),
        (deployment(replicas=2**40), "spec.replicas: 1099511627776 is out of range"),
        (deployment(replicas=10_000), f"it runs at most {3 * MAX_PODS_PER_NODE}"),
        (service(clusterIP="1.2.3.4"), "spec.clusterIP: 1.2.3.4: provided IP is not in the valid range 10.96.0.0/12"),
        (service(clusterIP="10.96.0.0"), "provided IP is not in the valid range"),
        (service(clusterIP="banana"), "spec.clusterIP: 'banana' is not an IPv4 address"),
        (service(type="Magic"), "spec.type: 'Magic' is not one of"),
        (service(ports=[{"port": 0}]), "spec.ports[0].port: 0 is out of range 1-65535"),
        (service(type="NodePort", ports=[{"port": 80, "nodePort": 80}]), "spec.ports[0].nodePort: 80 is out of range"),
        (service(ports="80"), "spec.ports: must be a list, not str"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "Pod default/p: kind: 'Pod': the lab applies"),
        ({"apiVersion": "v2", "kind": "Service", "metadata": {"name": "p"}}, "apiVersion: 'v2': a Service is v1"),
        ({"apiVersion": "v1", "kind": "Service"}, "Service (document 1): metadata: Required value"),
        ([1, 2], "document 1: must be an object, not list"),
    ],
)
def test_garbage_is_refused_with_object_and_field(obj: Any, expected: str) -> None:
    (line,) = refused([obj])
    assert expected in line, line


def test_labels_and_annotations_as_the_api_server_checks_them() -> None:
    big = service()
    big["metadata"]["annotations"] = {"a": "x" * (300 * 1024)}
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in refused([big])[0]
    label = service()
    label["metadata"]["labels"] = {"app": "x" * 64}
    assert "metadata.labels['app']" in refused([label])[0]
    key = deployment()
    key["spec"]["template"]["metadata"]["labels"] = {"bad key!": "x"}
    assert "spec.template.metadata.labels: key 'bad key!'" in refused([key])[0]
    mismatch = deployment()
    mismatch["spec"]["selector"]["matchLabels"] = {"app": "other"}
    assert "`selector` does not match template `labels`" in refused([mismatch])[0]


def test_every_bad_object_is_named_and_nothing_is_admitted() -> None:
    state = lab()
    before = json.dumps(state.to_json(), sort_keys=True)
    problems = refused([deployment("ok"), service("ok"), deployment("x", replicas=-1), service("Y")], state)
    assert [p.split(":")[0] for p in problems] == ["Deployment lab/x", "Service lab/Y"]
    assert json.dumps(state.to_json(), sort_keys=True) == before


def test_allocations_are_unique_kept_and_immutable() -> None:
    state = lab()
    out = admit(state, [service("a"), service("b", type="NodePort"), service("c", type="NodePort")])
    ips = [out.services[f"lab/{n}"]["spec"]["clusterIP"] for n in "abc"]
    assert ips == ["10.96.0.10", "10.96.0.11", "10.96.0.12"]
    ports = [out.services[f"lab/{n}"]["spec"]["ports"][0]["nodePort"] for n in "bc"]
    assert ports == [30000, 30001]
    state.services = out.services
    again = admit(state, [service("b", type="NodePort")])  # re-applied: same IP, same port
    assert again.services["lab/b"]["spec"]["clusterIP"] == "10.96.0.11"
    assert again.services["lab/b"]["spec"]["ports"][0]["nodePort"] == 30000
    assert "spec.clusterIP: field is immutable (it is 10.96.0.10)" in refused([service("a", clusterIP="10.96.0.20")],
                                                                              state)[0]  # fmt: skip
    assert "(to Service lab/b)" in refused([service("d", type="NodePort", ports=[{"port": 1, "nodePort": 30000}])],
                                           state)[0]  # fmt: skip
    assert "already allocated (to Service lab/a)" in refused([service("d", clusterIP="10.96.0.10")], state)[0]


def test_pod_names_may_not_clash_across_namespaces() -> None:
    (line,) = refused([deployment("web", ns="a"), deployment("web", ns="b")])
    assert line.startswith("Deployment b/web: metadata.name: the lab names pods web-<i> in every namespace")


def test_admitted_services_are_what_the_agents_accept() -> None:
    out = admit(lab(), [service("a", type="LoadBalancer"), service("h", clusterIP="None")])
    service_from_kube(out.services["lab/a"])  # no Invalid


def test_5000_services_are_admitted_in_linear_time() -> None:
    objects = [service(f"s{i}", type="NodePort") for i in range(2500)] + [service(f"c{i}") for i in range(2500)]
    started = time.perf_counter()
    out = admit(lab(), objects)
    seconds = time.perf_counter() - started
    assert len({s["spec"]["clusterIP"] for s in out.services.values()}) == 5000
    assert len({s["spec"]["ports"][0]["nodePort"] for s in out.services.values() if s["spec"].get("type")}) == 2500
    assert seconds < 20, seconds  # generous: a shared 2-CPU machine; ~1 s measured alone


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=70) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PATHS = [("metadata",), ("metadata", "name"), ("metadata", "namespace"), ("metadata", "labels"), ("spec",),
         ("spec", "replicas"), ("spec", "template"), ("spec", "ports"), ("spec", "type"), ("spec", "clusterIP"),
         ("spec", "selector"), ("kind",), ("apiVersion",)]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([deployment(), service(), service(type="NodePort")]), st.sampled_from(PATHS), junk)
def test_no_garbage_crashes_admission(base: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    obj = copy.deepcopy(base)
    target = obj
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    state = lab()
    try:
        out = admit(state, [obj])
    except ApplyError as e:
        assert all(p and "\n" not in p for p in e.problems)
        return
    assert out.changed  # admitted: then it is a well-formed object


def test_one_service_may_use_a_node_port_for_tcp_and_udp() -> None:
    """The API server allows it (DNS-style TCP+UDP on one NodePort); the same port twice is a duplicate."""
    state = lab()
    both = [{"name": "t", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "u", "port": 80, "protocol": "UDP", "nodePort": 30080}]  # fmt: skip
    out = admit(state, [service("dns", type="NodePort", ports=both)])
    assert [p["nodePort"] for p in out.services["lab/dns"]["spec"]["ports"]] == [30080, 30080]
    state.services = out.services
    again = admit(state, [service("dns", type="NodePort", ports=both)])  # re-applied: kept
    assert [p["nodePort"] for p in again.services["lab/dns"]["spec"]["ports"]] == [30080, 30080]
    twice = [{"name": "t", "port": 80, "nodePort": 30090}, {"name": "t2", "port": 81, "nodePort": 30090}]
    assert "30090/TCP: Duplicate value" in refused([service("d", type="NodePort", ports=twice)], state)[0]
    assert "(to Service lab/dns)" in refused([service("e", type="NodePort",
                                                       ports=[{"port": 1, "protocol": "UDP", "nodePort": 30080}])],
                                             state)[0]  # fmt: skip
