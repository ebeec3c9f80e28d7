"""clew.kernel.netns / iptables against a real (throwaway) namespace."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from poll import poll_until
from topology import unique_prefix

from clew.kernel import iptables, netns
from clew.kernel.errors import CommandFailed, NamespaceNotFound

pytestmark = pytest.mark.kernel


@pytest.fixture
def ns() -> Iterator[str]:
    name = unique_prefix() + "-bare"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)
    assert not netns.exists(name)


def test_create_list_delete_is_idempotent(ns: str) -> None:
    assert netns.exists(ns)
    assert netns.list_names(ns) == [ns]
    with pytest.raises(CommandFailed, match=ns):
        netns.create(ns)
    netns.delete(ns)
    netns.delete(ns)
    assert not netns.exists(ns) and netns.list_names(ns) == []


def test_delete_ends_processes_left_inside(ns: str) -> None:
    proc = netns.spawn(ns, ["sleep", "60"])
    poll_until(lambda: proc.pid in netns.pids(ns), 5.0, interval=0.01, what="sleep inside the netns")
    netns.delete(ns)
    assert proc.wait(timeout=5) is not None
    assert not netns.exists(ns)


def test_missing_namespace_is_named() -> None:
    missing = unique_prefix() + "-none"
    with pytest.raises(NamespaceNotFound, match=f"in netns {missing}: no such network namespace"):
        netns.run(missing, ["true"])


def test_run_and_sysctl_act_inside_the_namespace(ns: str) -> None:
    netns.run_batch(ns, ["link set lo up", "addr add 127.0.0.2/8 dev lo"])
    assert "127.0.0.2/8" in netns.run(ns, ["ip", "-br", "addr", "show", "lo"]).stdout
    netns.set_sysctl(ns, "net.ipv4.ip_forward", 1)
    assert netns.run(ns, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert netns.run(ns, ["cat"], input="hello").stdout == "hello"
    assert netns.run(ns, ["false"], check=False).returncode == 1


def test_batch_errors_name_the_failing_line(ns: str) -> None:
    with pytest.raises(CommandFailed) as info:
        netns.run_batch(ns, ["link set lo up", "route add 10.9.9.0/24 via 10.1.1.1"])
    assert ns in str(info.value) and "line 2: route add 10.9.9.0/24" in str(info.value)


def test_batch_refuses_to_change_the_current_namespace() -> None:
    with pytest.raises(ValueError, match="refusing"):
        netns.run_batch(None, ["link add x type veth peer name y"])


def test_restore_failure_names_the_line_and_namespace(ns: str) -> None:
    payload = "*filter\n:KUBE-A - [0:0]\n-A KUBE-A -j KUBE-MISSING\nCOMMIT\n"
    with pytest.raises(CommandFailed) as info:
        iptables.restore(ns, payload)
    err = info.value
    assert err.netns == ns and err.what == "iptables-restore"
    assert re.search(r"line:? \d", err.stderr), err.stderr  # "line 3 failed" / "Error occurred at line: 4"
    assert f"iptables-restore in netns {ns}: " in str(err) and "\n" not in str(err)
    assert not iptables.chain_exists(ns, "filter", "KUBE-A")  # the transaction was atomic


def test_restore_save_and_ensure(ns: str) -> None:
    iptables.restore(ns, "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 10.96.0.1/32 -j RETURN\nCOMMIT\n")
    assert "-A KUBE-SERVICES -d 10.96.0.1/32 -j RETURN" in iptables.save(ns, "nat")
    assert iptables.chain_exists(ns, "nat", "KUBE-SERVICES")
    assert not iptables.chain_exists(ns, "nat", "KUBE-NOPE")
    assert iptables.ensure_chain(ns, "nat", "KUBE-SERVICES") is True
    assert iptables.ensure_chain(ns, "filter", "KUBE-FORWARD") is False
    jump = ["-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"]
    assert iptables.ensure_rule(ns, "nat", "PREROUTING", jump) is False
    assert iptables.ensure_rule(ns, "nat", "PREROUTING", jump) is True
    saved = iptables.save(ns)
    assert saved.count('-A PREROUTING -m comment --comment "kubernetes service portals"') == 1
    assert iptables.delete_rule(ns, "nat", "PREROUTING", jump) is True
    assert iptables.delete_rule(ns, "nat", "PREROUTING", jump) is False
    # --noflush keeps what the payload does not mention
    iptables.restore(ns, "*nat\n:KUBE-POSTROUTING - [0:0]\nCOMMIT\n", noflush=True)
    assert iptables.chain_exists(ns, "nat", "KUBE-SERVICES")


def test_version() -> None:
    major, minor, patch = iptables.version()
    assert (major, minor) >= (1, 4) and patch >= 0
    assert iptables.backend() in ("nf_tables", "legacy")


def test_spawned_pid_is_the_program(ns: str) -> None:
    proc = netns.spawn(ns, ["sleep", "60"], stdout=subprocess.DEVNULL)
    try:

        def comm() -> str:
            with open(f"/proc/{proc.pid}/comm") as f:
                return f.read().strip()

        poll_until(lambda: comm() == "sleep", 5.0, interval=0.01, what="spawned process exec'd sleep")
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        proc.kill()
        proc.wait()
