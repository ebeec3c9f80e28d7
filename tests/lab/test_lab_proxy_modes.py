"""The lab in nftables mode, and a live node switched between the modes (issue 8): the demo's
checks pass with every agent in nftables mode; a long-lived TCP stream through a ClusterIP keeps
flowing while its node's agent is restarted in nftables mode and back in iptables mode, and after
each switch no rule of the old mode is left (no KUBE-* chain in iptables-save, no ``ip clew``
table) while new connections to the Service work. Labs are named ``bl<4 hex>``."""

from __future__ import annotations

import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from labkit import NAMESPACE, app, clew, poll_until, running_lab, sweep, unique_name

from clew.kernel import netns
from clew.kernel.ns_socket import socket_in
from clew.lab import demo

pytestmark = pytest.mark.lab

STREAM_PORT = 9000


def test_demo_checks_pass_in_nftables_mode() -> None:
    said: list[str] = []
    report = demo.run(said.append, unique_name("bl"), proxy_mode="nftables")
    assert report.failures == [], "\n".join(said)
    assert any("nftables mode" in line for line in said)
    # The tracer reads the node's nftables table too: the Service, its endpoints and the hairpin.
    assert report.short.count("Service demo/web:http") >= 2, report.short
    assert "(masqueraded)" in report.short, report.short
    assert all(len(set(servers)) > 1 for servers in report.clusterip.values()), report.clusterip


def stream_service(name: str, selector: str) -> dict[str, object]:
    ports = [{"name": "s", "port": 80, "targetPort": STREAM_PORT}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"app": selector}, "ports": ports}}  # fmt: skip


@contextmanager
def echo_servers(netnses: list[str]) -> Iterator[None]:
    """netperf's echo server (``R``: every byte back) on STREAM_PORT in each namespace."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in netnses:
            argv = [sys.executable, "-m", "clew.bench.netperf", "serve", "--port", str(STREAM_PORT)]
            proc = netns.spawn(ns, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            procs.append(proc)
            assert proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                assert sel.select(10) and proc.stdout.readline().startswith(b"ready"), ns
        yield
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Stream:
    """One TCP connection from a pod to a ClusterIP, a byte echoed every 20 ms on a thread."""

    sock: socket.socket
    exchanges: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        self.sock.settimeout(3.0)
        while not self.stop.is_set():
            try:
                self.sock.sendall(b"x")
                if self.sock.recv(1) != b"x":
                    self.errors.append("the stream was closed")
                    return
                self.exchanges += 1
            except OSError as e:
                self.errors.append(f"after {self.exchanges} exchanges: {e}")
                return
            time.sleep(0.02)

    def wait_more(self, what: str) -> None:
        seen = self.exchanges
        poll_until(lambda: self.exchanges >= seen + 10 or self.errors, 10.0, f"the stream flows {what}")
        assert not self.errors, self.errors


def node_rules(ns: str) -> tuple[bool, bool]:
    """(any KUBE-* chain in iptables-save, the ``ip clew`` table exists) in a node's namespace."""
    saved = netns.run(ns, ["iptables-save"]).stdout
    tables = netns.run(ns, ["nft", "list", "tables"]).stdout
    return "KUBE-" in saved, "table ip clew" in tables.splitlines()


def test_a_stream_survives_switching_a_node_to_nftables_and_back() -> None:
    with running_lab(name_prefix="bl", nodes=2, backend="host-gw") as lab:
        lab.apply([*app("web", 2), stream_service("stream", "web"), *app("cli", 1)])
        client = lab.pods("cli")[0]
        node = lab.state.plan.node(client.node)
        assert node_rules(node.netns) == (True, False)
        ip = lab.state.services[f"{NAMESPACE}/stream"]["spec"]["clusterIP"]
        with echo_servers([p.netns for p in lab.pods("web")]):
            sock = socket_in(client.netns, socket.AF_INET, socket.SOCK_STREAM, bind=("0.0.0.0", 0))
            try:
                sock.settimeout(5.0)
                sock.connect((ip, 80))
                sock.sendall(b"R")  # netperf: echo every byte
                stream = Stream(sock)
                thread = threading.Thread(target=stream.run, daemon=True)
                thread.start()
                stream.wait_more("before the switch")
                for mode, expected in (("nftables", (False, True)), ("iptables", (True, False))):
                    proc = clew("lab", "restart", node.name, "--name", lab.name, "--proxy-mode", mode, timeout=90)
                    assert proc.returncode == 0, proc.stderr
                    assert f"in {mode} mode" in proc.stdout
                    assert node_rules(node.netns) == expected, mode  # nothing of the old mode is left
                    stream.wait_more(f"after the switch to {mode}")
                    (result,) = sweep(client.netns, [f"{lab.cluster_ip('web')}:80"], count=4)
                    assert all(a["ok"] for a in result["attempts"]), (mode, result["summary"])
                stream.stop.set()
                thread.join(timeout=5)
                assert not stream.errors and stream.exchanges > 30, (stream.exchanges, stream.errors)
            finally:
                sock.close()
