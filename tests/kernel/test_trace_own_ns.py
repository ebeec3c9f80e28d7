"""The node itself: ``clew trace``, ``clew explain`` and ``clew dump`` without --netns, --ruleset or
--from-dump read the namespace they run in, read-only; ``--netns`` also takes ``/proc/PID/ns/net``.

Each test makes a throwaway namespace (``th-own-…``), loads a tiny ruleset into it, and runs clew
*inside* it with ``ip netns exec`` — so "the namespace it runs in" is the throwaway one, never the
host's. The namespace is deleted afterwards whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clew.kernel import netns

pytestmark = pytest.mark.kernel

RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "th-own ssh block" -j DROP
COMMIT
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"th-own-{os.getpid()}"
    netns.create(name)
    try:
        setup = [
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "peer0"],  # no dummy module here
            ["ip", "addr", "add", "192.0.2.10/24", "dev", "dummy0"],
            ["ip", "link", "set", "dummy0", "up"],
            ["ip", "link", "set", "peer0", "up"],
        ]
        for argv in setup:
            netns.run(name, argv)
        netns.run(name, ["iptables-restore"], input=RULES)
        yield name
    finally:
        netns.delete(name)


def inside(ns: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``clew ARGS`` run by a process inside ``ns``."""
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "clew", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, input=stdin, check=False)


def test_trace_without_a_source_reads_the_namespace_it_runs_in(namespace: str) -> None:
    proc = inside(namespace, "trace", "--src", "192.0.2.50", "--dst", "192.0.2.10", "--dport", "22", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (o,) = doc["outcomes"]
    assert o["verdict"] == "DROP" and "th-own ssh block" in o["hops"][-1]["rule"]
    # the routes were read too: 192.0.2.50 is on dummy0, so that is where it arrives; nothing assumed
    assert doc["entry"].startswith("arrives from 192.0.2.50 on dummy0")
    assert o["certain"] is True and o["assumptions"] == []
    other = inside(namespace, "trace", "--src", "192.0.2.50", "--dst", "192.0.2.10", "--dport", "80")
    assert other.returncode == 0 and "delivered" in other.stdout, other.stderr


def test_trace_reads_a_namespace_by_its_proc_path(namespace: str) -> None:
    holder = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "60"], stdout=subprocess.DEVNULL)
    try:
        path = f"/proc/{holder.pid}/ns/net"  # ip netns exec execs sleep: the pid is sleep's
        proc = subprocess.run(
            [sys.executable, "-m", "clew", "trace", "-v", "--netns", path, "--src", "192.0.2.50", "--dst", "192.0.2.10",
             "--dport", "22"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "dropped" in proc.stdout and "th-own ssh block" in proc.stdout
    finally:
        holder.kill()
        holder.wait()


def test_dump_without_netns_writes_this_namespace_with_ip_rule_and_both_backends(
    namespace: str, tmp_path: Path
) -> None:
    folder = tmp_path / "d"
    proc = inside(namespace, "dump", str(folder), "--sample", "0")
    assert proc.returncode == 0, proc.stderr
    assert "th-own ssh block" in (folder / "iptables-save.txt").read_text()
    rules = json.loads((folder / "ip-rule.json").read_text())
    assert {r["table"] for r in rules} == {"local", "main", "default"}
    assert "nft-ruleset.json" in os.listdir(folder) and "sysctl.txt" in os.listdir(folder)
    assert "net.ipv4.conf.all.rp_filter" in (folder / "sysctl.txt").read_text()
    traced = subprocess.run(
        [sys.executable, "-m", "clew", "trace", "--from-dump", str(folder), "--src", "192.0.2.50", "--dst",
         "192.0.2.10", "--dport", "22"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert traced.returncode == 0 and "dropped" in traced.stdout, traced.stderr


def test_explain_without_a_source_and_a_missing_service_exits_1(namespace: str) -> None:
    proc = inside(namespace, "explain", "service", "default/nothing")
    assert proc.returncode == 1
    assert "no rule names Service default/nothing" in proc.stdout and "Traceback" not in proc.stderr


def test_ruleset_from_stdin(namespace: str) -> None:
    proc = inside(
        namespace, "trace", "--ruleset", "-", "--local-ip", "192.0.2.10", "--src", "192.0.2.50", "--dst",
        "192.0.2.10", "--dport", "22", "--iif", "dummy0", stdin=RULES,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "dropped" in proc.stdout


def test_verify_refuses_the_namespace_it_runs_in(namespace: str) -> None:
    proc = inside(namespace, "trace", "--src", "192.0.2.50", "--dst", "192.0.2.10", "--verify")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--netns" in proc.stderr, proc.stderr
    own = inside(namespace, "trace", "--netns", "/proc/self/ns/net", "--src", "192.0.2.50", "--dst", "192.0.2.10",
                 "--verify")  # fmt: skip
    assert own.returncode == 2 and "refuses" in own.stderr, own.stderr


def test_verify_prints_the_kernels_path_beside_the_prediction_and_removes_what_it_added(namespace: str) -> None:
    links = netns.run(namespace, ["ip", "-o", "link"]).stdout
    proc = subprocess.run(
        [sys.executable, "-m", "clew", "trace", "--netns", namespace, "--src", "192.0.2.50", "--dst", "192.0.2.10",
         "--dport", "22", "--verify"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verified by the kernel (nftables trace)" in proc.stdout
    assert "filter/INPUT drop" in proc.stdout and "agree: the kernel took the path of outcome 1" in proc.stdout
    assert netns.run(namespace, ["ip", "-o", "link"]).stdout == links
    assert "clew_verify" not in netns.run(namespace, ["nft", "list", "tables"]).stdout
    # the throwaway namespace is gone (by name: other sessions may verify at the same time)
    thrown = [line.split()[-1] for line in proc.stdout.splitlines() if "arriving on cv" in line]
    assert thrown and not [n for n in netns.list_names("clew-verify-") if n.endswith(thrown[0][2:].rstrip(":"))]


def test_both_iptables_backends_are_walked_when_both_hold_rules(namespace: str) -> None:
    """iptables-nft accepts port 80 (the fixture's rules are nft), iptables-legacy drops it: the
    kernel runs both, so the packet is dropped, and the trace says so, naming the legacy rule."""
    netns.run(namespace, ["iptables-nft", "-I", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"])
    netns.run(namespace, ["iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"])
    server = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c",
         "import socket,sys; s=socket.socket(); s.bind(('0.0.0.0',80)); s.listen(); print('ready', flush=True); "
         "s.accept()"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        probe = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "clew.lab.echo", "probe", "--dst", "192.0.2.10",
             "--port", "80", "--timeout", "0.5"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert json.loads(probe.stdout)["attempts"][0]["error"] == "timeout"  # dropped by legacy's rule
        proc = inside(namespace, "trace", "--src", "192.0.2.10", "--dst", "192.0.2.10", "--dport", "80", "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        (o,) = doc["outcomes"]
        assert o["verdict"] == "DROP" and o["hops"][-1]["table"] == "legacy filter"
        assert any("both iptables backends hold rules" in w for w in doc["warnings"])
        assert any("iptables-legacy" in a["what"] for a in o["assumptions"])
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
        netns.run(namespace, ["iptables-legacy", "-F"])
