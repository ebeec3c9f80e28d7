"""The kernel seam without root: one namespace value (argv, labels) and one runner (exit status,
command not found, timeouts, batch line errors). Commands here run in this process's own
namespace and change nothing (``true``, ``sh -c``, ``cat``)."""

from __future__ import annotations

import sys
import time

import pytest

from clew.kernel import netns, runner
from clew.kernel.errors import BatchFailed, CommandFailed, KernelError, NamespaceNotFound
from clew.kernel.namespace import OWN, Namespace


def test_one_value_for_every_spelling_of_a_namespace() -> None:
    assert Namespace.of(None) == Namespace.of("") == Namespace.of(netns.HOST) == OWN
    assert OWN.own and OWN.exec_argv(["true"]) == ["true"] and OWN.tool_argv("ip", ["link"]) == ["ip", "link"]
    named = Namespace.of("hsm-a")
    assert named.name == "hsm-a" and named.path == "/run/netns/hsm-a"
    assert named.exec_argv(["iptables-save"]) == ["ip", "netns", "exec", "hsm-a", "iptables-save"]
    assert named.tool_argv("ip", ["-j", "route"]) == ["ip", "-n", "hsm-a", "-j", "route"]
    pid_file = Namespace.of("/proc/1/ns/net")
    assert pid_file.name is None and pid_file.path == "/proc/1/ns/net"
    assert pid_file.exec_argv(["iptables-save"]) == ["nsenter", "--net=/proc/1/ns/net", "iptables-save"]
    assert pid_file.tool_argv("ip", ["link"]) == ["nsenter", "--net=/proc/1/ns/net", "ip", "link"]
    run_dir = Namespace.of("/var/run/netns/hsm-b")  # a CNI_NETNS path into ip's folder
    assert run_dir.tool_argv("ip", ["link"]) == ["ip", "-n", "hsm-b", "link"]
    with pytest.raises(ValueError, match="invalid network namespace name"):
        Namespace.of("bad name").exec_argv(["true"])


def test_errors_name_the_current_namespace_in_words_never_as_an_empty_name() -> None:
    """Old code: ``KernelError(HOST, …)`` read ``… in netns : …``."""
    for spelling in (None, "", netns.HOST, OWN):
        assert str(KernelError(spelling, "chain nat/KUBE-SERVICES", "gone")) == (
            "chain nat/KUBE-SERVICES in the current netns: gone"
        )
    assert str(KernelError("hsm-x", "link eth0", "no\n device")) == "link eth0 in netns hsm-x: no device"
    assert KernelError("", "x", "y").netns is None and KernelError(Namespace("n"), "x", "y").netns == "n"


def test_runner_captures_output_and_exit_status() -> None:
    done = runner.run(None, ["sh", "-c", "cat; echo err >&2; exit 3"], input="in\n", check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "in\n", "err\n")
    with pytest.raises(CommandFailed, match=r"^sh in the current netns: err \(exit 3\)$") as info:
        runner.run("", ["sh", "-c", "echo err >&2; exit 3"])
    assert info.value.returncode == 3 and info.value.argv[0] == "sh"


def test_runner_feeds_a_large_input_without_deadlock() -> None:
    text = "x" * 3_000_000 + "\n"
    assert len(runner.run(None, ["cat"], input=text).stdout) == len(text)
    # a child that writes a lot before it reads its input, and to both outputs
    script = "head -c 1000000 /dev/zero; head -c 300000 /dev/zero >&2; cat"
    done = runner.run(None, ["sh", "-c", script], input=text, timeout=60)
    assert (len(done.stdout), len(done.stderr)) == (1_000_000 + len(text), 300_000)


def test_command_not_found_and_timeout_are_one_line_errors() -> None:
    with pytest.raises(CommandFailed, match="no-such-tool-hsm: command not found") as info:
        runner.run(None, ["no-such-tool-hsm", "x"])
    assert info.value.returncode == -1
    start = time.monotonic()
    with pytest.raises(CommandFailed, match=r"timed out after 0.3s") as late:
        runner.run(None, [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert late.value.returncode == -1 and time.monotonic() - start < 20


def test_a_missing_named_namespace_is_reported_before_anything_runs() -> None:
    with pytest.raises(NamespaceNotFound, match="in netns hsm-missing-0: no such network namespace"):
        runner.run("hsm-missing-0", ["true"])


def test_batch_errors_name_the_failing_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TOOL -batch -`` stops at the first failure and says "Command failed -:N"; the error
    quotes line N. A stand-in tool prints what ip prints (no namespace needed)."""
    script = "cat >/dev/null; echo 'RTNETLINK answers: File exists' >&2; echo 'Command failed -:2' >&2; exit 1"
    monkeypatch.setattr(Namespace, "tool_argv", lambda self, tool, args: ["sh", "-c", script])
    with pytest.raises(BatchFailed) as info:
        runner.batch(None, "ip", ["link add a type dummy", "link add a type dummy", "link set a up"])
    err = info.value
    assert err.line == 2 and err.exists_error
    assert str(err).startswith("ip -batch in the current netns: RTNETLINK answers: File exists")
    assert "[line 2: link add a type dummy]" in str(err) and "\n" not in str(err)
    with pytest.raises(ValueError, match="bad ip batch command"):
        runner.batch(None, "ip", ["link set a up\nlink del a"])
    with pytest.raises(ValueError, match="refusing to run"):
        netns.run_batch(netns.HOST, ["link set lo down"])


def test_cni_nets_old_spellings_still_work() -> None:
    """cni_net's ``Netns(path)`` is the namespace value: ``label`` (what KernelError takes),
    ``ip_argv``, ``path``."""
    from clew.kernel import cni_net

    pod = cni_net.Netns("/var/run/netns/cni-1234")
    assert pod.label == "/var/run/netns/cni-1234" and pod.path == "/var/run/netns/cni-1234"
    assert pod.ip_argv("-j", "link") == ["ip", "-n", "cni-1234", "-j", "link"]
    assert cni_net.NODE.label is None and cni_net.NODE.ip_argv("link") == ["ip", "link"]
    assert str(KernelError(cni_net.NODE.label, "bridge cni0", "x")) == "bridge cni0 in the current netns: x"
    assert str(KernelError(pod.label, "link eth0", "x")) == "link eth0 in netns /var/run/netns/cni-1234: x"
