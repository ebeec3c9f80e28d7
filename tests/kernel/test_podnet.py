"""The pod network end to end: three nodes, real packets, vxlan and host-gw.

::

    L2 underlay: bridge br0 in PREFIX-sw; n1 .11, n2 .12, n3 .13 and ext .100 in 192.168.60.0/24
    routed underlay: router PREFIX-rt; node i alone in 192.168.6i.0/24 (.2), default via .1
    each node: cni0 (the subnet's .1, MTU from subnet.env) + one pod PREFIX-pI at the subnet's .10

Every node runs what the agent runs (setup_node, subnet.env, masquerade, reconcile) from Node
objects carrying the annotations the other nodes published; the "CNI" part (cni0, veths) is
built by hand from each node's subnet.env. Names are ``clewn-XXXX-…``; everything is deleted
afterwards, even on failure, and the caller's namespace is never touched.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from poll import poll_until
from topology import _env, _wait_ready, unique_prefix

from clew.kernel import fdb, iptables, links, neighbours, netns, routes
from clew.lab.echo import ProbeResult
from clew.model.objects import Node
from clew.podnet import annotations as flannel_annotations
from clew.podnet import masquerade, netconf, reconcile, setup, subnet_env
from clew.podnet.desired import Desired, Underlay
from clew.podnet.diff import Changes
from clew.podnet.errors import BackendError
from clew.podnet.subnets import allocate_pod_cidrs

pytestmark = pytest.mark.kernel

NAMES = ("n1", "n2", "n3")
PORT = 8080
EXT_IP = "192.168.60.100"


class Cluster:
    """Three node namespaces on an L2 (or routed) underlay; :meth:`close` removes everything."""

    def __init__(self, backend: str, *, routed: bool, state: Path) -> None:
        self.prefix = unique_prefix("clewn")
        self.routed = routed
        self.state = state
        self.conf = netconf.parse({"Network": "10.244.0.0/16", "Backend": {"Type": backend}})
        self.subnets = allocate_pod_cidrs(self.conf.network, self.conf.subnet_len, NAMES, {})
        hub = "rt" if routed else "sw"
        self.roles = [hub, *NAMES, *(["ext"] if not routed else [])]
        self.names = [self.ns(r) for r in self.roles] + [self.ns(self.pod(n)) for n in NAMES]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.setups: dict[str, setup.NodeSetup] = {}
        self.underlays: dict[str, Underlay] = {}
        self.published: dict[str, Node] = {}
        self._closed = False
        atexit.register(self.close)
        try:
            self._build_underlay()
        except BaseException:
            self.close()
            raise

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @staticmethod
    def pod(node: str) -> str:
        return f"p{node[1:]}"

    def node_ip(self, node: str) -> str:
        i = NAMES.index(node) + 1
        return f"192.168.6{i}.2" if self.routed else f"192.168.60.{10 + i}"

    def pod_ip(self, node: str) -> str:
        return str(self.subnets[node].network_address + 10)

    # ------------------------------------------------------------------ build

    def _build_underlay(self) -> None:
        netns.run_batch(None, [f"netns add {n}" for n in self.names])
        hub = self.ns(self.roles[0])
        # a bridge first, so no veth end in the hub shares its ifindex with its peer (whose
        # carrier would then come up through the rate-limited linkwatch, up to 1 s late)
        netns.run_batch(hub, ["link set lo up", "link add br0 type bridge", "link set br0 up"])
        for i, node in enumerate(NAMES, 1):
            cmds = ["link set lo up", f"link add eth0 type veth peer name {node} netns {hub}"]
            if self.routed:
                cmds += [
                    f"addr add 192.168.6{i}.2/24 dev eth0",
                    "link set eth0 up",
                    f"route add default via 192.168.6{i}.1",
                ]
            else:
                cmds += [f"addr add {self.node_ip(node)}/24 dev eth0", "link set eth0 up"]
            netns.run_batch(self.ns(node), cmds)
            netns.set_sysctls(self.ns(node), {"net.ipv4.ip_forward": 1})
        if self.routed:
            netns.run_batch(
                hub,
                [
                    c
                    for i, n in enumerate(NAMES, 1)
                    for c in (f"addr add 192.168.6{i}.1/24 dev {n}", f"link set {n} up")
                ],
            )
            netns.set_sysctls(hub, {"net.ipv4.ip_forward": 1})
            self._wait_carrier(hub, NAMES)
            return
        netns.run_batch(
            self.ns("ext"),
            [
                "link set lo up",
                f"link add eth0 type veth peer name ext netns {hub}",
                f"addr add {EXT_IP}/24 dev eth0",
                "link set eth0 up",
            ],
        )
        ports = [*NAMES, "ext"]
        netns.run_batch(hub, [c for p in ports for c in (f"link set {p} master br0", f"link set {p} up")])
        self._wait_forwarding(hub)

    def build_pods(self) -> None:
        """What the CNI plugin would do, from each node's subnet.env: cni0 and one pod."""
        for node in NAMES:
            env = subnet_env.read(self.state / node / "subnet.env")
            pod = self.ns(self.pod(node))
            netns.run_batch(
                self.ns(node),
                [
                    f"link add cni0 mtu {env.mtu} type bridge",
                    f"addr add {env.subnet} dev cni0",
                    "link set cni0 up",
                    f"link add veth0 mtu {env.mtu} type veth peer name eth0 mtu {env.mtu} netns {pod}",
                    "link set veth0 master cni0",
                    "link set veth0 up",
                ],
            )
            netns.run_batch(
                pod,
                [
                    "link set lo up",
                    f"addr add {self.pod_ip(node)}/{env.subnet.network.prefixlen} dev eth0",
                    "link set eth0 up",
                    f"route add default via {env.gateway}",
                ],
            )
            self._wait_forwarding(self.ns(node))

    def _wait_carrier(self, ns: str, devs: tuple[str, ...]) -> None:
        def carrier() -> bool:
            return all(links.require_link(ns, dev).up for dev in devs) and all(
                "LOWER_UP" in netns.run(ns, ["ip", "-br", "link", "show", "dev", dev]).stdout for dev in devs
            )

        poll_until(carrier, 5.0, interval=0.02, what=f"carrier on {devs} in {ns}")

    def _wait_forwarding(self, ns: str) -> None:
        def forwarding() -> bool:
            out = netns.run(ns, ["bridge", "link", "show"]).stdout
            ports = [line for line in out.splitlines() if "master" in line]
            return bool(ports) and all("state forwarding" in line for line in ports)

        poll_until(forwarding, 5.0, interval=0.02, what=f"bridge ports forwarding in {ns}")

    # ------------------------------------------------------------------ the agent's steps

    def setup_all(self) -> None:
        """Per node: underlay, device, lease → annotations, subnet.env, masquerade rules."""
        for node in NAMES:
            ns, subnet = self.ns(node), self.subnets[node]
            self.underlays[node] = setup.read_underlay(ns, "eth0")
            done = setup.setup_node(ns, self.conf, node, subnet, self.underlays[node])
            self.setups[node] = done
            env = subnet_env.SubnetEnv.for_subnet(self.conf.network, subnet, done.pod_mtu, ipmasq=True)
            env.write(self.state / node / "subnet.env")
            masquerade.apply(ns, self.conf.network, subnet)
            self.published[node] = Node(
                node,
                internal_ips=(self.node_ip(node),),
                pod_cidrs=(str(subnet),),
                annotations=flannel_annotations.lease_annotations(done.lease),
            )

    def desired(self, node: str, members: tuple[str, ...] = NAMES) -> Desired:
        found = flannel_annotations.leases([self.published[m] for m in members], self.conf.network)
        assert found.problems == ()
        done = self.setups[node]
        return done.backend.desired(done.lease, found.leases, self.underlays[node])

    def reconcile_all(self, members: tuple[str, ...] = NAMES) -> dict[str, Changes]:
        return {n: reconcile.reconcile(self.ns(n), self.desired(n, members)) for n in members}

    # ------------------------------------------------------------------ traffic

    def start_echo(self, role: str) -> None:
        argv = [sys.executable, "-m", "clew.lab.echo", "serve", "--name", role, "--port", str(PORT)]
        proc = netns.spawn(
            self.ns(role), argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env()
        )
        self.procs.append(proc)
        _wait_ready(proc, 5.0, f"echo server in {self.ns(role)}")

    def probe(self, role: str, dst: str, timeout: float = 1.0) -> ProbeResult:
        argv = [
            sys.executable,
            "-m",
            "clew.lab.echo",
            "probe",
            "--dst",
            dst,
            "--port",
            str(PORT),
            "--timeout",
            str(timeout),
        ]
        proc = subprocess.run(
            netns.exec_argv(self.ns(role), argv),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=timeout + 30,
            check=False,
        )
        return ProbeResult.from_json(json.loads(proc.stdout))

    def ping_df(self, node: str, dst: str, size: int) -> subprocess.CompletedProcess[str]:
        """One don't-fragment ping of ``size`` payload bytes from the pod on ``node``."""
        argv = ["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", str(size), dst]
        return netns.run(self.ns(self.pod(node)), argv, check=False)

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.procs:
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                if proc.stdout is not None:
                    proc.stdout.close()
        finally:
            present = [n for n in self.names if netns.exists(n)]
            for name in present:
                netns.kill_all(name)
            try:
                if present:
                    netns.run_batch(None, [f"netns del {n}" for n in present])
            finally:
                for name in present:
                    netns.delete(name)


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    made: list[Cluster] = []

    def make(backend: str, routed: bool = False) -> Cluster:
        cluster = Cluster(backend, routed=routed, state=tmp_path / f"c{len(made)}")
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()
        assert all(not netns.list_names(c.prefix + "-") for c in made)


def _assert_pods_talk_unnatted(c: Cluster) -> None:
    for src in NAMES:
        for dst in NAMES:
            if src == dst:
                continue
            result = c.probe(c.pod(src), c.pod_ip(dst))
            assert result.all_ok, f"{src} -> {dst}: {result.to_json()}"
            assert result.servers == {c.pod(dst)}
            assert result.seen_ips == {c.pod_ip(src)}, f"{src} -> {dst} was NATed: {result.seen_ips}"


def _owned(c: Cluster, node: str) -> tuple[set[str], set[str], set[str]]:
    """Routes (dst) in the cluster network, permanent neighbours and FDB MACs of flannel.1."""
    ns = c.ns(node)
    dsts = {str(r.dst) for r in routes.list_routes(ns) if r.dst.subnet_of(c.conf.network) and r.dev != "cni0"}
    if links.get_link(ns, "flannel.1") is None:
        return dsts, set(), set()
    neigh = {str(n.ip) for n in neighbours.list_neighbours(ns, "flannel.1") if n.permanent}
    macs = {e.mac for e in fdb.list_fdb(ns, "flannel.1")}
    return dsts, neigh, macs


@pytest.mark.parametrize("backend", ["vxlan", "host-gw"])
def test_pods_reach_pods_on_other_nodes(make_cluster: MakeCluster, backend: str) -> None:
    c: Cluster = make_cluster(backend)
    c.setup_all()
    c.build_pods()
    first = c.reconcile_all()
    per_node = 6 if backend == "vxlan" else 2  # route (+ neigh + fdb) for each of 2 peers
    assert {n: len(ch.of("add")) for n, ch in first.items()} == dict.fromkeys(NAMES, per_node)
    assert all(len(ch) == per_node for ch in first.values())
    for node in NAMES:
        c.start_echo(c.pod(node))
    _assert_pods_talk_unnatted(c)

    # converged: a second setup and reconcile change nothing
    c.setup_all()
    assert all(s.device is None or s.device.changes == () for s in c.setups.values())
    assert c.reconcile_all() == dict.fromkeys(NAMES, Changes())
    for node in NAMES:  # the jumps exist once although the rules were applied twice
        nat = iptables.save(c.ns(node), "nat") + iptables.save(c.ns(node), "filter")
        assert nat.count("-j FLANNEL-POSTRTG") == 1 and nat.count("-j FLANNEL-FWD") == 1

    # pods leaving the cluster are masqueraded to their node's address
    c.start_echo("ext")
    out = c.probe(c.pod("n1"), EXT_IP)
    assert out.all_ok and out.seen_ips == {c.node_ip("n1")}

    # MTU: the pod MTU crosses the underlay unfragmented, one byte more does not leave the pod
    mtu = subnet_env.read(c.state / "n1" / "subnet.env").mtu
    assert mtu == (1450 if backend == "vxlan" else 1500)
    ok = c.ping_df("n1", c.pod_ip("n2"), mtu - 28)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    too_big = c.ping_df("n1", c.pod_ip("n2"), mtu - 27)
    assert too_big.returncode != 0 and "message too long" in too_big.stdout + too_big.stderr

    # n3 leaves: its route (and neighbour and FDB entry) disappear from the others
    n3_subnet, n3_vtep = str(c.subnets["n3"]), str(c.subnets["n3"].network_address)
    n3_mac = c.setups["n3"].lease.vtep_mac
    assert n3_subnet in _owned(c, "n1")[0]
    gone = c.reconcile_all(("n1", "n2"))
    for node in ("n1", "n2"):
        assert [x.action for x in gone[node]] == ["delete"] * (per_node // 2)
        dsts, neigh, macs = _owned(c, node)
        assert n3_subnet not in dsts and n3_vtep not in neigh and n3_mac not in macs
        assert str(c.subnets["n2" if node == "n1" else "n1"]) in dsts
    lost = c.probe(c.pod("n1"), c.pod_ip("n3"), timeout=0.5)
    assert not lost.all_ok
    assert c.probe(c.pod("n1"), c.pod_ip("n2")).all_ok


def test_vxlan_device_is_recreated_and_reprogrammed(make_cluster: MakeCluster) -> None:
    c: Cluster = make_cluster("vxlan")
    c.setup_all()
    c.build_pods()
    c.reconcile_all()
    mac = c.setups["n1"].device.mac if c.setups["n1"].device else None
    links.delete_link(c.ns("n1"), "flannel.1")  # someone deleted it; its entries went with it
    again = setup.setup_node(c.ns("n1"), c.conf, "n1", c.subnets["n1"], c.underlays["n1"])
    assert again.device is not None and again.device.changes[0] == "created" and again.device.mac == mac
    healed = reconcile.reconcile(c.ns("n1"), c.desired("n1"))
    assert len(healed.of("add")) == 6
    # a changed setting (another port) cannot be changed in place: the device is recreated
    other = netconf.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 4789}})
    moved = setup.setup_node(c.ns("n1"), other, "n1", c.subnets["n1"], c.underlays["n1"])
    assert moved.device is not None and moved.device.changes[0] == "recreated (dstport 8472 -> 4789)"
    back = setup.setup_node(c.ns("n1"), c.conf, "n1", c.subnets["n1"], c.underlays["n1"])
    assert back.device is not None and back.device.changes[0].startswith("recreated")
    reconcile.reconcile(c.ns("n1"), c.desired("n1"))
    c.start_echo(c.pod("n2"))
    assert c.probe(c.pod("n1"), c.pod_ip("n2")).all_ok


def test_routed_underlay_host_gw_refuses_vxlan_works(make_cluster: MakeCluster) -> None:
    hostgw: Cluster = make_cluster("host-gw", routed=True)
    hostgw.setup_all()
    with pytest.raises(BackendError) as info:
        hostgw.desired("n1")
    assert 'host-gw cannot reach node "n2" at 192.168.62.2: not on a directly connected network of eth0' in str(
        info.value
    )
    assert str(info.value).endswith("; use the vxlan backend")
    hostgw.close()

    c: Cluster = make_cluster("vxlan", routed=True)
    c.setup_all()
    c.build_pods()
    c.reconcile_all()
    for node in NAMES:
        c.start_echo(c.pod(node))
    _assert_pods_talk_unnatted(c)
    assert ipaddress.IPv4Address(c.node_ip("n2")) not in c.underlays["n1"].networks[0]
