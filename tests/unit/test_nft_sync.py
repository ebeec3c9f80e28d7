"""The nftables-mode sync engine against an in-memory kernel: partial syncs write only the
changed Services' elements (exact commands), groups and affinity chains come and go with the
ports that use them, a failure makes the next sync full, and any sequence of changes leaves the
kernel exactly as a fresh full load of the same objects."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from nft_standin import MiniNft, MiniRenderer

from clew.model.from_kube import build_snapshot
from clew.model.objects import Changes, EndpointSlice, Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.nftables.sync import NftSyncer

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",))


def objects(i: int, eps: list[str], *, affinity: bool = False, port_name: str = "p", udp: bool = False) -> list[Any]:
    proto = "UDP" if udp else "TCP"
    spec: dict[str, Any] = {
        "clusterIP": f"10.96.0.{i + 1}",
        "ports": [{"name": port_name, "port": 80, "protocol": proto}],
    }
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "ns"}, "spec": spec},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": f"s{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"s{i}"}},
         "endpoints": [{"addresses": [ip], "nodeName": "n1"} for ip in eps],
         "ports": [{"name": port_name, "port": 8080, "protocol": proto}]},
    ]  # fmt: skip


def snap(state: dict[int, dict[str, Any]], changed: set[int] | None = None) -> Snapshot:
    s = build_snapshot([o for i, kw in sorted(state.items()) for o in objects(i, **kw)])
    if changed is None:
        return s
    services = {x.key: x for x in s.services}
    slices: dict[str, tuple[EndpointSlice, ...]] = {}
    for sl in s.slices:
        slices[sl.service_key] = (*slices.get(sl.service_key, ()), sl)
    return replace(s, changes=Changes(frozenset(f"ns/s{i}" for i in changed), False, services, slices))


def syncer(kernel: MiniNft | None = None) -> tuple[NftSyncer, MiniNft]:
    k = kernel or MiniNft()
    gen = lambda: k.gen  # noqa: E731
    return NftSyncer("fake", CONFIG, kernel=k, generation=gen, renderer=MiniRenderer()), k


def fresh(snapshot: Snapshot) -> Any:
    s, k = syncer()
    assert s.sync(snapshot).ok
    return k.state()


def written(k: MiniNft) -> list[str]:
    return k.log[-1].splitlines()


def test_first_sync_is_full_and_loads_the_render() -> None:
    s, k = syncer()
    state = {1: {"eps": ["10.244.1.1", "10.244.1.2"]}, 2: {"eps": []}}
    r = s.sync(snap(state))
    assert r.ok and r.full and r.service_ports == 2
    assert written(k)[:2] == ["add table ip clew", "delete table ip clew"]
    elements = k.state()[2]
    assert elements["dst-tcp-2"] == {
        "10.96.0.2 . 80 . 0": ("10.244.1.1 . 8080", "ns/s1:p"),
        "10.96.0.2 . 80 . 1": ("10.244.1.2 . 8080", "ns/s1:p"),
    }
    assert elements["no-endpoint-reject"] == {"10.96.0.3 . tcp . 80": (None, "ns/s2:p")}


def test_partial_sync_writes_only_the_changed_services_elements() -> None:
    s, k = syncer()
    state = {i: {"eps": [f"10.244.{i}.1", f"10.244.{i}.2"]} for i in range(5)}
    s.sync(snap(state))
    state[3] = {"eps": ["10.244.3.1", "10.244.3.9"]}
    r = s.sync(snap(state, {3}))
    assert r.ok and not r.full and r.changed_ports == 1
    assert written(k) == [
        "delete element ip clew dst-tcp-2 { 10.96.0.4 . 80 . 1 }",
        "delete element ip clew hairpin { 10.244.3.2 . 10.244.3.2 }",
        'add element ip clew dst-tcp-2 { 10.96.0.4 . 80 . 1 comment "ns/s3:p" : 10.244.3.9 . 8080 }',
        "add element ip clew hairpin { 10.244.3.9 . 10.244.3.9 }",
    ]
    assert k.state() == fresh(snap(state))
    # the same change found by the full pass (no hint) writes the same
    s2, k2 = syncer()
    state[3] = {"eps": ["10.244.3.1", "10.244.3.2"]}
    s2.sync(snap(state))
    state[3] = {"eps": ["10.244.3.1", "10.244.3.9"]}
    assert not s2.sync(snap(state)).full
    assert written(k2) == written(k)


def test_nothing_changed_writes_nothing() -> None:
    s, k = syncer()
    state = {1: {"eps": ["10.244.1.1"]}}
    s.sync(snap(state))
    n = len(k.log)
    r = s.sync(snap(state))
    assert r.ok and not r.full and not r.wrote and len(k.log) == n


def test_groups_appear_and_go_with_the_endpoint_count() -> None:
    s, k = syncer()
    state = {1: {"eps": ["10.244.1.1", "10.244.1.2"]}, 2: {"eps": ["10.244.2.1"]}}
    s.sync(snap(state))
    state[1] = {"eps": ["10.244.1.1", "10.244.1.2", "10.244.1.3"]}
    s.sync(snap(state, {1}))
    lines = written(k)
    assert "delete map ip clew dst-tcp-2" in lines
    assert any(x.startswith("add map ip clew dst-tcp-3 ") for x in lines)
    assert lines.index("flush chain ip clew dst") < lines.index("delete map ip clew dst-tcp-2")
    dst_rules = [x for x in lines if x.startswith("add rule ip clew dst ")]
    assert [x.rsplit("@", 1)[1] for x in dst_rules] == ["dst-tcp-1", "dst-tcp-3"]
    assert not any("dst-tcp-1 {" in x for x in lines if x.startswith("add element"))  # s2 untouched
    assert set(k.state()[1]) >= {"dst-tcp-1", "dst-tcp-3"} and "dst-tcp-2" not in k.state()[1]
    assert k.state() == fresh(snap(state))
    # a change inside a group keeps the role chain alone
    state[1] = {"eps": ["10.244.1.1", "10.244.1.2", "10.244.1.4"]}
    s.sync(snap(state, {1}))
    assert not any("chain" in x or "map ip" in x for x in written(k))


def test_affinity_chains_and_sets_come_and_go() -> None:
    s, k = syncer()
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1"]}}
    s.sync(snap(state))
    state[1] = {"eps": ["10.244.1.1", "10.244.1.2"], "affinity": True}
    s.sync(snap(state, {1}))
    lines = written(k)
    chain = "service-ns/s1/tcp/p"
    assert lines[:2] == [f"add chain ip clew {chain}", f"flush chain ip clew {chain}"]
    assert any(x.startswith("add set ip clew affinity-ns/s1/tcp/p ") for x in lines)
    assert k.state() == fresh(snap(state))
    # endpoints change: the chain is rewritten, the affinity set (and its entries) kept
    state[1] = {"eps": ["10.244.1.1", "10.244.1.3"], "affinity": True}
    s.sync(snap(state, {1}))
    assert not any("set ip clew affinity" in x for x in written(k))
    assert k.state() == fresh(snap(state))
    # affinity off: element first, then the chain and the set go
    state[1] = {"eps": ["10.244.1.1"]}
    s.sync(snap(state, {1}))
    lines = written(k)
    assert lines.index(f"delete chain ip clew {chain}") > lines.index(
        "delete element ip clew service-ips { 10.96.0.2 . tcp . 80 }"
    )
    assert "delete set ip clew affinity-ns/s1/tcp/p" in lines
    assert k.state() == fresh(snap(state))


def test_a_failed_sync_makes_the_next_one_full() -> None:
    s, k = syncer()
    state = {1: {"eps": ["10.244.1.1"]}}
    s.sync(snap(state))
    state[1] = {"eps": ["10.244.1.2"]}
    k.fail_next = "Error: Could not process rule: Device or resource busy"
    r = s.sync(snap(state, {1}))
    assert not r.ok and not r.full and "busy" in (r.error or "")
    r = s.sync(snap(state, {1}))
    assert r.ok and r.full
    assert k.state() == fresh(snap(state))


def test_a_full_sync_over_a_changed_table_equals_a_fresh_load() -> None:
    s, k = syncer()
    state = {i: {"eps": [f"10.244.{i}.1"] * (i % 3)} for i in range(6)}
    s.sync(snap(state))
    k.run("add chain ip clew stray\nadd element ip clew hairpin { 1.2.3.4 . 1.2.3.4 }")  # someone meddles
    s.request_full()
    assert s.sync(snap(state)).full
    assert k.state() == fresh(snap(state))


def test_a_rejected_port_is_left_out_and_the_others_keep_their_elements() -> None:
    s, k = syncer()
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1"]}, 2: {"eps": ["10.244.2.1"], "port_name": "bad"}}
    r = s.sync(snap(state))
    assert r.ok and r.service_ports == 1
    assert r.rejected == (("ns/s2:bad/tcp", "port name 'bad' cannot be expressed"),)
    assert "10.96.0.2 . 80 . 0" in k.state()[2]["dst-tcp-1"]
    state[2] = {"eps": ["10.244.2.1"]}
    r = s.sync(snap(state, {2}))
    assert r.ok and r.rejected == () and "10.96.0.3 . 80 . 0" in k.state()[2]["dst-tcp-1"]


def test_tamper_check_reads_only_when_someone_else_committed() -> None:
    s, k = syncer()
    state = {1: {"eps": ["10.244.1.1"]}}
    s.sync(snap(state))
    reads: list[str] = []
    real = k.list_json
    k.list_json = lambda what="ruleset": reads.append(what) or real(what)  # type: ignore[method-assign]
    assert s.tampered() == [] and reads == []  # our own commit only: nothing read
    k.gen += 1  # someone else's commit (another table)
    assert s.tampered() == [] and reads == ["chains"]
    assert s.tampered() == [] and reads == ["chains"]  # verified at this generation
    k.table.chains.pop("dst")  # type: ignore[union-attr]
    k.gen += 1
    assert [d.chain for d in s.tampered()] == ["dst"]
    k.table = None
    k.gen += 1
    assert [d.change for d in s.tampered()] == ["table ip clew is gone"]


def test_udp_flows_to_removed_endpoints_are_deleted() -> None:
    deleted: list[dict[str, Any]] = []
    k = MiniNft()
    s = NftSyncer("fake", CONFIG, kernel=k, renderer=MiniRenderer(),
                  delete_udp_flows=lambda **kw: deleted.append(kw) or 1)  # fmt: skip
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1", "10.244.1.2"], "udp": True}}
    s.sync(snap(state))
    state[1] = {"eps": ["10.244.1.1"], "udp": True}
    r = s.sync(snap(state, {1}))
    assert r.conntrack_deleted == 1 and deleted == [{"orig_dst": "10.96.0.2", "dst_nat": "10.244.1.2"}]


@pytest.mark.parametrize("hinted", [True, False])
def test_random_change_sequences_equal_a_fresh_full_load(hinted: bool) -> None:
    rng = random.Random(8)
    s, k = syncer()
    state: dict[int, dict[str, Any]] = {}
    s.sync(snap(state))
    shared = [f"10.244.0.{j}" for j in range(1, 6)]  # endpoints shared between Services: hairpin refcounts
    for step in range(1000):
        i = rng.randrange(30)
        if i in state and rng.random() < 0.25:
            del state[i]
        else:
            n = rng.choice([0, 1, 1, 2, 3, 4])
            eps = sorted(set(rng.sample(shared, min(n, 2)) + [f"10.244.{i}.{j}" for j in range(rng.randint(0, n))]))
            state[i] = {"eps": eps, "affinity": rng.random() < 0.15, "udp": i % 5 == 0,
                        "port_name": "bad" if rng.random() < 0.05 else "p"}  # fmt: skip
        r = s.sync(snap(state, {i} if hinted else None))
        assert r.ok and (step == 0 or not r.full), r.error
        if step % 50 == 0 or step > 980:
            assert k.state() == fresh(snap(state)), step
