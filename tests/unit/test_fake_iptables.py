"""The fake iptables kernel refuses what the kernel refuses, applies restores all-or-nothing, and
dumps canonical text that reads back as the same rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from clew.fakes.iptables import FakeIptables
from clew.kernel.errors import CommandFailed
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import canonical

FOREIGN = Path(__file__).resolve().parents[1] / "golden" / "foreign"
BASE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [3:180]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -m comment --comment "web a" -j ACCEPT
COMMIT
"""


def rc(fake: FakeIptables, *args: str) -> int:
    return fake.iptables(list(args)).returncode


def test_commands_the_sync_uses_with_the_kernels_exit_statuses() -> None:
    fake = FakeIptables.from_save(BASE)
    assert rc(fake, "-t", "filter", "-C", "FORWARD", "-o", "docker0", "-j", "DOCKER") == 0
    assert rc(fake, "-t", "filter", "-C", "FORWARD", "-o", "docker1", "-j", "DOCKER") == 1
    assert rc(fake, "-w", "5", "-t", "nat", "-N", "KUBE-X") == 0
    assert rc(fake, "-t", "nat", "-N", "KUBE-X") == 1  # exists
    assert rc(fake, "-t", "nat", "-I", "OUTPUT", "-m", "comment", "--comment", "a b", "-j", "KUBE-X") == 0
    assert rc(fake, "-t", "nat", "-A", "KUBE-X", "-j", "RETURN") == 0
    assert fake.rules("nat", "OUTPUT") == ['-A OUTPUT -m comment --comment "a b" -j KUBE-X']
    assert fake.iptables(["-t", "nat", "-v", "-S", "KUBE-X"]).stdout == "-N KUBE-X\n-A KUBE-X -c 0 0 -j RETURN\n"
    assert fake.iptables(["-t", "nat", "-S", "OUTPUT", "1"]).stdout.startswith("-A OUTPUT -m comment")
    assert fake.iptables(["-t", "filter", "-S", "FORWARD"]).stdout.splitlines()[0] == "-P FORWARD DROP"
    assert rc(fake, "-t", "nat", "-S", "KUBE-NONE", "1") == 1
    assert rc(fake, "-t", "nat", "-F", "KUBE-X") == 0 and fake.rules("nat", "KUBE-X") == []
    assert fake.list_chains(("filter", "nat", "raw")) == {
        "filter": ["INPUT", "FORWARD", "OUTPUT", "DOCKER"],
        "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KUBE-X"],
        "raw": [],
    }


def test_it_refuses_what_the_kernel_refuses() -> None:
    fake = FakeIptables.from_save(BASE)
    before = fake.dump()
    missing_rule = fake.iptables(["-t", "filter", "-D", "FORWARD", "-o", "docker1", "-j", "DOCKER"])
    assert missing_rule.returncode == 1 and "Bad rule" in missing_rule.stderr
    referenced = fake.iptables(["-t", "filter", "-X", "DOCKER"])
    assert (
        referenced.returncode == 4 and "CHAIN_DEL failed (Device or resource busy): chain DOCKER" in referenced.stderr
    )
    assert rc(fake, "-t", "filter", "-D", "FORWARD", "-o", "docker0", "-j", "DOCKER") == 0
    not_empty = fake.iptables(["-t", "filter", "-X", "DOCKER"])
    assert not_empty.returncode == 4 and "Device or resource busy" in not_empty.stderr
    assert rc(fake, "-t", "filter", "-X", "INPUT") == 4  # built-in
    assert rc(fake, "-t", "filter", "-A", "NOPE", "-j", "ACCEPT") == 1  # append to a missing chain
    assert rc(fake, "-t", "filter", "-A", "INPUT", "-j", "NOPE") == 2  # jump to a missing chain
    assert rc(fake, "-t", "filter", "-X", "NOPE") == 1
    assert rc(fake, "-t", "filter", "-F", "DOCKER") == 0 and rc(fake, "-t", "filter", "-X", "DOCKER") == 0
    assert fake.dump() != before


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("*filter\n-D FORWARD -o docker9 -j DOCKER\nCOMMIT\n", "no such rule"),
        ("*filter\n-X DOCKER\nCOMMIT\n", "referenced"),
        ("*filter\n-A KUBE-NEW -j ACCEPT\nCOMMIT\n", "never declared"),
        ("*filter\n:KUBE-NEW - [0:0]\n-A INPUT -j KUBE-GONE\nCOMMIT\n", "Couldn't load target"),
        ("*filter\n:KUBE-NEW - [0:0]\n-A KUBE-NEW -s\nCOMMIT\n", "line 3"),
        ("*filter\n:KUBE-NEW - [0:0]\n-A KUBE-NEW -j ACCEPT\n", "COMMIT expected"),
        ("*filter\n:KUBE-NEW DROP [0:0]\nCOMMIT\n", "cannot have a policy"),
    ],
)
def test_a_restore_with_any_bad_line_changes_nothing(payload: str, why: str) -> None:
    fake = FakeIptables.from_save(BASE)
    before = fake.dump()
    for noflush in (True, False):
        with pytest.raises(CommandFailed, match="iptables-restore in netns fake: iptables-restore: line") as info:
            fake.restore(payload + "*nat\n:KUBE-OK - [0:0]\nCOMMIT\n" if why != "COMMIT expected" else payload,
                         noflush=noflush)  # fmt: skip
        assert (why in str(info.value) or not noflush) and info.value.returncode in (1, 2, 4)
        assert fake.dump() == before


def test_noflush_keeps_other_chains_and_flushes_declared_ones_without_noflush_the_table_is_replaced() -> None:
    fake = FakeIptables.from_save(BASE)
    fake.restore("*filter\n:KUBE-A - [0:0]\n[5:300] -A KUBE-A -j ACCEPT\n-A INPUT -j KUBE-A -c 1 2\nCOMMIT\n")
    assert fake.list_chains(("filter",))["filter"] == ["INPUT", "FORWARD", "OUTPUT", "DOCKER", "KUBE-A"]
    fake.restore("*filter\n:KUBE-A - [0:0]\nCOMMIT\n")  # declaring flushes (the jump to it stays)
    assert fake.rules("filter", "KUBE-A") == [] and fake.rules("filter", "INPUT") == ["-A INPUT -j KUBE-A"]
    fake.restore("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", noflush=False)
    assert fake.save("filter") == (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    )


@pytest.mark.parametrize("name", ["docker_kube_proxy", "flannel_fwd_accept", "ufw_like", "unknown_matches"])
def test_real_iptables_save_output_loads_strictly_and_dumps_the_same_rules(name: str) -> None:
    text = (FOREIGN / f"{name}.iptables").read_text()
    fake = FakeIptables.from_save(text)
    dumped = fake.dump()
    assert FakeIptables.from_save(dumped).dump() == dumped  # canonical: a fixed point

    def rules(t: str) -> dict[tuple[str, str], list[object]]:
        return {(tb.name, c.name): [canonical(r) for r in c.rules] for tb in parse(t).tables.values()
                for c in tb.chains.values()}  # fmt: skip

    assert rules(dumped) == rules(text)


def test_a_truncated_dump_is_refused_as_iptables_restore_refuses_it() -> None:
    with pytest.raises(CommandFailed, match="line"):
        FakeIptables.from_save((FOREIGN / "truncated.iptables").read_text())


def test_a_forced_failure_for_concurrency_tests() -> None:
    fake = FakeIptables.from_save(BASE)
    fake.fail_next_restore = "line 2 failed: Resource temporarily unavailable"
    with pytest.raises(CommandFailed, match="Resource temporarily unavailable"):
        fake.restore("*filter\nCOMMIT\n")
    fake.restore("*filter\nCOMMIT\n")


def test_a_concurrent_writer_can_act_between_a_read_and_a_restore() -> None:
    fake = FakeIptables.from_save(BASE)
    seen: list[str] = []

    def writer(k: FakeIptables) -> None:
        seen.append(k.save("filter"))
        k.before_restore = None  # once
        assert k.iptables(["-t", "filter", "-A", "DOCKER", "-j", "RETURN"]).returncode == 0

    fake.before_restore = writer
    fake.restore("*filter\n:KUBE-A - [0:0]\nCOMMIT\n")
    assert seen and fake.rules("filter", "DOCKER")[-1] == "-A DOCKER -j RETURN"
    assert "KUBE-A" in fake.list_chains(("filter",))["filter"]
