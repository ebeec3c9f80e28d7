"""A small two-node cluster network in throwaway namespaces, for kernel tests.

::

    ext   192.168.50.100/24  (routes 203.0.113.0/24 and 198.51.100.0/24 via 192.168.50.2)
     |  bridge br0 in the ``sw`` namespace; ext, node and node2 plug into it by veth
    node  eth0 192.168.50.2/24, cni0 10.244.1.1/24, 10.244.2.0/24 via 192.168.50.3, ip_forward=1
      pods 10.244.1.10, .11, … (eth0 veth into cni0, hairpin on, default via 10.244.1.1)
    node2 eth0 192.168.50.3/24, cni0 10.244.2.1/24, 10.244.1.0/24 via 192.168.50.2, ip_forward=1
      pods 10.244.2.10, .11, …

Namespaces are ``PREFIX-ext``, ``PREFIX-sw``, ``PREFIX-node``, ``PREFIX-node2`` and ``PREFIX-POD``.
Everything is built with ``ip -n NS -batch`` and every link is created inside the namespaces, so
the caller's namespace is never touched. :meth:`Topology.close` (also run at exit) ends the echo
servers and deletes every namespace.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from poll import poll_until

import clew
from clew.kernel import iptables, netns
from clew.lab.echo import ProbeResult

EXT_IP = "192.168.50.100"
UNDERLAY_PREFIX = 24
EXT_ROUTES = ("203.0.113.0/24", "198.51.100.0/24")
ROLES = ("ext", "sw", "node", "node2")
_POD_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_SRC_DIR = str(Path(clew.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class NodeConf:
    ip: str  # underlay (eth0) address
    pod_net: str  # first three octets of the node's /24 pod subnet
    peer_ip: str
    peer_pod_net: str

    @property
    def gateway(self) -> str:
        return f"{self.pod_net}.1"


NODES = {
    "node": NodeConf("192.168.50.2", "10.244.1", "192.168.50.3", "10.244.2"),
    "node2": NodeConf("192.168.50.3", "10.244.2", "192.168.50.2", "10.244.1"),
}

# ip_forward on; no ICMP redirects, so a probe never changes a client's route cache (ext would
# otherwise learn to reach node2's pods directly after the first packet through node).
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    **{f"net.ipv4.conf.{dev}.send_redirects": 0 for dev in ("all", "default", "eth0", "cni0")},
}

# (table, chain, rule args) for iptables.ensure_rule, e.g. kube-proxy's jump into KUBE-SERVICES.
JumpRule = tuple[str, str, Sequence[str]]


def unique_prefix(base: str = "clewt") -> str:
    """``clewt-XXXX`` (4 random hex digits) with no namespace of that prefix in use."""
    for _ in range(100):
        prefix = f"{base}-{secrets.token_hex(2)}"
        if not netns.list_names(prefix + "-"):
            return prefix
    raise RuntimeError(f"no free {base}-XXXX namespace prefix")


class TopologyFactory(Protocol):
    """What the ``topology_factory`` fixture yields."""

    def __call__(self, pods: Mapping[str, Sequence[str]] | None = None) -> Topology: ...


class Topology:
    """Build on construction; :meth:`close` (or leaving the ``with`` block) tears it all down."""

    def __init__(self, prefix: str, pods: Mapping[str, Sequence[str]] | None = None) -> None:
        self.prefix = prefix
        self.pods = {node: list(names) for node, names in (pods or {}).items()}
        self._check()
        self._pod_node: dict[str, str] = {}
        self._pod_ip: dict[str, str] = {}
        for node, names in self.pods.items():
            for i, pod in enumerate(names):
                self._pod_node[pod] = node
                self._pod_ip[pod] = f"{NODES[node].pod_net}.{10 + i}"
        self._names = [self.ns(r) for r in ROLES] + [self.ns(p) for p in self._pod_node]
        self._procs: list[subprocess.Popen[bytes]] = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ naming

    def _check(self) -> None:
        if not re.fullmatch(r"[a-z0-9-]{1,20}", self.prefix):
            raise ValueError(f"bad topology prefix {self.prefix!r}")
        unknown = set(self.pods) - set(NODES)
        if unknown:
            raise ValueError(f"pods on unknown nodes {sorted(unknown)}; nodes are {sorted(NODES)}")
        names = [p for ps in self.pods.values() for p in ps]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate pod names in {names}")
        for pod in names:
            if pod in ROLES or not _POD_NAME.match(pod):
                raise ValueError(f"bad pod name {pod!r} (lowercase, not one of {ROLES})")
        if any(len(ps) > 200 for ps in self.pods.values()):
            raise ValueError("at most 200 pods per node")

    def ns(self, role_or_pod: str) -> str:
        """The real namespace name of a role (ext, sw, node, node2) or a pod."""
        if role_or_pod not in ROLES and role_or_pod not in self._pod_node:
            raise KeyError(f"no role or pod {role_or_pod!r} in topology {self.prefix}")
        return f"{self.prefix}-{role_or_pod}"

    def pod_ip(self, pod: str) -> str:
        return self._pod_ip[pod]

    def pod_node(self, pod: str) -> str:
        return self._pod_node[pod]

    def node_ip(self, node: str) -> str:
        return EXT_IP if node == "ext" else NODES[node].ip

    @property
    def namespaces(self) -> list[str]:
        return list(self._names)

    # ------------------------------------------------------------------ build

    def _build(self) -> None:
        netns.run_batch(None, [f"netns add {name}" for name in self._names])
        sw = self.ns("sw")
        # br0 first, so no veth end in sw shares its ifindex with its peer's: a veth whose
        # ifindex equals its peer's ifindex (in another netns) gets its carrier event through the
        # kernel's rate-limited linkwatch, up to a second late.
        netns.run_batch(sw, ["link set lo up", "link add br0 type bridge", "link set br0 up"])
        netns.run_batch(
            self.ns("ext"),
            [
                "link set lo up",
                f"link add eth0 type veth peer name ext netns {sw}",
                f"addr add {EXT_IP}/{UNDERLAY_PREFIX} dev eth0",
                "link set eth0 up",
                *(f"route add {dst} via {NODES['node'].ip}" for dst in EXT_ROUTES),
            ],
        )
        for node in NODES:
            netns.run_batch(self.ns(node), self._node_commands(node))
        ports = ("ext", *NODES)
        netns.run_batch(sw, [c for p in ports for c in (f"link set {p} master br0", f"link set {p} up")])
        for pod, ip in self._pod_ip.items():
            gateway = NODES[self._pod_node[pod]].gateway
            netns.run_batch(
                self.ns(pod),
                [
                    "link set lo up",
                    f"addr add {ip}/24 dev eth0",
                    "link set eth0 up",
                    f"route add default via {gateway}",
                ],
            )
        for node in NODES:
            netns.set_sysctls(self.ns(node), NODE_SYSCTLS)
        self._wait_bridge_ports()

    def _wait_bridge_ports(self, deadline_s: float = 5.0) -> None:
        """Wait until every bridge port (sw's br0, the nodes' cni0) is forwarding."""
        for who in ("sw", *NODES):
            ns = self.ns(who)

            def forwarding(ns: str = ns) -> bool:
                out = netns.run(ns, ["bridge", "link", "show"]).stdout
                return all("state forwarding" in line for line in out.splitlines() if "master" in line)

            poll_until(forwarding, deadline_s, interval=0.02, what=f"bridge ports forwarding in {ns}")

    def _node_commands(self, node: str) -> list[str]:
        conf = NODES[node]
        cmds = [
            "link set lo up",
            f"link add eth0 type veth peer name {node} netns {self.ns('sw')}",
            f"addr add {conf.ip}/{UNDERLAY_PREFIX} dev eth0",
            "link set eth0 up",
            "link add cni0 type bridge",
            f"addr add {conf.gateway}/24 dev cni0",
            "link set cni0 up",
            f"route add {conf.peer_pod_net}.0/24 via {conf.peer_ip}",
        ]
        for i, pod in enumerate(self.pods.get(node, [])):
            veth = f"veth{i}"
            cmds += [
                f"link add {veth} type veth peer name eth0 netns {self.ns(pod)}",
                f"link set {veth} master cni0",
                f"link set {veth} type bridge_slave hairpin on",
                f"link set {veth} up",
            ]
        return cmds

    # ------------------------------------------------------------------ use

    def run(
        self, who: str, argv: Sequence[str], *, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a role's or pod's namespace (``input``: its stdin)."""
        return netns.run(self.ns(who), argv, check=check, input=input)

    def add_route(self, who: str, dst: str, *, via: str | None = None, dev: str | None = None) -> None:
        """``ip route replace DST [via VIA] [dev DEV]`` inside ``who``."""
        if via is None and dev is None:
            raise ValueError("add_route needs via or dev")
        cmd = f"route replace {dst}" + (f" via {via}" if via else "") + (f" dev {dev}" if dev else "")
        netns.run_batch(self.ns(who), [cmd])

    def load_rules(
        self,
        node: str,
        payload: str,
        *,
        jumps: Sequence[JumpRule] = (),
        noflush: bool = False,
    ) -> None:
        """iptables-restore ``payload`` into ``node`` (a full restore unless ``noflush``), then
        ensure each ``(table, chain, args)`` of ``jumps`` (prepended, kube-proxy style)."""
        iptables.restore(self.ns(node), payload, noflush=noflush, counters=False)
        for table, chain, args in jumps:
            iptables.ensure_rule(self.ns(node), table, chain, list(args))

    def iptables(self, who: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return iptables.iptables(self.ns(who), args)

    def start_echo(
        self, who: str, ports: Sequence[int], *, name: str | None = None, timeout: float = 5.0
    ) -> subprocess.Popen[bytes]:
        """Start an echo server (TCP+UDP on each port) in ``who``; returns once it is ready.

        It answers with ``name`` (default: ``who``).
        """
        argv = [sys.executable, "-m", "clew.lab.echo", "serve", "--name", name or who]
        for port in ports:
            argv += ["--port", str(port)]
        proc = netns.spawn(
            self.ns(who),
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        self._procs.append(proc)
        _wait_ready(proc, timeout, f"echo server in {self.ns(who)}")
        return proc

    def probe(
        self,
        from_: str,
        dst: str,
        port: int,
        proto: str = "tcp",
        count: int = 1,
        timeout: float = 1.0,
        src: str | None = None,
        sport: int = 0,
    ) -> ProbeResult:
        """Run ``python -m clew.lab.echo probe`` inside ``from_`` and return its result."""
        argv = [sys.executable, "-m", "clew.lab.echo", "probe", "--dst", dst, "--port", str(port)]
        argv += ["--proto", proto, "--count", str(count), "--timeout", str(timeout)]
        if src is not None:
            argv += ["--src", src]
        if sport:
            argv += ["--sport", str(sport)]
        ns = self.ns(from_)
        proc = subprocess.run(
            netns.exec_argv(ns, argv),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=count * timeout + 30,
            check=False,
        )
        try:
            return ProbeResult.from_json(json.loads(proc.stdout))
        except (ValueError, KeyError) as exc:
            raise RuntimeError(f"probe in {ns} gave no result (exit {proc.returncode}): {proc.stderr.strip()}") from exc

    def probe_batch(self, from_: str, jobs: Sequence[Mapping[str, object]], timeout: float = 1.0) -> list[ProbeResult]:
        """Many probes from one process in ``from_`` (``python -m clew.lab.echo batch``): each
        job ``{"dst", "port", "proto", "count", "src", "sport"}``; results in order."""
        argv = [sys.executable, "-m", "clew.lab.echo", "batch", "--timeout", str(timeout)]
        ns = self.ns(from_)
        budget = sum(int(str(j.get("count", 1))) for j in jobs) * timeout + 30
        proc = subprocess.run(
            netns.exec_argv(ns, argv),
            input="".join(json.dumps(dict(j)) + "\n" for j in jobs),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=budget,
            check=False,
        )
        try:
            return [ProbeResult.from_json(doc) for doc in json.loads(proc.stdout)]
        except (ValueError, KeyError) as exc:
            raise RuntimeError(
                f"probe batch in {ns} gave no result (exit {proc.returncode}): {proc.stderr.strip()}"
            ) from exc

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """End the processes this topology started and delete all its namespaces. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            _stop_all(self._procs)
        finally:
            _delete_all(self._names)

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_DIR, env.get("PYTHONPATH")) if p)
    return env


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Wait for a ``ready`` line on ``proc``'s stdout, with a deadline."""
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    out = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"ready\n" not in out:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} not ready after {timeout:g}s; output: {out.decode()!r}")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                raise RuntimeError(f"{what} exited {proc.returncode} before ready: {out.decode()!r}")
            out += chunk


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 2.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def _delete_all(names: Sequence[str]) -> None:
    """Kill what is left in each namespace, then delete them all in one ``ip -batch``."""
    present = [n for n in names if netns.exists(n)]
    for name in present:
        netns.kill_all(name)
    if present:
        try:
            netns.run_batch(None, [f"netns del {n}" for n in present])
        finally:
            for name in present:
                netns.delete(name)  # no-op unless the batch stopped early
