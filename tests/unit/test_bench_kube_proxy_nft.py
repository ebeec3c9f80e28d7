"""kube-proxy's own nftables layout for ``clew bench sync --mode nftables``, checked without root:
its shapes are kube-proxy's (reference §3) and a change is kube-proxy's partial sync — only the
changed Service's chains and elements, element diffs, stale chains flushed now, deleted later."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clew.bench.kube_proxy_nft import KubeProxyNft, port_layout
from clew.bench.sync import CONFIG
from clew.bench.synthetic import objects
from clew.model.from_kube import build_snapshot
from clew.proxy.nftables import names
from clew.proxy.policy import PortPolicy, decide


@pytest.fixture
def policies() -> list[PortPolicy]:
    return decide(build_snapshot(objects(12)), CONFIG)


def _of(policies: list[PortPolicy], key: str) -> list[PortPolicy]:
    return [p for p in policies if p.service_key == key]


def test_full_table_has_kube_proxys_shapes(policies: list[PortPolicy]) -> None:
    text = KubeProxyNft(policies, CONFIG).full()
    svc = names.service_chain("bench", "svc-5", "tcp", "http")
    ep = names.endpoint_chain("bench", "svc-5", "tcp", "http", "10.244.0.25", 8080)
    assert svc.startswith("service-") and svc.endswith("-bench/svc-5/tcp/http")
    assert f"add rule ip kube-proxy {svc} numgen random mod 3 vmap {{ 0 : goto {ep} , " in text
    assert f"add rule ip kube-proxy {ep} meta l4proto tcp dnat to 10.244.0.25:8080" in text
    assert f"add element ip kube-proxy service-ips {{ 10.96.0.6 . tcp . 80 : goto {svc} }}" in text
    ext = names.external_chain("bench", "svc-5", "tcp", "http")  # svc-5 is a NodePort (every 5th)
    assert f"add element ip kube-proxy service-nodeports {{ tcp . 30001 : goto {ext} }}" in text
    assert "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }" in text
    assert "add element ip kube-proxy nodeport-ips { 192.168.50.2 }" in text
    lines = text.splitlines()
    first_rule = next(i for i, line in enumerate(lines) if line.startswith("add rule"))
    assert all(not line.startswith(("add chain", "add map", "add set")) for line in lines[first_rule:])


def test_one_endpoint_replaced_touches_that_service_only(policies: list[PortPolicy]) -> None:
    kp = KubeProxyNft(policies, CONFIG)
    before = _of(policies, "bench/svc-3")[0]
    moved = replace(before.cluster_endpoints[0], ip="10.245.0.1")
    after = replace(before, cluster_endpoints=(moved, *before.cluster_endpoints[1:]))
    tx, later = kp.change("bench/svc-3", [*_of(policies, "bench/svc-2"), after])
    assert all("bench/svc-3/" in line or "10.96.0.4 " in line for line in tx.splitlines()), tx
    old_ep = names.endpoint_chain("bench", "svc-3", "tcp", "http", before.cluster_endpoints[0].ip, 8080)
    new_ep = names.endpoint_chain("bench", "svc-3", "tcp", "http", "10.245.0.1", 8080)
    assert f"add chain ip kube-proxy {new_ep}" in tx and f"flush chain ip kube-proxy {old_ep}" in tx
    assert "element" not in tx  # same keys, same verdicts: no element changes
    assert later == f"delete chain ip kube-proxy {old_ep}\n"


def test_removed_then_added_service_diffs_its_elements(policies: list[PortPolicy]) -> None:
    kp = KubeProxyNft(policies, CONFIG)
    tx, later = kp.change("bench/svc-5", [])
    assert "delete element ip kube-proxy service-ips { 10.96.0.6 . tcp . 80 }" in tx
    assert "delete element ip kube-proxy service-nodeports { tcp . 30001 }" in tx
    assert "add " not in tx and later.count("delete chain") == 5  # service, external, 3 endpoints
    tx, later = kp.change("bench/svc-5", _of(policies, "bench/svc-5"))
    assert "add element ip kube-proxy cluster-ips { 10.96.0.6 }" in tx and later == ""
    assert sorted(kp.full().splitlines()) == sorted(KubeProxyNft(policies, CONFIG).full().splitlines())


def test_no_endpoints_rejects_and_unsupported_ports_are_named(policies: list[PortPolicy]) -> None:
    p = _of(policies, "bench/svc-5")[0]
    empty = port_layout(replace(p, cluster_endpoints=(), endpoints=(), has_endpoints=False), CONFIG)
    assert empty.chains == {}
    assert empty.elements[("no-endpoint-services", "10.96.0.6 . tcp . 80")] == "goto reject-chain"
    with pytest.raises(ValueError, match="bench/svc-5:http"):
        port_layout(replace(p, affinity_timeout=10800), CONFIG)
