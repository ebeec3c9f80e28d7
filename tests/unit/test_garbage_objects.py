"""10,000 generated objects, valid and malformed mixed: nothing crashes, and the valid Services
get exactly the rules they would get without the bad ones."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",), detect_local=DetectLocal.CLUSTER_CIDR,
                     cluster_cidrs=("10.244.0.0/16",))  # fmt: skip

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"s{i}", "namespace": "ns"},
        "spec": {
            "type": ["ClusterIP", "NodePort", "LoadBalancer"][i % 3],
            "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
            "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30000 + i}],  # each its own
        },
    }


def eps(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"s{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"s{i}"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"], "nodeName": "n1"}],
        "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
    }


PATHS: list[tuple[Any, ...]] = [
    ("spec",), ("spec", "ports"), ("spec", "ports", 0, "port"), ("spec", "clusterIP"), ("spec", "type"),
    ("metadata",), ("metadata", "name"), ("spec", "ports", 0, "protocol"), ("spec", "externalIPs"),
    ("status",), ("spec", "sessionAffinity"), ("spec", "externalTrafficPolicy"), ("kind",),
]  # fmt: skip
SLICE_PATHS: list[tuple[Any, ...]] = [
    ("endpoints",), ("endpoints", 0, "addresses"), ("endpoints", 0, "conditions"), ("ports", 0, "port"),
    ("metadata", "labels"), ("addressType",), ("ports",),
]  # fmt: skip


def mutate(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    cur: Any = out
    try:
        for key in path[:-1]:
            cur = cur[key]
        cur[path[-1]] = value
    except (TypeError, KeyError, IndexError):  # an earlier damage reshaped it: damage the top
        out[path[0]] = value
    return out


@settings(
    max_examples=40,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    damage=st.lists(
        st.tuples(st.integers(0, 4999), st.booleans(), st.integers(0, 100), junk), min_size=50, max_size=400
    )
)
def test_garbage_never_costs_valid_services_their_rules(damage: list[tuple[int, bool, int, Any]]) -> None:
    objs: list[Any] = []
    for i in range(5000):
        objs += [service(i), eps(i)]
    broken: set[int] = set()
    for i, on_slice, which, value in damage:
        idx = 2 * i + (1 if on_slice else 0)
        paths = SLICE_PATHS if on_slice else PATHS
        objs[idx] = mutate(objs[idx], paths[which % len(paths)], value)
        broken.add(i)
    objs += ["not an object", 42, None, [1, 2]]  # documents that are not objects at all
    snapshot = build_snapshot(objs)  # must not raise
    # every rejection comes from a damaged object or a non-object document (4 of them)
    assert len(snapshot.rejections) <= len(damage) + 4
    assert sum(r.object.startswith("document ") for r in snapshot.rejections) == 4
    # the same render as without every damaged Service and slice
    clean = build_snapshot([o for n, o in enumerate(objs[:10000]) if n // 2 not in broken])
    got = render(decide(snapshot, CONFIG), CONFIG)
    want = render(decide(clean, CONFIG), CONFIG)
    untouched = {f"ns/s{i}" for i in range(5000) if i not in broken}
    got_ports = {p.service_key: p for p in got.ports if p.service_key in untouched}
    want_ports = {p.service_key: p for p in want.ports if p.service_key in untouched}
    assert got_ports == want_ports
