"""NftSyncer against the real kernel, in throwaway namespaces: after every step of a seeded
sequence of changes (endpoints, groups, affinity, NodePorts, Local policy, clashes), the live
``ip clew`` table equals what a fresh full render loads into an empty namespace — sets, maps,
elements with values and comments, chains with their base specs, and every rule as the kernel
lists it — and a foreign table in the same namespace, changed between and during syncs, is
exactly as its owner left it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from topology import unique_prefix

from clew.kernel import netns, nft_json
from clew.kernel.nftables import NodeNft
from clew.model.from_kube import build_snapshot
from clew.model.objects import Changes, EndpointSlice, Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.nftables import apply, render
from clew.proxy.nftables.sync import NftSyncer
from clew.proxy.node_settings import node_config
from clew.proxy.policy import decide

pytestmark = pytest.mark.kernel

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",), detect_local=DetectLocal.CLUSTER_CIDR,
                     cluster_cidrs=("10.244.0.0/16",))  # fmt: skip
FOREIGN = """add table ip other
add chain ip other input { type filter hook input priority 10 ; }
add set ip other seen { type ipv4_addr ; }
add rule ip other input ip saddr @seen counter accept
"""


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Two namespaces: the node, and an empty one for fresh reference loads."""
    base = unique_prefix("sy")
    names = (f"{base}-node", f"{base}-ref")
    made = []
    try:
        for n in names:
            netns.create(n)
            made.append(n)
        yield names
    finally:
        for n in made:
            netns.delete(n)


def objects(i: int, eps: list[str], *, affinity: bool = False, udp: bool = False, node_port: bool = False,
            local: bool = False, clash: bool = False) -> list[Any]:  # fmt: skip
    proto = "UDP" if udp else "TCP"
    port: dict[str, Any] = {"name": "p", "port": 80, "protocol": proto}
    spec: dict[str, Any] = {"clusterIP": f"10.96.0.{i + 1}", "ports": [port]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    if clash:
        spec["externalIPs"] = ["192.168.99.1"]
    if node_port:
        spec["type"], port["nodePort"] = "NodePort", 30000 + i
        if local:
            spec["externalTrafficPolicy"] = "Local"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "ns"}, "spec": spec},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": f"s{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"s{i}"}},
         "endpoints": [{"addresses": [ip], "nodeName": "n1" if ip.endswith(".1") else "n2"} for ip in eps],
         "ports": [{"name": "p", "port": 8080, "protocol": proto}]},
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


def table(k: NodeNft, name: str = "clew") -> Any:
    """The table as the kernel lists it, handles left out: `nft_json.State` (elements with
    comments, chains with base specs) and each chain's rules' expressions in order."""
    listing = k.list_json("ruleset")
    state = nft_json.state_of(listing, "ip", name)
    rules: dict[str, list[str]] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("table") == name and rule.get("family") == "ip":
            rules.setdefault(rule["chain"], []).append(json.dumps(rule["expr"], sort_keys=True))
    return state, rules


def reference(ref: NodeNft, snapshot: Snapshot) -> Any:
    config = node_config(CONFIG, snapshot)
    ref.run(render.script(render.render(decide(snapshot, config), config)))
    return table(ref)


class Racing:
    """The node's kernel, with another program committing to its own table right before each of
    our transactions (after the sync decided what to write): the window a concurrent writer has."""

    def __init__(self, ours: NodeNft, theirs: NodeNft, written: list[str]) -> None:
        self.ours, self.theirs, self.written = ours, theirs, written

    def run(self, script: str) -> None:
        self.written.append(f"10.3.{len(self.written)}.1")
        self.theirs.run(f"add element ip other seen {{ {self.written[-1]} }}")
        self.ours.run(script)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ours, name)


def test_partial_syncs_leave_the_table_a_fresh_load_would_and_others_tables_alone(pair: tuple[str, str]) -> None:
    node_ns, ref_ns = pair
    node, ref, theirs = NodeNft(node_ns), NodeNft(ref_ns), NodeNft(node_ns)
    try:
        node.run(FOREIGN)
        foreign: list[str] = []
        kernel = Racing(node, theirs, foreign)
        # full_sync_period 0: every sync first runs the periodic check, which reads the whole table
        # and must find it as the syncs left it (else the sync would be full)
        s = NftSyncer(node_ns, CONFIG, kernel=kernel, generation=apply.generation_for(node_ns),
                      rules=apply.rules_for(node_ns), delete_udp_flows=apply.conntrack_for(node_ns),
                      full_sync_period=0.0, verify_elements=True)  # fmt: skip
        rng = random.Random(11)
        state: dict[int, dict[str, Any]] = {i: {"eps": [f"10.244.{i}.1"]} for i in range(8)}
        assert s.sync(snap(state)).full
        assert table(node) == reference(ref, snap(state))
        shared = [f"10.244.0.{j}" for j in range(1, 5)]
        for step in range(40):
            i = rng.randrange(12)
            if i in state and rng.random() < 0.2:
                del state[i]
            else:
                n = rng.choice([0, 1, 2, 3])
                eps = sorted(set(rng.sample(shared, min(n, 1)) + [f"10.244.{i}.{j}" for j in range(1, n + 1)]))
                state[i] = {"eps": eps, "affinity": rng.random() < 0.2, "udp": i % 4 == 0,
                            "node_port": rng.random() < 0.4, "local": rng.random() < 0.3,
                            "clash": rng.random() < 0.1}  # fmt: skip
            # the other table's owner writes between syncs and inside the sync's window
            foreign.append(f"10.1.{step}.1")
            node.run(f"add element ip other seen {{ {foreign[-1]} }}")
            r = s.sync(snap(state, {i} if step % 2 else None))
            assert r.ok and not r.full, (step, r.error)
            assert table(node) == reference(ref, snap(state)), step
            node.run(f"add element ip other seen {{ 10.2.{step}.1 }}")  # someone else's commit after ours
            foreign.append(f"10.2.{step}.1")
            assert s.tampered() == [], step  # the check reads, and finds nothing wrong
            other, other_rules = table(node, "other")
            assert set(other.elements["seen"]) == set(foreign) and len(other_rules["input"]) == 1
    finally:
        for k in (node, ref, theirs):
            k.close()


def test_a_failed_partial_sync_changes_nothing_and_the_next_full_one_repairs(pair: tuple[str, str]) -> None:
    node_ns, ref_ns = pair
    node, ref = NodeNft(node_ns), NodeNft(ref_ns)
    try:
        s = NftSyncer(node_ns, CONFIG)
        state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1", "10.244.1.2"]}}
        s.sync(snap(state))
        node.run("delete element ip clew hairpin { 10.244.1.2 . 10.244.1.2 }")  # someone meddles
        before = table(node)
        state[1] = {"eps": ["10.244.1.1"]}
        r = s.sync(snap(state, {1}))  # deletes the hairpin element that is gone: refused
        assert not r.ok and "hairpin" in (r.error or "")
        assert table(node) == before  # all or nothing
        r = s.sync(snap(state, {1}))
        assert r.ok and r.full and table(node) == reference(ref, snap(state))
    finally:
        node.close()
        ref.close()


def test_the_tamper_check_sees_changed_rules_a_deleted_table_and_nothing_else(pair: tuple[str, str]) -> None:
    node_ns, _ = pair
    node = NodeNft(node_ns)
    try:
        node.run(FOREIGN)
        s = NftSyncer(node_ns, CONFIG)
        state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1"]}}
        s.sync(snap(state))
        assert s.tampered() == []
        node.run("add element ip other seen { 10.9.9.9 }")  # someone else's commit: read, intact
        assert s.tampered() == []
        node.run("flush chain ip clew masquerading\nadd rule ip clew masquerading masquerade")
        assert [d.chain for d in s.tampered()] == ["masquerading"]
        s.request_full()
        s.sync(snap(state))
        node.run("add element ip other seen { 10.9.9.8 }")
        assert s.tampered() == []
        # a rule replaced by another one: the same number of rules, other bytes
        rule = node.list_json("chain ip clew filter-forward")["nftables"][-1]["rule"]
        node.run(f"replace rule ip clew filter-forward handle {rule['handle']} ct state new counter")
        assert [(d.chain, d.change) for d in s.tampered()] == [("filter-forward", "rules changed")]
        node.run("delete table ip clew")
        assert [d.change for d in s.tampered()] == ["table ip clew is gone"]
    finally:
        node.close()
