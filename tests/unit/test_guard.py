"""The tamper guard: what clew owns in the shared chains against what a read found (pure), and
the syncer's check on the fake kernel (reads only when the ruleset generation moved)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from clew.bench.synthetic import every_chain, objects
from clew.fakes.iptables import FakeIptables
from clew.kernel import nfgen
from clew.kernel.runner import Completed
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy import names as n
from clew.proxy.iptables import apply, guard
from clew.proxy.iptables.jumps import jump_rules
from clew.proxy.iptables.render import assemble
from clew.proxy.sync import ProxySyncer

CONFIG = ProxyConfig(
    node_name="node-0",
    node_ips=("192.168.50.2",),
    detect_local=DetectLocal.CLUSTER_CIDR,
    cluster_cidrs=("10.244.0.0/16",),
    localhost_nodeports=True,
)
SHARED = [
    ("filter", n.KUBE_SERVICES), ("filter", n.KUBE_EXTERNAL_SERVICES), ("filter", n.KUBE_NODEPORTS),
    ("filter", n.KUBE_FORWARD), ("filter", n.KUBE_PROXY_FIREWALL), ("filter", n.KUBE_FIREWALL),
    ("nat", n.KUBE_SERVICES), ("nat", n.KUBE_NODEPORTS), ("nat", n.KUBE_POSTROUTING), ("nat", n.KUBE_MARK_MASQ),
]  # fmt: skip


class CountingKernel(FakeIptables):
    """The fake kernel, counting the ``iptables`` commands a check runs."""

    def __init__(self) -> None:
        super().__init__()
        self.commands = 0

    def iptables(self, args: Sequence[str]) -> Completed:
        self.commands += 1
        return super().iptables(args)


def synced(services: int = 12) -> tuple[ProxySyncer, CountingKernel, list[int]]:
    """A syncer that has loaded ``services`` Services (some without endpoints, NodePorts, LBs)
    into a fake kernel, with a generation counter the test bumps by hand."""
    kernel = CountingKernel()
    gen = [1]
    syncer = ProxySyncer("fake", CONFIG, kernel=kernel, generation=lambda: gen[0])
    snapshot = build_snapshot(every_chain(services))
    assert syncer.sync(snapshot).ok
    return syncer, kernel, gen


def expected_and_read(kernel: FakeIptables, syncer: ProxySyncer) -> tuple[guard.Expected, dict]:  # type: ignore[type-arg]
    want = guard.expected(assemble(list(syncer._applied.values()), syncer.config))
    return want, apply.read_chains(kernel, want.reads())


def test_what_a_sync_left_compares_equal() -> None:
    syncer, kernel, _ = synced()
    want, read = expected_and_read(kernel, syncer)
    assert set(want.chains) == set(SHARED)
    assert guard.compare(want, read) == []


@pytest.mark.parametrize(("table", "chain"), SHARED)
def test_a_flushed_shared_chain_is_named_with_what_it_lost(table: str, chain: str) -> None:
    syncer, kernel, _ = synced()
    want, read = expected_and_read(kernel, syncer)
    lost = len(read[(table, chain)] or [])
    assert lost, f"{table}/{chain} holds nothing to lose in this cluster"
    kernel.iptables(["-t", table, "-F", chain])
    _, read = expected_and_read(kernel, syncer)
    s = "s" if lost != 1 else ""
    assert guard.compare(want, read) == [guard.Difference(table, chain, f"{lost} rule{s} missing")]


def test_a_deleted_chain_a_foreign_rule_and_a_missing_canary_are_each_named() -> None:
    syncer, kernel, _ = synced()
    want, _ = expected_and_read(kernel, syncer)
    kernel.iptables(["-t", "nat", "-I", n.KUBE_SERVICES, "-s", "10.1.2.3", "-j", "ACCEPT"])
    kernel.iptables(["-t", "filter", "-F", n.KUBE_PROXY_FIREWALL])
    for builtin in ("INPUT", "OUTPUT", "FORWARD"):
        args = ["-t", "filter", "-S", builtin]
        for line in kernel.iptables(args).stdout.splitlines():
            if n.KUBE_PROXY_FIREWALL in line:
                assert kernel.iptables(["-t", "filter", "-D", *shlex.split(line)[1:]]).returncode == 0
    assert kernel.iptables(["-t", "filter", "-X", n.KUBE_PROXY_FIREWALL]).returncode == 0
    assert kernel.iptables(["-t", "mangle", "-X", n.KUBE_PROXY_CANARY]).returncode == 0
    _, read = expected_and_read(kernel, syncer)
    got = {(d.table, d.chain): d.change for d in guard.compare(want, read)}
    assert got[("nat", n.KUBE_SERVICES)] == "1 unexpected rule"
    assert got[("filter", n.KUBE_PROXY_FIREWALL)] == "chain missing"
    assert got[("mangle", n.KUBE_PROXY_CANARY)] == "chain missing"
    assert got[("filter", "INPUT")] == f"jump to {n.KUBE_PROXY_FIREWALL} missing"


@pytest.mark.parametrize("jump", jump_rules(CONFIG), ids=lambda j: f"{j.table}-{j.chain}-{j.args[-1]}")
def test_each_deleted_jump_from_a_built_in_chain_is_found(jump: object) -> None:
    syncer, kernel, _ = synced()
    want, _ = expected_and_read(kernel, syncer)
    assert kernel.iptables(["-t", jump.table, "-D", jump.chain, *jump.args]).returncode == 0  # type: ignore[attr-defined]
    _, read = expected_and_read(kernel, syncer)
    assert guard.compare(want, read) == [
        guard.Difference(jump.table, jump.chain, f"jump to {jump.args[-1]} missing")  # type: ignore[attr-defined]
    ]


def test_order_matters_in_fixed_chains_and_for_the_final_nodeports_rule_only() -> None:
    syncer, kernel, _ = synced()
    want, read = expected_and_read(kernel, syncer)
    shuffled = dict(read)
    services = list(read[("nat", n.KUBE_SERVICES)] or [])
    shuffled[("nat", n.KUBE_SERVICES)] = [*reversed(services[:-1]), services[-1]]  # per-port order: free
    assert guard.compare(want, shuffled) == []
    shuffled[("nat", n.KUBE_SERVICES)] = [services[-1], *services[:-1]]
    assert guard.compare(want, shuffled) == [
        guard.Difference("nat", n.KUBE_SERVICES, "KUBE-SERVICES's final rule is no longer last")
    ]
    post = list(read[("nat", n.KUBE_POSTROUTING)] or [])
    assert guard.compare(want, {**read, ("nat", n.KUBE_POSTROUTING): post[::-1]}) == [
        guard.Difference("nat", n.KUBE_POSTROUTING, "rules out of order")
    ]


def test_quick_key_pairs_the_rendered_and_printed_forms_and_canonical_decides_the_rest() -> None:
    rendered = '-A KUBE-SERVICES -m comment --comment "ns/a:p cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 ! -s 10.244.0.0/16 -j KUBE-SVC-X'  # noqa: E501
    printed = '-A KUBE-SERVICES -d 10.96.0.1/32 ! -s 10.244.0.0/16 -p tcp -m comment --comment "ns/a:p cluster IP" -m tcp --dport 80 -j KUBE-SVC-X'  # noqa: E501
    assert guard.quick_key(rendered) == guard.quick_key(printed)
    assert guard.quick_key(rendered) != guard.quick_key(rendered.replace("! -s", "-s"))
    assert guard.quick_key("-A X --comment ns/a:p -j Y") == guard.quick_key('-A X --comment "ns/a:p" -j Y')
    mark = guard.expected(assemble((), CONFIG)).chains[("nat", n.KUBE_MARK_MASQ)]
    read = {("nat", n.KUBE_MARK_MASQ): ["-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]}
    only = guard.Expected({("nat", n.KUBE_MARK_MASQ): mark}, (), ())
    assert guard.compare(only, read) == []  # "--or-mark 0x4000" in the render: equal once canonical
    assert guard.compare(only, {("nat", n.KUBE_MARK_MASQ): ["-A KUBE-MARK-MASQ -j MARK --set-xmark 0x8000/0x8000"]})


def test_the_syncer_reads_only_when_the_generation_moved() -> None:
    syncer, kernel, gen = synced()
    assert syncer.tampered() == []
    reads = kernel.commands
    assert reads > 0
    assert syncer.tampered() == [] and syncer.intact()
    assert kernel.commands == reads  # same generation: not one command
    kernel.iptables(["-t", "nat", "-F", n.KUBE_NODEPORTS])
    gen[0] += 1
    assert [str(d) for d in syncer.tampered()] == [f"nat/{n.KUBE_NODEPORTS}: 4 rules missing"]
    syncer.request_full()
    assert syncer.tampered() == []  # a full sync is due anyway: nothing to report
    assert syncer.sync(build_snapshot(every_chain(12))).full
    gen[0] += 2
    assert syncer.tampered() == []


def test_after_partial_syncs_the_guard_expects_the_new_rules() -> None:
    syncer, _, gen = synced(12)
    snapshot = build_snapshot(every_chain(14))
    result = syncer.sync(replace(snapshot))
    assert result.ok and not result.full
    gen[0] += 1
    assert syncer.tampered() == []


def test_a_chain_that_cannot_be_read_is_tried_again_not_taken_for_tampering(caplog: pytest.LogCaptureFixture) -> None:
    class Unreadable(FakeIptables):
        broken = False

        def iptables(self, args: Sequence[str]) -> Completed:
            if self.broken and "-S" in args:
                return Completed(list(args), 4, "", "iptables: Resource temporarily unavailable.")
            return super().iptables(args)

    kernel = Unreadable()
    now = [0.0]
    syncer = ProxySyncer("fake", CONFIG, kernel=kernel, generation=lambda: 1, clock=lambda: now[0])
    snapshot = build_snapshot(objects(3))
    assert syncer.sync(snapshot).ok
    kernel.broken = True
    with caplog.at_level("WARNING", logger="clew.proxy"):
        assert syncer.tampered() == []
    assert "Resource temporarily unavailable" in caplog.text
    now[0] += 3601  # the periodic full sync cannot check: put off, the tables are not replaced
    put_off = syncer.sync(snapshot)
    assert put_off.ok and not put_off.full and not put_off.wrote
    kernel.broken = False
    assert syncer.sync(snapshot).full  # tried again at the next sync


def test_the_agent_logs_each_changed_chain_counts_it_and_resyncs_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clew.agent.loop import Agent
    from clew.agent.metrics import Observer
    from clew.proxy.runner import SyncRunner
    from clew.sources.files import FolderSource

    syncer, kernel, gen = synced()
    now = [100.0]
    obs = Observer(node_name="node-0", sync_period=30.0)
    syncer.clock = lambda: now[0]
    agent = Agent(FolderSource(tmp_path), syncer, SyncRunner(1.0, 3600.0), clock=lambda: now[0], obs=obs)
    for i, obj in enumerate(every_chain(12)):
        (tmp_path / f"{i}.json").write_text(json.dumps(obj))
    assert agent.turn() and agent.syncs == 1 and syncer.tampered() == []
    kernel.iptables(["-t", "filter", "-F", n.KUBE_FORWARD])
    gen[0] += 1
    now[0] += 1.5
    with caplog.at_level("WARNING", logger="clew.agent"):
        assert agent.turn()  # found, and repaired in the same turn: min-sync-period does not hold it back
    (record,) = [r for r in caplog.records if r.getMessage() == "ruleset tampered"]
    assert record.fields == {"table": "filter", "chain": n.KUBE_FORWARD, "change": "3 rules missing"}  # type: ignore[attr-defined]
    body, _ = obs.metrics.exposition("")
    assert 'clew_ruleset_tampered_total{chain="KUBE-FORWARD",table="filter"} 1.0' in body.decode()
    gen[0] += 1
    assert syncer.tampered() == []  # repaired


def test_the_generation_is_read_from_the_kernels_answer() -> None:
    import struct

    header = struct.pack("=IHHII", 0, 10 << 8 | 15, 0, 1, 0) + struct.pack("=BBH", 0, 0, 0)
    attrs = struct.pack("=HH", 8, 1) + struct.pack(">I", 4242) + struct.pack("=HH", 8, 2) + struct.pack(">I", 7)
    assert nfgen.parse_gen(header + attrs) == 4242
    with pytest.raises(OSError, match="no generation id"):
        nfgen.parse_gen(header + attrs[8:])


def test_a_periodic_full_sync_writes_nothing_while_the_shared_chains_are_intact() -> None:
    """Item 2: the tables are replaced only when clew's part is known to differ, so another
    program's rules written meanwhile are not at risk in the hourly full sync."""
    now = [0.0]
    kernel = FakeIptables()
    syncer = ProxySyncer("fake", CONFIG, kernel=kernel, clock=lambda: now[0], full_sync_period=60.0)
    snapshot = build_snapshot(every_chain(12))
    assert syncer.sync(snapshot).wrote
    kernel.iptables(["-t", "filter", "-I", "INPUT", "-s", "10.9.9.9", "-j", "DROP"])  # someone else's
    now[0] += 61
    periodic = syncer.sync(snapshot)
    assert periodic.full and not periodic.wrote
    changed = syncer.sync(build_snapshot(every_chain(13)))  # not yet due: a partial sync
    assert not changed.full and changed.wrote
    now[0] += 61
    kernel.iptables(["-t", "nat", "-F", n.KUBE_NODEPORTS])
    repaired = syncer.sync(build_snapshot(every_chain(13)))
    assert repaired.full and repaired.wrote and kernel.rules("nat", n.KUBE_NODEPORTS)
    assert any("10.9.9.9" in line for line in kernel.rules("filter", "INPUT"))


def test_a_restarted_agents_first_sync_compares_all_of_its_chains() -> None:
    kernel = FakeIptables()
    snapshot = build_snapshot(every_chain(12))
    assert ProxySyncer("fake", CONFIG, kernel=kernel).sync(snapshot).wrote
    again = ProxySyncer("fake", CONFIG, kernel=kernel).sync(snapshot)  # the agent restarted
    assert again.full and not again.wrote
    svc = next(c for c in kernel.list_chains(("nat",))["nat"] if c.startswith("KUBE-SVC-"))
    kernel.iptables(["-t", "nat", "-F", svc])  # not a shared chain: only this check sees it
    kernel.iptables(["-t", "nat", "-N", "KUBE-SEP-STALESTALESTALE"])
    third = ProxySyncer("fake", CONFIG, kernel=kernel).sync(snapshot)
    assert third.full and third.wrote
    assert kernel.rules("nat", svc) and "KUBE-SEP-STALESTALESTALE" not in kernel.list_chains(("nat",))["nat"]
    syncer = ProxySyncer("fake", CONFIG, kernel=kernel)
    syncer.request_full()  # known to differ: replaced without a read
    assert syncer.sync(snapshot).wrote


class GenerationKernel(CountingKernel):
    """The fake kernel with a generation that moves as nftables' does: +1 per table a restore
    commits, +1 per iptables command that writes."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = 1

    def restore(self, payload: str, *, noflush: bool = True, counters: bool = True) -> None:
        super().restore(payload, noflush=noflush, counters=counters)
        self.gen += sum(1 for line in payload.splitlines() if line == "COMMIT")

    def iptables(self, args: Sequence[str]) -> Completed:
        done = super().iptables(args)
        if done.returncode == 0 and not {"-S", "-C", "-L"} & set(args):
            self.gen += 1
        return done


def test_after_its_own_partial_sync_the_guard_does_not_read_again_unless_someone_else_wrote() -> None:
    kernel = GenerationKernel()
    syncer = ProxySyncer("fake", CONFIG, kernel=kernel, generation=lambda: kernel.gen)
    assert syncer.sync(build_snapshot(every_chain(12))).ok
    assert syncer.tampered() == []  # the first check after a full sync reads
    assert syncer.sync(build_snapshot(every_chain(13))).wrote  # partial
    reads = kernel.commands
    assert syncer.tampered() == [] and kernel.commands == reads  # only our commits: no read
    kernel.iptables(["-t", "filter", "-A", "INPUT", "-s", "10.9.9.9", "-j", "DROP"])
    assert syncer.sync(build_snapshot(every_chain(14))).wrote
    assert syncer.tampered() == [] and kernel.commands > reads + 1  # someone else wrote: read


def test_a_first_sync_that_cannot_read_the_tables_replaces_them() -> None:
    from clew.kernel.errors import CommandFailed

    class NoSave(FakeIptables):
        def save(self, table: str | None = None) -> str:
            raise CommandFailed(self.namespace, "iptables-save", ["iptables-save"], -9, "")

    kernel = NoSave()
    result = ProxySyncer("fake", CONFIG, kernel=kernel).sync(build_snapshot(every_chain(3)))
    assert result.ok and result.full and result.wrote and kernel.rules("nat", n.KUBE_SERVICES)
