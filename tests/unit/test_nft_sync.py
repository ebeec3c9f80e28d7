"""The nftables-mode sync engine against an in-memory kernel: partial syncs write only the
changed Services' elements (exact commands), groups and affinity chains come and go with the
ports that use them, a failure makes the next sync full, and any sequence of changes leaves the
kernel exactly as a fresh full load of the same objects."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from clew.fakes.nft import FakeNft
from clew.kernel.errors import KernelError
from clew.model.from_kube import build_snapshot
from clew.model.objects import Changes, EndpointSlice, Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.nftables import render
from clew.proxy.nftables.sync import NftSyncer

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",))


def objects(i: int, eps: list[str], *, affinity: bool = False, udp: bool = False, node_port: bool = False,
            local: bool = False, clash: bool = False) -> list[Any]:  # fmt: skip
    """Service ``s<i>`` (ClusterIP 10.96.0.<i+1>; with ``clash`` the externalIP 192.168.99.1,
    which other Services may claim too) and its slice; endpoints ending in .1 are on this node."""
    proto = "UDP" if udp else "TCP"
    port: dict[str, Any] = {"name": "p", "port": 80, "protocol": proto}
    spec: dict[str, Any] = {"clusterIP": f"10.96.0.{i + 1}", "ports": [port]}
    if clash:
        spec["externalIPs"] = ["192.168.99.1"]
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
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


class GenNft(FakeNft):
    """The fake with a ruleset generation (one per committed transaction), as the kernel's."""

    gen: int = 0

    def run(self, script: str) -> None:
        super().run(script)
        self.gen += 1


def rules_of(k: FakeNft) -> dict[str, list[bytes]]:
    """The fake's rules per chain, as `kernel.nft_rules.RuleDump` gives the kernel's."""
    return {c: [r.encode() for r in k.rules(c)] for c in k.chains()} if k.has_table("ip", "clew") else {}


def syncer(kernel: GenNft | None = None) -> tuple[NftSyncer, GenNft]:
    k = kernel or GenNft()
    return NftSyncer("fake", CONFIG, kernel=k, generation=lambda: k.gen, rules=lambda: rules_of(k)), k


def table(k: FakeNft) -> Any:
    """Everything comparable: chains (base specs), rules in order, sets, elements with comments."""
    state = k.state()
    return None if state is None else (state, {c: k.rules(c) for c in k.chains()})


def fresh(snapshot: Snapshot) -> Any:
    """What a fresh agent's full sync of ``snapshot`` loads."""
    s, k = syncer()
    assert s.sync(snapshot).ok
    return table(k)


def reference(snapshot: Snapshot, rejected: tuple[tuple[str, str], ...] | None = None) -> Any:
    """What ``render.script(render.render(decide(...)))`` loads (the renderer alone); with
    ``rejected``, also checks that the sync rejected the same ports for the same reasons."""
    from clew.proxy.node_settings import node_config
    from clew.proxy.policy import decide

    config = node_config(CONFIG, snapshot)
    rendered = render.render(decide(snapshot, config), config)
    if rejected is not None:
        assert sorted(rejected) == sorted((r.key, r.reason) for r in rendered.rejected)
    k = FakeNft()
    k.run(render.script(rendered))
    return table(k)


def written(k: FakeNft) -> list[str]:
    return k.log[-1].splitlines()


def test_first_sync_is_full_and_loads_the_render() -> None:
    s, k = syncer()
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1", "10.244.1.2"]}, 2: {"eps": []}}
    r = s.sync(snap(state))
    assert r.ok and r.full and r.service_ports == 2
    assert written(k)[:2] == ["add table ip clew", "delete table ip clew"]
    assert k.elements("dst-tcp-2") == {
        "10.96.0.2 . 80 . 0": "10.244.1.1 . 8080",
        "10.96.0.2 . 80 . 1": "10.244.1.2 . 8080",
    }
    assert k.comments("dst-tcp-2") == dict.fromkeys(k.elements("dst-tcp-2"), "ns/s1:p")
    assert k.elements("no-endpoint-reject") == {"10.96.0.3 . tcp . 80": None}
    assert table(k) == reference(snap(state))


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
        'add element ip clew hairpin { 10.244.3.9 . 10.244.3.9 comment "ns/s3:p" }',
    ]
    assert table(k) == fresh(snap(state)) == reference(snap(state))
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
    assert lines[0].startswith("add map ip clew dst-tcp-3 {")
    assert lines[1:4] == [
        "flush chain ip clew dnat-dst",
        "add rule ip clew dnat-dst dnat ip to ip daddr . tcp dport . numgen random mod 1 map @dst-tcp-1",
        "add rule ip clew dnat-dst dnat ip to ip daddr . tcp dport . numgen random mod 3 map @dst-tcp-3",
    ]
    assert lines.index("delete map ip clew dst-tcp-2") > lines.index(
        "delete element ip clew dst-tcp-2 { 10.96.0.2 . 80 . 1 }"
    )
    assert not any("dst-tcp-1 {" in x for x in lines if x.startswith("add element"))  # s2 untouched
    assert "dst-tcp-2" not in k.sets() and set(k.elements("dst-tcp-3")) == {f"10.96.0.2 . 80 . {i}" for i in range(3)}
    assert table(k) == reference(snap(state))
    # a change inside a group keeps the role chain alone
    state[1] = {"eps": ["10.244.1.1", "10.244.1.2", "10.244.1.4"]}
    s.sync(snap(state, {1}))
    assert not any("chain" in x or "map ip" in x for x in written(k))
    # the last port of a group goes: its map and rule go
    del state[2]
    s.sync(snap(state, {2}))
    assert "delete map ip clew dst-tcp-1" in written(k) and "dst-tcp-1" not in k.sets()
    assert table(k) == reference(snap(state))


def test_affinity_chains_and_sets_come_and_go() -> None:
    s, k = syncer()
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1"]}}
    s.sync(snap(state))
    before = set(k.chains())
    state[1] = {"eps": ["10.244.1.1", "10.244.1.2"], "affinity": True}
    s.sync(snap(state, {1}))
    lines = written(k)
    own = set(k.chains()) - before
    assert {c.split("-", 2)[0] for c in own} == {"service", "endpoint"} and len(own) == 3
    assert lines[0].startswith("add chain ip clew service-") and lines[1].startswith("flush chain ip clew service-")
    affinity = {n for n in k.sets() if n.startswith("affinity-")}
    assert len(affinity) == 2
    assert table(k) == reference(snap(state))
    # endpoints change: chains rewritten, the kept endpoint's affinity set (and its entries) kept
    state[1] = {"eps": ["10.244.1.1", "10.244.1.3"], "affinity": True}
    s.sync(snap(state, {1}))
    lines = written(k)
    kept = next(n for n in affinity if "10.244.1.1" in n)
    assert not any(kept in x for x in lines if x.startswith(("add set", "delete set")))
    assert any(x.startswith("delete set ip clew affinity-") and "10.244.1.2" in x for x in lines)
    assert table(k) == reference(snap(state))
    # affinity off: the verdict element goes first, then the chains and sets
    state[1] = {"eps": ["10.244.1.1"]}
    s.sync(snap(state, {1}))
    lines = written(k)
    first_delete_chain = min(i for i, x in enumerate(lines) if x.startswith("delete chain"))
    assert (
        lines.index(next(x for x in lines if x.startswith("delete element ip clew service-ips"))) < first_delete_chain
    )
    assert set(k.chains()) == before and not any(n.startswith("affinity-") for n in k.sets())
    assert table(k) == reference(snap(state))


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
    assert table(k) == reference(snap(state))


def test_a_full_sync_over_a_changed_table_equals_a_fresh_load() -> None:
    s, k = syncer()
    state = {i: {"eps": [f"10.244.{i}.{j}" for j in range(1, i % 3 + 1)]} for i in range(6)}
    s.sync(snap(state))
    k.run("add chain ip clew stray\nadd element ip clew hairpin { 1.2.3.4 . 1.2.3.4 }\nflush chain ip clew services")
    s.request_full()
    assert s.sync(snap(state)).full
    assert table(k) == fresh(snap(state)) == reference(snap(state))


def test_a_clashing_port_is_rejected_as_render_does_and_the_others_keep_their_elements() -> None:
    s, k = syncer()
    state: dict[int, dict[str, Any]] = {0: {"eps": ["10.244.0.1"], "clash": True}, 1: {"eps": ["10.244.1.1"]}}
    s.sync(snap(state))
    state[2] = {"eps": ["10.244.2.1"], "clash": True}  # s2 claims s0's externalIP:port
    r = s.sync(snap(state, {2}))
    why = "Service port ns/s2:p (tcp): destination 192.168.99.1 . tcp . 80 is already ns/s0:p's"
    why += " (nft takes one value per map key)"
    assert r.ok and not r.full and r.service_ports == 2 and r.rejected == (("ns/s2:p/tcp", why),)
    assert "10.96.0.3 . 80 . 0" not in k.elements("dst-tcp-1")  # none of s2's elements
    assert table(k) == reference(snap(state))
    del state[0]  # the holder goes: s2 gets the destination
    r = s.sync(snap(state, {0}))
    assert r.ok and r.rejected == () and k.elements("dst-tcp-1")["192.168.99.1 . 80 . 0"] == "10.244.2.1 . 8080"
    assert table(k) == reference(snap(state))
    state[0] = {"eps": ["10.244.0.1"], "clash": True}  # back, earlier in render order: s2 loses it again
    r = s.sync(snap(state, {0}))
    assert r.ok and [x[0] for x in r.rejected] == ["ns/s2:p/tcp"]
    assert table(k) == reference(snap(state))


def test_a_port_the_renderer_rejects_is_left_out_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    from clew.proxy.nftables.layout import Rejected

    class Picky:
        def __getattr__(self, name: str) -> Any:
            return getattr(render, name)

        def render_port(self, p: Any, config: ProxyConfig) -> Any:
            if p.name == "s2":
                return Rejected(f"{p.spn}/{p.proto}", p.service_key, "too odd")
            return render.render_port(p, config)

    k = GenNft()
    s = NftSyncer("fake", CONFIG, kernel=k, renderer=Picky())  # type: ignore[arg-type]
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1"]}, 2: {"eps": ["10.244.2.1"]}}
    r = s.sync(snap(state))
    assert r.ok and r.rejected == (("ns/s2:p/tcp", "too odd"),) and r.service_ports == 1
    assert "10.96.0.2 . 80 . 0" in k.elements("dst-tcp-1") and "10.96.0.3 . 80 . 0" not in k.elements("dst-tcp-1")
    state[1] = {"eps": ["10.244.1.2"]}
    s.sync(snap(state, {1}))
    s.sync(snap(state))
    assert sum("too odd" in m for m in caplog.messages) == 1


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
    state[1] = {"eps": ["10.244.1.2"]}
    s.sync(snap(state, {1}))
    assert s.tampered() == [] and reads == ["chains"]  # our partial sync alone moved it
    k.run("flush chain ip clew services\ndelete chain ip clew nodeports")  # what jumped there goes first
    assert [(d.chain, d.change) for d in s.tampered()] == [("nodeports", "chain is gone"),
                                                           ("services", "0 rules where the render has 6")]  # fmt: skip
    k.run("delete table ip clew")
    assert [d.change for d in s.tampered()] == ["table ip clew is gone"]


def test_tamper_check_sees_a_fixed_rule_replaced() -> None:
    s, k = syncer()
    s.sync(snap({1: {"eps": ["10.244.1.1"]}}))
    assert s.tampered() == []
    masq = k.rules("masquerading")
    k.run("flush chain ip clew masquerading\n" + "".join(
        f"add rule ip clew masquerading {r.replace('fully-random', '')}\n" for r in masq))  # fmt: skip
    assert [(d.chain, d.change) for d in s.tampered()] == [("masquerading", "rules changed")]
    s.request_full()
    s.sync(snap({1: {"eps": ["10.244.1.1"]}}))
    assert k.rules("masquerading") == masq and s.tampered() == []
    k.gen += 1  # someone else's commit elsewhere: read, intact
    assert s.tampered() == []


def test_the_default_periodic_check_reads_chains_and_rules_and_keeps_an_intact_table() -> None:
    now = [10.0]
    k = GenNft()
    s = NftSyncer("fake", CONFIG, kernel=k, generation=lambda: k.gen, rules=lambda: rules_of(k),
                  clock=lambda: now[0], full_sync_period=3600)  # fmt: skip
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1"]}}
    assert s.sync(snap(state)).full
    reads: list[str] = []
    real = k.list_json
    k.list_json = lambda what="ruleset": reads.append(what) or real(what)  # type: ignore[method-assign]
    now[0] += 3600
    assert not s.sync(snap(state)).full and reads == ["chains"]  # read although the generation did not move
    now[0] += 3600
    k.list_json = lambda what="ruleset": (_ for _ in ()).throw(KernelError("fake", "nft", "busy"))  # type: ignore[method-assign]
    assert not s.sync(snap(state)).full  # cannot read: put off to the next sync
    k.list_json = lambda what="ruleset": reads.append(what) or real(what)  # type: ignore[method-assign]
    assert not s.sync(snap(state)).full and reads == ["chains", "chains"]  # the next sync checks
    k.run("flush chain ip clew nodeports")
    now[0] += 1800
    assert not s.sync(snap(state)).full  # not due yet (the per-second tamper check is the agent's)
    now[0] += 1800
    assert s.sync(snap(state)).full and table(k) == reference(snap(state))


def test_the_periodic_check_replaces_the_table_only_when_it_differs() -> None:
    now = [0.0]
    k = GenNft()
    s = NftSyncer("fake", CONFIG, kernel=k, generation=lambda: k.gen, clock=lambda: now[0], full_sync_period=3600,
                  verify_elements=True)  # fmt: skip
    state: dict[int, dict[str, Any]] = {1: {"eps": ["10.244.1.1", "10.244.1.2"], "affinity": True},
                                        2: {"eps": ["10.244.2.1"], "node_port": True}}  # fmt: skip
    now[0] = 10.0
    assert s.sync(snap(state)).full
    affinity = next(n for n in k.sets() if n.startswith("affinity-"))
    k.run(f"add element ip clew {affinity} {{ 192.168.1.9 }}")  # a client remembered (dynamic in the kernel)
    now[0] += 3600
    r = s.sync(snap(state))
    assert r.ok and not r.full and "192.168.1.9" in k.elements(affinity)  # intact: kept, nothing written
    k.run("delete element ip clew hairpin { 10.244.2.1 . 10.244.2.1 }")  # someone deletes an element
    now[0] += 1800
    assert not s.sync(snap(state)).full  # not yet due
    now[0] += 1800
    assert s.sync(snap(state)).full and table(k) == reference(snap(state))
    now[0] += 3600
    real = k.list_json
    k.list_json = lambda what="ruleset": (_ for _ in ()).throw(KernelError("fake", "nft", "busy"))  # type: ignore[method-assign]
    assert not s.sync(snap(state)).full  # cannot read: put off
    k.list_json = real  # type: ignore[method-assign]
    assert not s.sync(snap(state)).full  # read now: intact


def test_udp_flows_to_removed_endpoints_are_deleted() -> None:
    deleted: list[dict[str, Any]] = []
    k = GenNft()
    s = NftSyncer("fake", CONFIG, kernel=k, delete_udp_flows=lambda **kw: deleted.append(kw) or 1)
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
                        "node_port": rng.random() < 0.3, "local": rng.random() < 0.2,
                        "clash": rng.random() < 0.05}  # fmt: skip
        r = s.sync(snap(state, {i} if hinted else None))
        assert r.ok and (step == 0 or not r.full), r.error
        if step % 50 == 0 or step > 980 or r.rejected:
            assert table(k) == reference(snap(state), r.rejected), step
