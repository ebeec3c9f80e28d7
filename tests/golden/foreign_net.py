"""A small throwaway network around one foreign ruleset, to check the tracer against real packets.

`Net` makes a "node" namespace and one namespace per peer, each joined to the node by a veth pair
(the node's end named as the ruleset expects: eth0, docker0, weave, …), sets the node to forward
with the kernel's own rp_filter off (so only the rules decide), loads ipsets and the ruleset into
the node, starts echo servers (``clew.lab.echo``) and probes from any namespace. Every namespace
it made is deleted by `close`, and every process it started is ended, whatever happened. Names
start with ``th-fx``.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from clew.kernel import netns
from clew.lab.echo import Attempt, ProbeResult
from clew.trace.node_view import NodeView, from_netns

SRC = str(Path(__file__).resolve().parents[2] / "src")


@dataclass(frozen=True)
class Peer:
    """A namespace joined to the node: ``node_if`` (node's end, ``node_addr``) ↔ its ``eth0`` with
    ``addrs`` (the first is the one on the link; more are extra /32s, e.g. to spoof a source)."""

    name: str
    node_if: str
    node_addr: str  # with prefix: "192.168.1.11/24"
    addrs: tuple[str, ...]  # with prefix: ("192.168.1.50/24", "10.9.9.9/32")
    routes: tuple[str, ...] = ("default",)  # destinations the peer sends via the node
    node_routes: tuple[str, ...] = ()  # destinations the node sends to this peer ("10.32.0.9/32")
    node_extra: tuple[str, ...] = ()  # more addresses on the node's end (Service IPs on kube-ipvs0)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Net:
    peers: tuple[Peer, ...]
    prefix: str = field(default_factory=lambda: f"th-fx{secrets.token_hex(2)}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    made: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    def ns(self, who: str) -> str:
        return self.node if who == "node" else f"{self.prefix}-{who}"

    def run(self, who: str, *argv: str, stdin: str | None = None) -> str:
        done = netns.run(self.ns(who), list(argv), input=stdin)
        return done.stdout

    def build(self) -> None:
        for name in ("node", *(p.name for p in self.peers)):
            netns.create(self.ns(name))
            self.made.append(self.ns(name))
        self.run("node", "ip", "link", "set", "lo", "up")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            self.run("node", "sysctl", "-qw", key)
        for p in self.peers:
            peer_ns = self.ns(p.name)
            self.run("node", "ip", "link", "add", p.node_if, "type", "veth", "peer", "name", "eth0", "netns", peer_ns)
            self.run("node", "sysctl", "-qw", f"net.ipv4.conf.{p.node_if}.rp_filter=0")
            for addr in (p.node_addr, *p.node_extra):
                self.run("node", "ip", "addr", "add", addr, "dev", p.node_if)
            self.run("node", "ip", "link", "set", p.node_if, "up")
            self.run(p.name, "ip", "link", "set", "lo", "up")
            for addr in p.addrs:
                self.run(p.name, "ip", "addr", "add", addr, "dev", "eth0")
            self.run(p.name, "ip", "link", "set", "eth0", "up")
            gateway = p.node_addr.split("/")[0]
            for dst in p.routes:
                self.run(p.name, "ip", "route", "add", dst, "via", gateway, "dev", "eth0", "onlink")
            link_ip = p.addrs[0].split("/")[0]
            for dst in p.node_routes:
                self.run("node", "ip", "route", "add", dst, "via", link_ip, "dev", p.node_if)

    def load(self, rules: str, ipsets: str | None = None) -> None:
        if ipsets:
            self.run("node", "ipset", "restore", stdin=ipsets)
        self.run("node", "iptables-restore", stdin=rules)

    def echo(self, who: str, *ports: int, name: str | None = None) -> None:
        argv = [sys.executable, "-m", "clew.lab.echo", "serve", "--name", name or who]
        for port in ports:
            argv += ["--port", str(port)]
        proc = netns.spawn(self.ns(who), argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=_env())  # fmt: skip
        self.procs.append(proc)
        _wait_ready(proc, 10.0)

    def probe(self, who: str, dst: str, port: int, proto: str = "tcp", src: str | None = None) -> Attempt:
        argv = [sys.executable, "-m", "clew.lab.echo", "probe", "--dst", dst, "--port", str(port), "--proto", proto,
                "--count", "1", "--timeout", "1"]  # fmt: skip
        if src:
            argv += ["--src", src]
        done = subprocess.run(netns.exec_argv(self.ns(who), argv), capture_output=True, text=True, env=_env(),
                              timeout=60, check=False)  # fmt: skip
        return ProbeResult.from_json(json.loads(done.stdout)).attempts[0]

    def view(self) -> NodeView:
        return from_netns(self.node)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        for name in self.made:
            if netns.exists(name):
                netns.delete(name)


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    out = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"ready\n" not in out:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"echo server not ready after {timeout:g}s: {out.decode()!r}")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"echo server exited before ready: {out.decode()!r}")
            out += chunk


def kernel_result(a: Attempt) -> str:
    """``answer:NAME seen:IP``, ``refused`` or ``timeout`` (what the client saw)."""
    if a.ok:
        seen = (a.seen or "?").rsplit(":", 1)[0]
        return f"answer:{a.server} seen:{seen}"
    kind = (a.error or "other").split(":")[0]
    return "timeout" if kind in ("timeout", "unreachable") else kind
