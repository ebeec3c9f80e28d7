"""clew-cni against the kernel: exec'ed as a runtime does, in a throwaway node namespace.

::

    PREFIX-node   the "host": clew-cni runs here (ip netns exec), cni0 10.244.1.1/24 appears here
      vethXXXXXXXX (hairpin, in cni0)  ⇄  eth0 10.244.1.N/24 in PREFIX-<pod>, default via .1

Every supported spec version goes through ADD, CHECK, DEL, DEL again; DEL also runs after the
pod's namespace is gone; GC, STATUS, failures half-way and 50 concurrent ADDs on one node. The
IPAM store and result cache live in pytest's tmp_path. Names are ``clewc-XXXX-…``; every namespace
is deleted afterwards, also on failure, and the caller's namespace is never touched.
"""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from poll import poll_until
from topology import unique_prefix

import clew
from clew.cni import errors
from clew.cni.config import SUPPORTED_VERSIONS
from clew.kernel import netns

pytestmark = pytest.mark.kernel

SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
PLUGIN = str(Path(sys.executable).with_name("clew-cni"))
Reply = tuple[int, dict[str, object] | None]


@pytest.fixture(scope="module", autouse=True)
def _bytecode() -> None:
    """Compile once: with PYTHONDONTWRITEBYTECODE each plugin run would recompile everything."""
    compileall.compile_dir(str(Path(clew.__file__).parent), quiet=2)


class Node:
    """A node namespace, its pods and the plugin's files; :meth:`close` deletes the namespaces."""

    def __init__(self, state: Path, base: str = "clewc") -> None:
        self.prefix = unique_prefix(base)
        self.node = f"{self.prefix}-node"
        self.state = state
        (state / "subnet.env").write_text(SUBNET_ENV)
        netns.create(self.node)
        netns.run_batch(self.node, ["link set lo up"])

    def close(self) -> None:
        names = netns.list_names(self.prefix + "-")
        if names:
            netns.run_batch(None, [f"netns del {n}" for n in names])
        for name in netns.list_names(self.prefix + "-"):
            netns.delete(name)

    def pods(self, *names: str) -> list[str]:
        full = [f"{self.prefix}-{n}" for n in names]
        netns.run_batch(None, [f"netns add {n}" for n in full])
        return full

    def conf(self, version: str = "1.1.0", **over: object) -> dict[str, object]:
        base: dict[str, object] = {
            "cniVersion": version,
            "name": "cbr0",
            "type": "clew",
            "subnetFile": str(self.state / "subnet.env"),
            "dataDir": str(self.state / "data"),
        }
        return {**base, **over}

    @property
    def store(self) -> Path:
        return self.state / "data" / "cbr0"

    def store_ips(self) -> list[str]:
        return sorted(p.name for p in self.store.iterdir() if p.name[0].isdigit()) if self.store.exists() else []

    def call(
        self,
        command: str,
        conf: dict[str, object],
        container: str = "",
        pod: str | None = None,
        *,
        ifname: str = "eth0",
        netns_path: str | None = None,
        caller: str | None = None,
    ) -> Reply:
        """Exec clew-cni in the node namespace (or ``caller``'s) with the runtime's environment.

        ``CNI_NETNS`` is ``/run/netns/POD`` (or ``netns_path``), left out when both are None.
        """
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command}
        if container:
            env |= {"CNI_CONTAINERID": container, "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin"}
        if netns_path is None and pod is not None:
            netns_path = f"/run/netns/{pod}"
        if netns_path is not None:
            env["CNI_NETNS"] = netns_path
        proc = subprocess.run(
            netns.exec_argv(caller or self.node, [PLUGIN]),
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None)

    def add(self, pod: str, container: str, version: str = "1.1.0", **over: object) -> dict[str, object]:
        rc, res = self.call("ADD", self.conf(version, **over), container, pod)
        assert rc == 0 and res is not None, res
        return res

    def node_run(self, *argv: str) -> str:
        return netns.run(self.node, list(argv)).stdout


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.close()
    assert netns.list_names(n.prefix + "-") == []


def link_json(ns: str, dev: str) -> dict[str, object] | None:
    proc = netns.run(ns, ["ip", "-j", "-d", "addr", "show", "dev", dev], check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None  # type: ignore[no-any-return]


def host_veth(res: dict[str, object]) -> str:
    interfaces = res["interfaces"]
    assert isinstance(interfaces, list)
    return str(interfaces[1]["name"])


def pod_ip(res: dict[str, object]) -> str:
    ips = res["ips"]
    assert isinstance(ips, list)
    return str(ips[0]["address"])


def pings(pod: str, dst: str) -> bool:
    return netns.run(pod, ["ping", "-c", "1", "-W", "1", dst], check=False).returncode == 0


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_check_del_per_version(node: Node, version: str) -> None:
    (pod,) = node.pods("pod")
    res = node.add(pod, "c1", version)

    # the result, in the request's version
    assert res["cniVersion"] == version
    ips = res["ips"]
    assert isinstance(ips, list) and len(ips) == 1
    want_ip = {"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}
    assert ips[0] == (want_ip if version >= "1.0.0" else {"version": "4", **want_ip})
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]
    interfaces = res["interfaces"]
    assert isinstance(interfaces, list)
    assert [i["name"] for i in interfaces] == ["cni0", host_veth(res), "eth0"]
    assert interfaces[2]["sandbox"] == f"/run/netns/{pod}"
    assert ("mtu" in interfaces[2]) is (version == "1.1.0")
    veth = host_veth(res)
    assert veth.startswith("veth") and len(veth) == 12

    # the kernel agrees: pod side
    eth0 = link_json(pod, "eth0")
    assert eth0 is not None and eth0["mtu"] == 1450 and eth0["address"] == interfaces[2]["mac"]
    assert "10.244.1.2" in [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"]  # type: ignore[attr-defined]
    assert "UP" in eth0["flags"]  # type: ignore[operator]
    routes = json.loads(netns.run(pod, ["ip", "-j", "route", "show", "default"]).stdout)
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.244.1.1", "eth0")]
    assert "UP" in link_json(pod, "lo")["flags"]  # type: ignore[index,operator]
    # node side: bridge with the gateway, veth in it with hairpin, forwarding on
    cni0 = link_json(node.node, "cni0")
    assert cni0 is not None and cni0["linkinfo"]["info_kind"] == "bridge"  # type: ignore[index]
    assert [f"{a['local']}/{a['prefixlen']}" for a in cni0["addr_info"] if a["family"] == "inet"] == ["10.244.1.1/24"]  # type: ignore[attr-defined]
    host = link_json(node.node, veth)
    assert host is not None and host["mtu"] == 1450 and host["master"] == "cni0"
    assert node.node_run("cat", f"/sys/class/net/{veth}/brport/hairpin_mode").strip() == "1"
    assert node.node_run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    poll_until(lambda: pings(pod, "10.244.1.1"), 5, what=f"ping 10.244.1.1 from {pod}")

    # CHECK passes on the ADD result (0.3.x has no CHECK)
    check = node.conf(version, prevResult=res)
    if version >= "0.4.0":
        assert node.call("CHECK", check, "c1", pod) == (0, None)
    else:
        rc, err = node.call("CHECK", check, "c1", pod)
        assert rc == 1 and err is not None and err["code"] == errors.INCOMPATIBLE_VERSION

    # DEL, and DEL again
    assert node.call("DEL", node.conf(version, prevResult=res), "c1", pod) == (0, None)
    assert link_json(pod, "eth0") is None and link_json(node.node, veth) is None
    assert node.store_ips() == []
    assert list((node.store / "results").iterdir()) == []
    assert node.call("DEL", node.conf(version), "c1", pod) == (0, None)
    assert link_json(node.node, "cni0") is not None  # the bridge stays, as the reference's does


def test_netns_given_as_a_proc_path(node: Node) -> None:
    """Docker-style ``CNI_NETNS=/proc/PID/ns/net``: the plugin goes through nsenter."""
    (pod,) = node.pods("pod")
    holder = netns.spawn(pod, ["sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        rc, res = node.call("ADD", node.conf(), "c1", netns_path=path)
        assert rc == 0 and res is not None, res
        assert "10.244.1.2" in netns.run(pod, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert node.call("CHECK", node.conf(prevResult=res), "c1", netns_path=path) == (0, None)
        assert node.call("DEL", node.conf(), "c1", netns_path=path) == (0, None)
        assert link_json(pod, "eth0") is None and node.store_ips() == []
    finally:
        holder.kill()
        holder.wait()


def test_check_finds_differences(node: Node) -> None:
    (pod,) = node.pods("pod")
    res = node.add(pod, "c1")
    check = node.conf(prevResult=res)
    netns.run_batch(pod, ["addr flush dev eth0"])
    rc, err = node.call("CHECK", check, "c1", pod)
    assert rc == 1 and err is not None and "lacks address 10.244.1.2/24" in str(err["msg"])
    rc, err = node.call("CHECK", check, "other", pod)
    assert rc == 1 and err is not None and err["code"] == errors.UNKNOWN_CONTAINER
    netns.run_batch(pod, ["link del eth0"])
    rc, err = node.call("CHECK", check, "c1", pod)
    assert rc == 1 and err is not None and "not found" in str(err["msg"])


@pytest.mark.parametrize("with_netns_env", [True, False], ids=["stale-CNI_NETNS", "no-CNI_NETNS"])
def test_del_after_the_netns_is_gone(node: Node, with_netns_env: bool) -> None:
    (pod,) = node.pods("pod")
    res = node.add(pod, "c1")
    netns.delete(pod)
    rc, out = node.call("DEL", node.conf(), "c1", pod if with_netns_env else None)
    assert (rc, out) == (0, None)
    assert node.store_ips() == []
    assert list((node.store / "results").iterdir()) == []
    poll_until(lambda: link_json(node.node, host_veth(res)) is None, 5, what="host veth gone")
    assert node.call("DEL", node.conf(), "c1", None) == (0, None)


def test_del_with_a_netns_path_that_is_no_namespace(node: Node) -> None:
    """A netns file left behind after its namespace went (or any non-namespace): DEL still succeeds."""
    (pod,) = node.pods("pod")
    res = node.add(pod, "c1")
    stale = node.state / "stale-netns"
    stale.write_text("")
    assert node.call("DEL", node.conf(), "c1", netns_path=str(stale)) == (0, None)
    assert link_json(node.node, host_veth(res)) is None  # found through the result cache
    assert node.store_ips() == []


def test_add_into_taken_ifname_fails_and_leaks_nothing(node: Node) -> None:
    (pod,) = node.pods("pod")
    node.add(pod, "c1")
    rc, err = node.call("ADD", node.conf(), "c2", pod)
    assert rc == 1 and err is not None and "eth0 already exists" in str(err["msg"])
    assert node.store_ips() == ["10.244.1.2"]
    assert node.node_run("ip", "-o", "link", "show", "type", "veth").count("veth") == 1
    rc, err = node.call("ADD", node.conf(), "c1", pod)  # the same attachment again
    assert rc == 1 and err is not None and "duplicate allocation" in str(err["msg"])
    assert node.store_ips() == ["10.244.1.2"]


def test_add_failing_half_way_releases_what_it_took(node: Node) -> None:
    """The pod already has a default route: the last step fails; the veth and address go back."""
    (pod,) = node.pods("pod")
    netns.run_batch(pod, ["link add x0 type veth peer name x1", "link set x0 up", "route add default dev x0"])
    rc, err = node.call("ADD", node.conf(), "c1", pod)
    assert rc == 1 and err is not None and "route add default" in str(err["msg"])
    assert node.store_ips() == []
    assert link_json(pod, "eth0") is None
    assert "veth" not in node.node_run("ip", "-o", "link", "show")


def test_bridge_with_another_address_is_refused(node: Node) -> None:
    (pod,) = node.pods("pod")
    netns.run_batch(node.node, ["link add cni0 type bridge", "addr add 10.99.0.1/24 dev cni0"])
    rc, err = node.call("ADD", node.conf(), "c1", pod)
    assert rc == 1 and err is not None
    assert '"cni0" already has an IP address different from 10.244.1.1/24' in str(err["msg"])
    assert node.store_ips() == []


def test_bridge_name_taken_by_another_kind(node: Node) -> None:
    (pod,) = node.pods("pod")
    netns.run_batch(node.node, ["link add cni0 type veth peer name cni0p"])
    rc, err = node.call("ADD", node.conf(), "c1", pod)
    assert rc == 1 and err is not None and "already exists but is not a bridge" in str(err["msg"])


def test_mtu_override_and_hairpin_off(node: Node) -> None:
    (pod,) = node.pods("pod")
    res = node.add(pod, "c1", mtu=1400, hairpinMode=False)
    assert link_json(pod, "eth0")["mtu"] == 1400  # type: ignore[index]
    assert node.node_run("cat", f"/sys/class/net/{host_veth(res)}/brport/hairpin_mode").strip() == "0"


def test_gc_releases_stale_attachments(node: Node) -> None:
    pods = node.pods("a", "b", "c")
    results = [node.add(pod, f"c{i}") for i, pod in enumerate(pods)]
    valid = [{"containerID": "c0", "ifname": "eth0"}]
    assert node.call("GC", node.conf(**{"cni.dev/valid-attachments": valid})) == (0, None)
    assert node.store_ips() == [pod_ip(results[0]).split("/")[0]]
    assert [p.name for p in (node.store / "results").iterdir()] == ["c0-eth0.json"]
    assert link_json(node.node, host_veth(results[0])) is not None
    for res in results[1:]:
        assert link_json(node.node, host_veth(res)) is None
    assert link_json(pods[0], "eth0") is not None


def test_status(node: Node) -> None:
    assert node.call("STATUS", node.conf()) == (0, None)
    rc, err = node.call("STATUS", node.conf(subnetFile=str(node.state / "missing.env")))
    assert rc == 1 and err is not None and err["code"] == errors.NOT_AVAILABLE


def test_version(node: Node) -> None:
    assert node.call("VERSION", {"cniVersion": "1.1.0"}) == (
        0,
        {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)},
    )


def test_fifty_concurrent_adds_then_dels(node: Node) -> None:
    pods = node.pods(*(f"p{i}" for i in range(50)))
    with ThreadPoolExecutor(max_workers=50) as pool:
        adds = list(pool.map(lambda ip: node.call("ADD", node.conf(), f"c{ip[0]}", ip[1]), enumerate(pods)))
    assert all(rc == 0 for rc, _ in adds), [r for r in adds if r[0] != 0][:3]
    addresses = [pod_ip(res) for _, res in adds if res is not None]
    assert len(set(addresses)) == 50
    assert len(node.store_ips()) == 50
    for i in (0, 49):  # two of them actually work
        poll_until(lambda i=i: pings(pods[i], "10.244.1.1"), 5, what=f"ping from {pods[i]}")
    with ThreadPoolExecutor(max_workers=50) as pool:
        dels = list(pool.map(lambda ip: node.call("DEL", node.conf(), f"c{ip[0]}", ip[1]), enumerate(pods)))
    assert all(r == (0, None) for r in dels), [r for r in dels if r != (0, None)][:3]
    assert sorted(p.name for p in node.store.iterdir()) == ["last_reserved_ip.0", "lock", "results"]
    assert list((node.store / "results").iterdir()) == []
    assert "veth" not in node.node_run("ip", "-o", "link", "show")


# ---------------------------------------------------------------- via the node agent's socket
@pytest.fixture
def agent_socket(node: Node) -> Iterator[Path]:
    """The node agent's CNI server (`clew.agent.cni_server`), a process in the node namespace."""
    sock = node.state / "cni.sock"
    proc = netns.spawn(node.node, [sys.executable, "-m", "clew.agent.cni_server", str(sock)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_agent_does_the_work_and_repairs_a_removed_bridge(node: Node, agent_socket: Path) -> None:
    """clew-cni hands ADD/DEL to the agent (the socket is named in the config); the agent's
    remembered bridge is re-checked when someone deleted it meanwhile."""
    p1, p2 = node.pods("a1", "a2")
    res = node.add(p1, "c1", agentSocket=str(agent_socket))
    assert res["ips"][0]["address"] == "10.244.1.2/24"  # type: ignore[index]
    node.node_run("ip", "link", "del", "cni0")  # the bridge goes away behind the agent's back
    res = node.add(p2, "c2", agentSocket=str(agent_socket))
    assert res["ips"][0]["address"] == "10.244.1.3/24"  # type: ignore[index]
    assert link_json(node.node, "cni0") is not None
    netns.run(p2, ["ping", "-c1", "-W2", "10.244.1.1"])
    for pod, cid in ((p1, "c1"), (p2, "c2")):
        rc, _ = node.call("DEL", node.conf(agentSocket=str(agent_socket)), cid, pod)
        assert rc == 0
    assert node.store_ips() == []


def test_without_an_agent_the_plugin_does_it_itself(node: Node) -> None:
    (p1,) = node.pods("s1")
    res = node.add(p1, "c1", agentSocket=str(node.state / "nobody-listens.sock"))
    assert res["ips"][0]["address"] == "10.244.1.2/24"  # type: ignore[index]


# ---------------------------------------------------------------- what must be refused
@pytest.fixture
def hnode(tmp_path: Path) -> Iterator[Node]:
    """A node namespace named ``hcn-c-XXXX-…``."""
    n = Node(tmp_path, base="hcn-c")
    try:
        yield n
    finally:
        n.close()
    assert netns.list_names(n.prefix + "-") == []


def node_links(ns: str) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(netns.run(ns, ["ip", "-j", "link", "show"]).stdout))


def give_uplink(ns: str, address: str = "192.168.50.2/24") -> None:
    """An ``eth0`` with an address, as a node has (a veth whose peer stays in the same namespace)."""
    netns.run_batch(ns, ["link add eth0 type veth peer name eth0p", f"addr add {address} dev eth0",
                         "link set eth0 up", "link set eth0p up"])  # fmt: skip


def assert_refused_netns(reply: Reply, path: str) -> dict[str, object]:
    rc, err = reply
    assert rc == 1 and err is not None and err["code"] == errors.INVALID_ENVIRONMENT, err
    assert f"CNI_NETNS {path} is the node's own network namespace" == err["msg"], err
    return err


@pytest.mark.parametrize("how", ["run-netns", "proc-self"])
def test_the_nodes_own_netns_is_refused_and_its_links_stay(hnode: Node, how: str) -> None:
    """Before: DEL with CNI_NETNS = the node's namespace deleted its eth0 (or cni0) and returned 0."""
    node = hnode
    (pod,) = node.pods("pod")
    give_uplink(node.node)
    res = node.add(pod, "c1")  # cni0 and one pod's veth exist
    before = node_links(node.node)
    assert "eth0" in before and "cni0" in before
    own = f"/run/netns/{node.node}" if how == "run-netns" else "/proc/self/ns/net"  # the plugin's own
    for ifname in ("eth0", "cni0"):
        assert_refused_netns(node.call("DEL", node.conf(), "c1", netns_path=own, ifname=ifname), own)
    assert_refused_netns(node.call("ADD", node.conf(), "c2", netns_path=own), own)
    assert_refused_netns(node.call("CHECK", node.conf(prevResult=res), "c1", netns_path=own), own)
    assert node_links(node.node) == before
    assert node.store_ips() == ["10.244.1.2"]  # c1's address is still held, c2 got none
    assert "192.168.50.2" in netns.run(node.node, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert node.call("DEL", node.conf(), "c1", pod) == (0, None)  # the real pod's DEL still works


def test_via_the_agent_the_clients_netns_is_the_nodes_too(hnode: Node, tmp_path: Path) -> None:
    """The agent acts for a client exec'ed in another namespace: that one is the node's as the runtime
    sees it (and the agent's own stays refused). Before: the agent deleted the client's eth0."""
    node = hnode
    sock = node.state / "cni.sock"
    agent = netns.spawn(node.node, [sys.executable, "-m", "clew.agent.cni_server", str(sock)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == b"ready"
        (runtime_ns,) = node.pods("rt")
        give_uplink(runtime_ns)
        give_uplink(node.node, "192.168.51.2/24")
        conf = node.conf(agentSocket=str(sock))
        client_path, agent_path = f"/run/netns/{runtime_ns}", f"/run/netns/{node.node}"
        err = assert_refused_netns(node.call("DEL", conf, "c1", netns_path=client_path, caller=runtime_ns), client_path)
        assert "the namespace the runtime called the plugin from" in str(err["details"])
        err = assert_refused_netns(node.call("DEL", conf, "c1", netns_path=agent_path, caller=runtime_ns), agent_path)
        assert "the namespace the plugin runs in" in str(err["details"])
        assert_refused_netns(node.call("ADD", conf, "c1", netns_path=client_path, caller=runtime_ns), client_path)
        assert "eth0" in node_links(runtime_ns) and "eth0" in node_links(node.node)
        assert "veth" not in " ".join(node_links(node.node)) and node.store_ips() == []
        # a pod's own namespace is still fine through the same client and agent
        (pod,) = node.pods("pod")
        rc, res = node.call("ADD", conf, "c1", pod, caller=runtime_ns)
        assert rc == 0 and res is not None, res
        assert node.call("DEL", conf, "c1", pod, caller=runtime_ns) == (0, None)
    finally:
        agent.terminate()
        agent.wait(10)


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (["addr add 10.244.1.50/24 dev eth0"], "address 10.244.1.50/24 on eth0"),  # the node's LAN is the pod subnet
        (["route add 10.244.1.128/25 via 192.168.50.1 dev eth0"], "route 10.244.1.128/25 via 192.168.50.1 dev eth0"),
    ],
    ids=["address", "route"],
)
def test_a_pod_subnet_overlapping_the_node_is_refused(hnode: Node, setup: list[str], says: str) -> None:
    """Before: the bridge took 10.244.1.1 (the node's LAN gateway, here) and ADD succeeded."""
    node = hnode
    (pod,) = node.pods("pod")
    give_uplink(node.node)
    netns.run_batch(node.node, setup)
    rc, err = node.call("ADD", node.conf(), "c1", pod)
    assert rc == 1 and err is not None and err["code"] == errors.INVALID_CONFIG, err
    assert err["msg"] == "pod subnet overlaps the node's network" and says in str(err["details"]), err
    assert "cni0" not in node_links(node.node) and node.store_ips() == []
    assert link_json(pod, "eth0") is None


def test_flannels_own_address_and_a_cluster_route_are_no_overlap(hnode: Node) -> None:
    """flannel.1 holds the subnet's network address as a /32; a route to the whole cluster is larger."""
    node = hnode
    (pod,) = node.pods("pod")
    give_uplink(node.node)
    netns.run_batch(node.node, ["route add 10.244.0.0/16 via 192.168.50.1 dev eth0",
                                "link add flannel.1 type bridge", "addr add 10.244.1.0/32 dev flannel.1"])  # fmt: skip
    node.add(pod, "c1")
    poll_until(lambda: pings(pod, "10.244.1.1"), 5, what=f"ping 10.244.1.1 from {pod}")


def test_an_ifname_that_is_an_ip_keyword_works(hnode: Node) -> None:
    """Kernel-legal names ``ip`` reads as keywords (``up``, ``help``): every line names them after ``dev``."""
    node = hnode
    (pod,) = node.pods("pod")
    for ifname in ("up", "help"):
        rc, res = node.call("ADD", node.conf(), f"c-{ifname}", pod, ifname=ifname)
        assert rc == 0 and res is not None, res
        assert link_json(pod, ifname) is not None
        assert node.call("CHECK", node.conf(prevResult=res), f"c-{ifname}", pod, ifname=ifname) == (0, None)
        assert node.call("DEL", node.conf(), f"c-{ifname}", pod, ifname=ifname) == (0, None)
        assert link_json(pod, ifname) is None


def test_an_ifname_ip_batch_cannot_carry_is_refused(hnode: Node) -> None:
    node = hnode
    (pod,) = node.pods("pod")
    rc, err = node.call("ADD", node.conf(), "c1", pod, ifname="e#0")
    assert rc == 1 and err is not None and err["code"] == errors.INVALID_ENVIRONMENT and "CNI_IFNAME" in str(err["msg"])
    assert node.store_ips() == [] and node_links(pod) == ["lo"]
