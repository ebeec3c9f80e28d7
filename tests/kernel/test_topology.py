"""The kernel-test harness itself: wiring, routing, REJECT/DROP as seen by the prober, teardown."""

from __future__ import annotations

import os
import signal

import pytest
from topology import EXT_IP, Topology, TopologyFactory, unique_prefix

from clew.kernel import netns

pytestmark = pytest.mark.kernel

PORT = 8080


def _filter(rule: str) -> str:
    """A filter table with a KUBE-TEST chain holding ``rule``s (one per line)."""
    body = "".join(f"-A KUBE-TEST {r}\n" for r in rule.splitlines())
    return f"*filter\n:KUBE-TEST - [0:0]\n{body}COMMIT\n"


JUMP = [("filter", "FORWARD", ["-m", "comment", "--comment", "clew test", "-j", "KUBE-TEST"])]


@pytest.fixture
def topo(topology_factory: TopologyFactory) -> Topology:
    t = topology_factory({"node": ["a", "b"], "node2": ["c"]})
    for pod in ("a", "b", "c"):
        t.start_echo(pod, [PORT])
    return t


def test_pod_to_pod_across_nodes_is_not_natted(topo: Topology) -> None:
    for proto in ("tcp", "udp"):
        result = topo.probe("a", topo.pod_ip("c"), PORT, proto=proto, count=3)
        assert result.all_ok, result
        assert result.summary.by_server == {"c": 3}
        assert result.seen_ips == {topo.pod_ip("a")}
        assert len({a.seen for a in result.attempts}) == 3  # a new source port per attempt
    back = topo.probe("c", topo.pod_ip("b"), PORT)
    assert back.servers == {"b"} and back.seen_ips == {topo.pod_ip("c")}


def test_src_binds_the_client_address(topo: Topology) -> None:
    result = topo.probe("node", topo.pod_ip("c"), PORT, src="10.244.1.1")
    assert result.seen_ips == {"10.244.1.1"}


def test_ext_reaches_pods_only_once_routed(topo: Topology) -> None:
    before = topo.probe("ext", topo.pod_ip("a"), PORT, timeout=0.3)
    assert before.attempts[0].error == "unreachable"
    topo.add_route("ext", "10.244.0.0/16", via=topo.node_ip("node"))
    for pod in ("a", "c"):  # c: ext → node → node2 → c, the reply straight back from node2
        after = topo.probe("ext", topo.pod_ip(pod), PORT)
        assert after.servers == {pod} and after.seen_ips == {EXT_IP}, after


def test_reject_is_refused_fast(topo: Topology) -> None:
    ip = topo.pod_ip("a")
    payload = _filter(f"-d {ip}/32 -p tcp --dport {PORT} -j REJECT\n-d {ip}/32 -p udp -j REJECT")
    topo.load_rules("node", payload, jumps=JUMP)
    for proto in ("tcp", "udp"):
        result = topo.probe("c", ip, PORT, proto=proto, count=2, timeout=2.0)
        assert result.summary.errors == {"refused": 2}, result
        assert all(a.elapsed_s < 0.5 for a in result.attempts), result
    # br_netfilter is on: traffic bridged on cni0 (b → a) also crosses the node's FORWARD chain
    assert topo.probe("b", ip, PORT).summary.errors == {"refused": 1}
    assert topo.probe("b", topo.pod_ip("c"), PORT).servers == {"c"}


def test_drop_times_out(topo: Topology) -> None:
    ip = topo.pod_ip("a")
    topo.load_rules("node", _filter(f"-d {ip}/32 -j DROP"), jumps=JUMP)
    for proto in ("tcp", "udp"):
        result = topo.probe("c", ip, PORT, proto=proto, timeout=0.3)
        assert result.summary.errors == {"timeout": 1}, result
        assert 0.3 <= result.attempts[0].elapsed_s < 1.0
    assert topo.probe("c", topo.pod_ip("b"), PORT).servers == {"b"}


def test_hairpin_dnat_back_to_the_same_pod(topo: Topology) -> None:
    a = topo.pod_ip("a")
    payload = (
        "*nat\n:KUBE-TEST-SVC - [0:0]\n"
        f"-A KUBE-TEST-SVC -s {a}/32 -j MARK --set-xmark 0x4000/0x4000\n"
        f"-A KUBE-TEST-SVC -p tcp -j DNAT --to-destination {a}:{PORT}\n"
        "-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE\n"
        "COMMIT\n"
    )
    match = ["-d", "10.96.0.10/32", "-p", "tcp", "--dport", "80"]
    jump = [("nat", "PREROUTING", [*match, "-j", "KUBE-TEST-SVC"])]
    topo.load_rules("node", payload, jumps=jump)
    result = topo.probe("a", "10.96.0.10", 80, count=2)
    assert result.summary.by_server == {"a": 2}, result
    assert result.seen_ips == {"10.244.1.1"}  # masqueraded to cni0's address


def test_close_removes_namespaces_and_processes() -> None:
    prefix = unique_prefix()
    with Topology(prefix, {"node": ["a"], "node2": ["c"]}) as t:
        server = t.start_echo("a", [PORT])
        stray = netns.spawn(t.ns("c"), ["sleep", "60"])  # not started by the topology
        assert len(netns.list_names(prefix + "-")) == 6
    assert netns.list_names(prefix + "-") == []
    assert server.returncode == 0  # SIGTERM: a clean exit
    assert stray.wait(timeout=5) == -signal.SIGTERM
    for pid in (server.pid, stray.pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    t.close()  # twice is fine


def test_close_after_a_failure_inside_the_block() -> None:
    prefix = unique_prefix()
    with pytest.raises(RuntimeError, match="boom"), Topology(prefix, {"node": ["a"]}) as t:
        t.start_echo("a", [PORT])
        raise RuntimeError("boom")
    assert netns.list_names(prefix + "-") == []


def test_bad_pod_names_are_refused_before_anything_is_built() -> None:
    prefix = unique_prefix()
    with pytest.raises(ValueError, match="bad pod name"):
        Topology(prefix, {"node": ["node2"]})
    with pytest.raises(ValueError, match="unknown nodes"):
        Topology(prefix, {"node3": ["x"]})
    assert netns.list_names(prefix + "-") == []
