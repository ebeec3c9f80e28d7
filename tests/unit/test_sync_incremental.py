"""The sync engine with and without the source's change hint ends every step with the same
rules, and with the hint it decides and renders only the changed Services."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from clew.model.from_kube import build_snapshot
from clew.model.objects import Changes, EndpointSlice, Service, Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy import sync as sync_module
from clew.proxy.iptables import apply
from clew.proxy.sync import ProxySyncer

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",), detect_local=DetectLocal.CLUSTER_CIDR,
                     cluster_cidrs=("10.244.0.0/16",))  # fmt: skip


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the restore payloads instead of loading them."""
    loaded: list[str] = []
    monkeypatch.setattr(apply, "full_sync", lambda ns, rendered, **_: loaded.append("full") or apply.FullSync(True))
    monkeypatch.setattr(apply, "partial_sync", lambda ns, text: loaded.append(text))
    monkeypatch.setattr(apply, "remove_other_mode_leftovers", lambda ns: [])
    monkeypatch.setattr(apply.NodeIptables, "delete_udp_flows", lambda *a, **k: 0)
    return loaded


def objects(i: int, eps: list[str]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "ns"},
         "spec": {"type": "NodePort" if i % 4 == 0 else "ClusterIP", "clusterIP": f"10.96.0.{i + 1}",
                  "ports": [{"name": "p", "port": 80, "nodePort": 30000 + i, "protocol": "TCP" if i % 3 else "UDP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": f"s{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"s{i}"}},
         "endpoints": [{"addresses": [ip], "nodeName": "n1" if ip.endswith("1") else "n2"} for ip in eps],
         "ports": [{"name": "p", "port": 8080, "protocol": "TCP" if i % 3 else "UDP"}]},
    ]  # fmt: skip


def test_hinted_and_full_pass_engines_agree_step_by_step(no_kernel: list[str]) -> None:
    rng = random.Random(4)
    state: dict[int, list[str]] = {i: [f"10.244.{i}.{j + 1}" for j in range(rng.randint(0, 3))] for i in range(40)}

    def snapshot(changed: set[int] | None) -> Snapshot:
        snap = build_snapshot([o for i, eps in sorted(state.items()) for o in objects(i, eps)])
        if changed is None:
            return snap
        services = {s.key: s for s in snap.services}
        slices: dict[str, tuple[EndpointSlice, ...]] = {}
        for sl in snap.slices:
            slices[sl.service_key] = (*slices.get(sl.service_key, ()), sl)
        keys = frozenset(f"ns/s{i}" for i in changed)
        return replace(snap, changes=Changes(keys, False, services, slices))

    hinted, plain = ProxySyncer("a", CONFIG), ProxySyncer("b", CONFIG)
    assert hinted.sync(snapshot(None)).full and plain.sync(snapshot(None)).full
    calls: list[int] = []
    original = sync_module.decide_service

    def counting(svc: Service, *args: Any) -> Any:
        calls.append(1)
        return original(svc, *args)

    sync_module.decide_service = counting  # type: ignore[assignment]
    try:
        for _ in range(60):
            i = rng.randrange(45)
            if i in state and rng.random() < 0.3:
                del state[i]
            else:
                state[i] = [f"10.244.{i}.{j + 1}" for j in range(rng.randint(0, 3))]
            calls.clear()
            a = hinted.sync(snapshot({i}))
            assert len(calls) <= 1  # only the changed Service was decided again
            b = plain.sync(snapshot(None))
            assert a.ok and b.ok and not a.full and not b.full
            assert hinted.payload() == plain.payload()
            assert a.rules == b.rules and a.service_ports == b.service_ports
    finally:
        sync_module.decide_service = original  # type: ignore[assignment]


def test_a_node_change_falls_back_to_a_full_pass() -> None:
    syncer = ProxySyncer("a", CONFIG)
    snap = build_snapshot(objects(1, ["10.244.1.1"]))
    assert syncer.sync(snap).full
    hint = Changes(frozenset(), True, {}, {})
    assert syncer.sync(replace(snap, changes=hint)).ok  # a full pass over the snapshot
    other = ProxySyncer("b", CONFIG)
    assert other.sync(snap).ok
    assert syncer.payload() == other.payload()
