"""The proxy sync against a stateful fake kernel (`clew.fakes.iptables`), without root.

Each test drives `ProxySyncer` through a sequence of snapshots — full syncs, partial syncs with
and without the source's change hint, Services and endpoints coming and going — and checks the
fake's final tables against a fresh full sync of the last snapshot, canonically. The fake refuses
what the kernel refuses (a ``-D`` of a missing rule, a ``-X`` of a referenced chain, a failed
restore changes nothing), so a partial plan that forgets its ``-D`` lines, or a full sync that
forgets foreign chains, fails here: both mutations were checked by hand (see notes/seam.md).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clew.fakes.iptables import FakeIptables
from clew.model.from_kube import build_snapshot
from clew.model.objects import Changes, EndpointSlice, Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import canonical
from clew.proxy import names
from clew.proxy.iptables import apply
from clew.proxy.iptables.full import owned
from clew.proxy.sync import ProxySyncer

FOREIGN = Path(__file__).resolve().parents[1] / "golden" / "foreign"
CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",), detect_local=DetectLocal.CLUSTER_CIDR,
                     cluster_cidrs=("10.244.0.0/16",))  # fmt: skip
# Chains whose rule order a partial sync does not keep (it inserts at the top; see partial.py):
# compared as multisets, except that KUBE-SERVICES must still end with its KUBE-NODEPORTS jump.
SHARED = {names.KUBE_SERVICES, names.KUBE_NODEPORTS, names.KUBE_EXTERNAL_SERVICES, names.KUBE_PROXY_FIREWALL}


def objects(i: int, eps: list[str]) -> list[dict[str, Any]]:
    """Service ``s{i}`` (ClusterIP, NodePort every 4th, UDP every 3rd, an external IP every 5th)
    with one EndpointSlice holding ``eps`` (those ending in 1 on this node)."""
    proto = "UDP" if i % 3 == 0 else "TCP"
    spec: dict[str, Any] = {"type": "NodePort" if i % 4 == 0 else "ClusterIP", "clusterIP": f"10.96.0.{i + 1}",
                            "ports": [{"name": "p", "port": 80, "protocol": proto}]}  # fmt: skip
    if i % 4 == 0:
        spec["ports"][0]["nodePort"] = 30000 + i
    if i % 5 == 0:
        spec["externalIPs"] = [f"192.168.60.{i + 1}"]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "ns"}, "spec": spec},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": f"s{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"s{i}"}},
         "endpoints": [{"addresses": [ip], "nodeName": "n1" if ip.endswith("1") else "n2"} for ip in eps],
         "ports": [{"name": "p", "port": 8080, "protocol": proto}]},
    ]  # fmt: skip


def snapshot(state: dict[int, list[str]], changed: set[int] | None = None) -> Snapshot:
    snap = build_snapshot([o for i, eps in sorted(state.items()) for o in objects(i, eps)])
    if changed is None:
        return snap
    services = {s.key: s for s in snap.services}
    slices: dict[str, tuple[EndpointSlice, ...]] = {}
    for sl in snap.slices:
        slices[sl.service_key] = (*slices.get(sl.service_key, ()), sl)
    return replace(snap, changes=Changes(frozenset(f"ns/s{i}" for i in changed), False, services, slices))


def tables(fake: FakeIptables) -> dict[str, dict[str, tuple[str | None, Any]]]:
    """The fake's filter and nat, canonically: per chain its policy and rules (a multiset for the
    shared chains, whose order partial syncs do not keep; see SHARED)."""
    out: dict[str, dict[str, tuple[str | None, Any]]] = {}
    for name in ("filter", "nat", "mangle"):
        table = fake.ruleset.tables.get(name)
        if table is None:
            continue
        out[name] = {}
        for chain in table.chains.values():
            rules = [canonical(r) for r in chain.rules]
            if chain.name in SHARED:
                if (name, chain.name) == ("nat", names.KUBE_SERVICES) and rules:
                    assert chain.rules[-1].target is not None and chain.rules[-1].target.name == names.KUBE_NODEPORTS
                out[name][chain.name] = (chain.policy, frozenset(Counter(rules).items()))
            else:
                out[name][chain.name] = (chain.policy, tuple(rules))
    return out


def fresh_full_sync(snap: Snapshot, start: str = "") -> FakeIptables:
    fresh = FakeIptables.from_save(start, "fresh") if start else FakeIptables(where="fresh")
    assert ProxySyncer("fresh", CONFIG, kernel=fresh).sync(snap).ok
    return fresh


def test_partial_and_full_syncs_end_where_a_fresh_full_sync_does() -> None:
    rng = random.Random(7)
    state = {i: [f"10.244.{i}.{j + 1}" for j in range(rng.randint(0, 3))] for i in range(30)}
    for hinted in (True, False):
        fake = FakeIptables()
        syncer = ProxySyncer("n1", CONFIG, kernel=fake)
        assert syncer.sync(snapshot(state)).full
        kinds: Counter[str] = Counter()
        for step in range(80):
            i = rng.randrange(36)
            if i in state and rng.random() < 0.3:
                del state[i]
                kinds["removed"] += 1
            else:
                state[i] = [f"10.244.{i}.{j + 1}" for j in range(rng.randint(0, 3))]
            result = syncer.sync(snapshot(state, {i} if hinted else None))
            assert result.ok, result.error
            kinds["full" if result.full else "partial"] += 1
            if step % 20 == 19:
                assert tables(fake) == tables(fresh_full_sync(snapshot(state)))
        assert kinds["partial"] > 60 and kinds["removed"] > 10, kinds
        assert tables(fake) == tables(fresh_full_sync(snapshot(state)))
        assert any(line.endswith("--noflush --counters") for line in fake.log)


def test_removed_services_leave_no_chain_behind() -> None:
    state = {i: [f"10.244.{i}.1", f"10.244.{i}.2"] for i in range(8)}
    fake = FakeIptables()
    syncer = ProxySyncer("n1", CONFIG, kernel=fake)
    assert syncer.sync(snapshot(state)).ok
    before = set(fake.list_chains()["nat"])
    for i in range(0, 8, 2):
        del state[i]
        assert syncer.sync(snapshot(state, {i})).ok
    after = set(fake.list_chains()["nat"])
    gone = before - after
    assert gone and all(c.startswith(names.SERVICE_CHAIN_PREFIXES) for c in gone)
    assert tables(fake) == tables(fresh_full_sync(snapshot(state)))
    assert not [r for r in fake.rules("nat", names.KUBE_SERVICES) if "ns/s0:p" in r]


FOREIGN_FILES = ["docker_kube_proxy.iptables", "flannel_fwd_accept.iptables", "ufw_like.iptables"]


def foreign_part(fake: FakeIptables) -> dict[tuple[str, str], tuple[str | None, list[Any]]]:
    """What is not clew's: non-owned chains with their rules, built-in chains without clew's
    jumps (as canonical rules, in order)."""
    out: dict[tuple[str, str], tuple[str | None, list[Any]]] = {}
    for table in fake.ruleset.tables.values():
        for chain in table.chains.values():
            if owned(chain.name):
                continue
            rules = [canonical(r) for r in chain.rules if not (r.target and owned(r.target.name))]
            out[table.name, chain.name] = (chain.policy, rules)
    return out


@pytest.mark.parametrize("name", FOREIGN_FILES)
def test_foreign_chains_survive_full_and_partial_syncs(name: str) -> None:
    """Docker's, flannel's, ufw's and kubelet's chains and rules, as iptables-save printed them on
    a real node, stay exactly as they were; a previous kube-proxy's stale Service chains go."""
    text = (FOREIGN / name).read_text()
    fake = FakeIptables.from_save(text)
    foreign = foreign_part(fake)
    fake_tables = set(fake.ruleset.tables)  # the canary adds mangle where there was none
    stale = {c for t in ("filter", "nat") for c in fake.list_chains()[t] if c.startswith("KUBE-SVC-")}
    state = {i: [f"10.244.{i}.1"] for i in range(6)}
    syncer = ProxySyncer("n1", CONFIG, kernel=fake)
    first = syncer.sync(snapshot(state))
    assert first.ok and first.full, first.error
    mine = {c for c in fake.list_chains()["nat"] if c.startswith("KUBE-SVC-")}
    assert not stale & mine and (bool(stale) or name == "ufw_like.iptables")
    for i in (1, 2, 7):
        state[i] = [f"10.244.{i}.1", f"10.244.{i}.2"]
        assert syncer.sync(snapshot(state, {i})).ok
    del state[3]
    assert not syncer.sync(snapshot(state, {3})).full
    syncer.request_full()
    assert syncer.sync(snapshot(state)).full
    assert {k: v for k, v in foreign_part(fake).items() if k[0] in fake_tables} == foreign
    expected = fresh_full_sync(snapshot(state), text)
    assert tables(fake) == tables(expected)
    assert fake.sysctls == {} or fake.sysctls == expected.sysctls


def test_a_refused_partial_sync_changes_nothing_and_the_next_sync_repairs_it() -> None:
    state = {i: [f"10.244.{i}.1"] for i in range(5)}
    fake = FakeIptables()
    syncer = ProxySyncer("n1", CONFIG, kernel=fake)
    assert syncer.sync(snapshot(state)).ok
    before = fake.dump()
    fake.iptables(["-t", "nat", "-F", names.KUBE_SERVICES])  # someone flushed it: -D lines will fail
    flushed = fake.dump()
    del state[1]
    failed = syncer.sync(snapshot(state, {1}))
    assert not failed.ok and "line" in (failed.error or "") and "in netns fake" in (failed.error or "")
    assert fake.dump() == flushed != before  # atomic: nothing of the refused restore was applied
    repaired = syncer.sync(snapshot(state, set()))
    assert repaired.ok and repaired.full
    assert tables(fake) == tables(fresh_full_sync(snapshot(state)))


def test_intact_sees_a_flushed_nat_table_and_a_missing_canary() -> None:
    fake = FakeIptables()
    syncer = ProxySyncer("n1", CONFIG, kernel=fake)
    snap = snapshot({1: ["10.244.1.1"]})
    assert syncer.sync(snap).ok and syncer.intact()
    fake.iptables(["-t", "nat", "-F"])
    assert not syncer.intact()
    syncer.request_full()  # what the agent does when intact() is False
    assert syncer.sync(snap).ok and syncer.intact()
    assert fake.iptables(["-t", "mangle", "-X", names.KUBE_PROXY_CANARY]).returncode == 0
    assert not syncer.intact()


def test_a_second_full_sync_over_foreign_rules_changes_nothing() -> None:
    fake = FakeIptables.from_save((FOREIGN / "docker_kube_proxy.iptables").read_text())
    syncer = ProxySyncer("n1", CONFIG, kernel=fake)
    snap = snapshot({1: ["10.244.1.1"], 4: ["10.244.4.2"]})
    assert syncer.sync(snap).ok
    once = fake.dump()
    syncer.request_full()
    assert syncer.sync(snap).full
    assert fake.dump() == once
    assert parse(once).warnings == []
    assert apply.canary_present(fake) and apply.postrouting_present(fake)


def test_many_foreign_chains_are_read_with_one_save_and_survive() -> None:
    """Past MAX_FOREIGN_CHAINS the full sync reads foreign chains from one iptables-save."""
    many = apply.MAX_FOREIGN_CHAINS + 20
    lines = ["*filter", ":INPUT ACCEPT [7:420]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":CALICO-{n} - [0:0]" for n in range(many)]
    lines += [f"-A INPUT -j CALICO-{n}" for n in range(0, many, 50)]
    lines += [f'-A CALICO-{n} -s 10.{n % 250}.0.0/16 -m comment --comment "cali {n}" -j ACCEPT' for n in range(many)]
    fake = FakeIptables.from_save("\n".join([*lines, "COMMIT", ""]))
    foreign = foreign_part(fake)
    syncer = ProxySyncer("n1", CONFIG, kernel=fake)
    assert syncer.sync(snapshot({1: ["10.244.1.1"]})).ok
    assert any(line.startswith("iptables-restore --counters") for line in fake.log)
    assert {k: v for k, v in foreign_part(fake).items() if k[0] == "filter"} == foreign
    assert tables(fake) == tables(fresh_full_sync(snapshot({1: ["10.244.1.1"]}), "\n".join([*lines, "COMMIT", ""])))
