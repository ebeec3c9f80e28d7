"""Real packets through clew's rendered iptables rules, loaded by the real applier.

One two-node topology for the whole module (building it costs more than every probe here):
node and node2 each run clew's rules, rendered for themselves from the same Kubernetes objects
and loaded with ``clew.proxy.iptables.apply.full_sync``; echo servers in pods a and b (node)
and c (node2); ``cl`` (node) is a client that is no endpoint. Tests share a Service only where
probing it leaves no state behind (ClientIP affinity has a Service of its own), and the one test
that changes a route puts it back.

Routing (the topology has no default routes): a pod reaches a ClusterIP through its gateway
(the node routes after DNAT), so it needs nothing; the node needs some route for the Service
range before the packet ever reaches nat OUTPUT, and an un-DNATed packet (a Service without
endpoints, a LoadBalancer IP whose source is refused) must be *forwarded* to meet kube-proxy's
filter rules in FORWARD, which also takes a route. A real node has a default route to its
gateway; here node gets ``default via ext`` (ext does not forward, so nothing comes back).
With only ``10.96.0.0/12 dev cni0`` instead, the node reaches ClusterIPs too (source 10.244.1.1,
cni0's address, which counts as pod traffic and is not masqueraded); both are checked. With no
route at all, node → ClusterIP fails at once (ENETUNREACH, before any netfilter hook) and the
un-DNATed packets above get an ICMP net unreachable from routing instead of meeting REJECT/DROP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from topology import EXT_IP, Topology, unique_prefix

from clew.kernel import iptables
from clew.lab.echo import Attempt
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.iptables.apply import full_sync
from clew.proxy.iptables.render import Rendered, render
from clew.proxy.policy import decide

pytestmark = pytest.mark.kernel

PODS = {"node": ["a", "b", "cl"], "node2": ["c"]}
ENDPOINT_PODS = ("a", "b", "c")
PORT = 8080  # every echo server's port, so every endpoint's port
NS = "clew"
EXT_IP2 = "192.168.50.101"  # a second client address on ext, outside loadBalancerSourceRanges
CNI0 = {"node": "10.244.1.1", "node2": "10.244.2.1"}
NODE_IP = {"node": "192.168.50.2", "node2": "192.168.50.3"}

# ClusterIPs; each Service's spec and endpoints are in `objects`.
WEB = "10.96.0.10"  # 3 endpoints over both nodes, TCP and UDP
NODEPORT = "10.96.0.11"  # NodePort 30080, eTP Cluster, endpoints a (node) and c (node2)
LOCAL = "10.96.0.12"  # NodePort 30081, eTP Local, endpoints b (node) and c (node2)
LOCAL_NODE = "10.96.0.13"  # NodePort 30082, eTP Local, endpoint b (node) only
PUBLIC = "10.96.0.14"  # LoadBalancer: externalIP 203.0.113.10, LB IP 198.51.100.10
FIREWALLED = "10.96.0.15"  # LoadBalancer 198.51.100.20, NodePort 30084, sourceRanges EXT_IP/32
STICKY = "10.96.0.16"  # ClientIP affinity, 3 endpoints
EMPTY = "10.96.0.17"  # no endpoints, TCP and UDP
HAIRPIN = "10.96.0.18"  # endpoint a only
EXTERNAL_IP, LB_IP, FW_LB_IP = "203.0.113.10", "198.51.100.10", "198.51.100.20"


# ---------------------------------------------------------------------------- objects


def _port(name: str, proto: str, node_port: int = 0) -> dict[str, Any]:
    port: dict[str, Any] = {"name": name, "protocol": proto, "port": 80, "targetPort": PORT}
    if node_port:
        port["nodePort"] = node_port
    return port


def _service(name: str, cluster_ip: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"clusterIP": cluster_ip, "ports": ports, **spec},
        "status": status,
    }


def _slice(service: str, pods: Sequence[str], topo: Topology, protos: Sequence[str] = ("TCP",)) -> dict[str, Any]:
    names = {"TCP": "tcp", "UDP": "udp"}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "namespace": NS, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [topo.pod_ip(p)], "nodeName": topo.pod_node(p), "conditions": {"ready": True}} for p in pods
        ],
        "ports": [{"name": names[p], "protocol": p, "port": PORT} for p in protos],
    }


def _lb_status(ip: str) -> dict[str, Any]:
    return {"loadBalancer": {"ingress": [{"ip": ip}]}}


def objects(topo: Topology) -> list[dict[str, Any]]:
    tcp = [_port("tcp", "TCP")]
    both = [_port("tcp", "TCP"), _port("udp", "UDP")]
    return [
        _service("web", WEB, both),
        _slice("web", ["a", "b", "c"], topo, ("TCP", "UDP")),
        _service("nodeport", NODEPORT, [_port("tcp", "TCP", 30080)], type="NodePort"),
        _slice("nodeport", ["a", "c"], topo),
        _service("local", LOCAL, [_port("tcp", "TCP", 30081)], type="NodePort", externalTrafficPolicy="Local"),
        _slice("local", ["b", "c"], topo),
        _service(
            "local-node", LOCAL_NODE, [_port("tcp", "TCP", 30082)], type="NodePort", externalTrafficPolicy="Local"
        ),
        _slice("local-node", ["b"], topo),
        _service(
            "public",
            PUBLIC,
            [_port("tcp", "TCP", 30083)],
            type="LoadBalancer",
            externalIPs=[EXTERNAL_IP],
            status=_lb_status(LB_IP),
        ),
        _slice("public", ["a", "c"], topo),
        _service(
            "firewalled",
            FIREWALLED,
            [_port("tcp", "TCP", 30084)],
            type="LoadBalancer",
            loadBalancerSourceRanges=[f"{EXT_IP}/32"],
            status=_lb_status(FW_LB_IP),
        ),
        _slice("firewalled", ["a", "c"], topo),
        _service("sticky", STICKY, tcp, sessionAffinity="ClientIP"),
        _slice("sticky", ["a", "b", "c"], topo),
        _service("empty", EMPTY, both),
        _service("hairpin", HAIRPIN, tcp),
        _slice("hairpin", ["a"], topo),
    ]


def node_config(node: str) -> ProxyConfig:
    return ProxyConfig(
        node_name=node,
        node_ips=(NODE_IP[node],),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
    )


def render_for(topo: Topology, node: str) -> Rendered:
    snapshot = build_snapshot(objects(topo))
    assert snapshot.rejections == (), snapshot.rejections
    config = node_config(node)
    return render(decide(snapshot, config), config)


# ---------------------------------------------------------------------------- fixture


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    """The shared topology with clew's rules on both nodes; always torn down."""
    with Topology(unique_prefix(), PODS) as t:
        for pod in ENDPOINT_PODS:
            t.start_echo(pod, [PORT])
        t.run("ext", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])  # node's "gateway" sends nothing back
        t.run("ext", ["ip", "addr", "add", f"{EXT_IP2}/24", "dev", "eth0"])
        t.add_route("node", "default", via=EXT_IP)
        for node in ("node", "node2"):
            full_sync(t.ns(node), render_for(t, node))
        yield t


# ---------------------------------------------------------------------------- helpers


def chi_square_uniform(counts: Sequence[int]) -> float:
    """Pearson's statistic of ``counts`` against equal expected counts."""
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def rule_packets(topo: Topology, node: str, table: str, chain: str, needle: str) -> int:
    """Packets counted by the rule of ``chain`` whose text contains ``needle`` (exactly one)."""
    out = iptables.iptables(topo.ns(node), ["-t", table, "-S", chain, "-v"]).stdout
    found = [line for line in out.splitlines() if needle in line]
    assert len(found) == 1, out
    match = re.search(r" -c (\d+) \d+", found[0])
    assert match is not None, found[0]
    return int(match.group(1))


def seen_ip(attempt: Attempt) -> str | None:
    """The client address the echo server saw in one attempt."""
    return attempt.seen.rsplit(":", 1)[0] if attempt.seen else None


def normalised_save(topo: Topology, node: str) -> list[str]:
    """``iptables-save`` without comment lines and counters."""
    text = iptables.save(topo.ns(node))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in lines]


# ---------------------------------------------------------------------------- ClusterIP

# 900 connections, chi-square against 1/3 each, 2 degrees of freedom. Under the null the
# statistic is ~chi2(2), whose tail is exactly exp(-x/2): P(X > 18.42) = 1.0e-4, so a correct
# split fails fewer than 1 run in 10^4. A naive per-rule 1/3 (1/3, 2/9, 4/9) has noncentrality
# 900 * 3 * 2 * (1/9)^2 = 66.7; summing the exact multinomial over every outcome, it passes with
# probability 2.1e-5 at N=900 (0.29 at N=300, 0.005 at N=600; hence 900). Connections are cheap
# here (~1 ms each through the namespaces).
SPLIT_N = 900
CHI2_CRITICAL_2DOF_1E4 = 18.42


def test_clusterip_split_follows_kube_proxy_probabilities(topo: Topology) -> None:
    result = topo.probe("cl", WEB, 80, count=SPLIT_N)
    assert result.all_ok, result.summary
    counts = result.summary.by_server
    assert set(counts) == set(ENDPOINT_PODS), counts
    stat = chi_square_uniform([counts[p] for p in ENDPOINT_PODS])
    assert stat < CHI2_CRITICAL_2DOF_1E4, f"split {counts} is not 1/3 each (chi2 {stat:.1f})"
    assert result.seen_ips == {topo.pod_ip("cl")}  # pod → ClusterIP keeps the pod's address


def test_clusterip_from_a_pod_on_the_other_node(topo: Topology) -> None:
    result = topo.probe("c", WEB, 80, count=40)  # node2's own rules, c among the endpoints
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    for attempt in result.attempts:  # c landing on itself is hairpin-masqueraded to node2's cni0
        assert seen_ip(attempt) == (CNI0["node2"] if attempt.server == "c" else topo.pod_ip("c")), attempt


def test_clusterip_from_the_node_itself(topo: Topology) -> None:
    # With the default route (via eth0, source 192.168.50.2, not pod traffic): masqueraded, so
    # each endpoint sees the node's address on the way out (cni0's for a and b, eth0's for c).
    result = topo.probe("node", WEB, 80, count=40)
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    for attempt in result.attempts:
        assert seen_ip(attempt) == (NODE_IP["node"] if attempt.server == "c" else CNI0["node"]), attempt


def test_clusterip_from_the_node_via_cni0_route(topo: Topology) -> None:
    topo.add_route("node", "10.96.0.0/12", dev="cni0")
    try:
        result = topo.probe("node", WEB, 80, count=40)
    finally:
        topo.run("node", ["ip", "route", "del", "10.96.0.0/12"])
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    assert result.seen_ips == {CNI0["node"]}  # source cni0's address, a pod-range source: kept


def test_udp_clusterip(topo: Topology) -> None:
    result = topo.probe("cl", WEB, 80, proto="udp", count=40)
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    assert result.seen_ips == {topo.pod_ip("cl")}


# ---------------------------------------------------------------------------- NodePort


def test_nodeport_from_outside_is_masqueraded(topo: Topology) -> None:
    result = topo.probe("ext", NODE_IP["node"], 30080, count=20)
    assert result.all_ok and set(result.summary.by_server) == {"a", "c"}, result.summary
    for attempt in result.attempts:
        # c (node2) sees the node's underlay address; a sees node's cni0 address; never ext's
        assert seen_ip(attempt) == (NODE_IP["node"] if attempt.server == "c" else CNI0["node"]), attempt


def test_external_traffic_policy_local_keeps_the_client_address(topo: Topology) -> None:
    on_node = topo.probe("ext", NODE_IP["node"], 30081, count=20)
    assert on_node.summary.by_server == {"b": 20}, on_node.summary  # never c on node2
    assert on_node.seen_ips == {EXT_IP}
    on_node2 = topo.probe("ext", NODE_IP["node2"], 30081, count=20)
    assert on_node2.summary.by_server == {"c": 20}, on_node2.summary
    assert on_node2.seen_ips == {EXT_IP}


def test_external_traffic_policy_local_without_local_endpoint_drops(topo: Topology) -> None:
    assert topo.probe("ext", NODE_IP["node"], 30082, count=3).summary.by_server == {"b": 3}
    result = topo.probe("ext", NODE_IP["node2"], 30082, count=2, timeout=0.4)
    assert result.summary.errors == {"timeout": 2}, result  # DROP, not REJECT: no refusal
    assert all(a.elapsed_s >= 0.4 for a in result.attempts), result


def test_external_traffic_policy_local_short_circuits_pod_traffic(topo: Topology) -> None:
    # A pod on node2 using node2's NodePort goes to the cluster-wide endpoints, unmasqueraded
    # ("pod traffic for … external destinations"), although node2 has no local endpoint.
    result = topo.probe("c", NODE_IP["node2"], 30082, count=3)
    assert result.summary.by_server == {"b": 3}, result
    assert result.seen_ips == {topo.pod_ip("c")}


def test_localhost_nodeport(topo: Topology) -> None:
    # route_localnet (set by full_sync) lets 127.0.0.1:NodePort be DNATed out of the node;
    # the source is masqueraded to the outgoing interface's address.
    result = topo.probe("node", "127.0.0.1", 30080, count=20)
    assert result.all_ok and set(result.summary.by_server) == {"a", "c"}, result.summary
    for attempt in result.attempts:
        assert seen_ip(attempt) == (NODE_IP["node"] if attempt.server == "c" else CNI0["node"]), attempt


# ---------------------------------------------------------------------------- external / LB IPs


@pytest.mark.parametrize("ip", [EXTERNAL_IP, LB_IP], ids=["externalIP", "loadBalancerIP"])
def test_external_and_load_balancer_ips(topo: Topology, ip: str) -> None:
    result = topo.probe("ext", ip, 80, count=20)
    assert result.all_ok and set(result.summary.by_server) == {"a", "c"}, result.summary
    assert EXT_IP not in result.seen_ips  # eTP Cluster: masqueraded


def test_load_balancer_source_ranges(topo: Topology) -> None:
    drop = f"-d {FW_LB_IP}/32"
    before = rule_packets(topo, "node", "filter", "KUBE-PROXY-FIREWALL", drop)
    admitted = topo.probe("ext", FW_LB_IP, 80, count=5, src=EXT_IP)
    assert admitted.all_ok and admitted.servers <= {"a", "c"}, admitted.summary
    refused = topo.probe("ext", FW_LB_IP, 80, count=2, timeout=0.4, src=EXT_IP2)
    assert refused.summary.errors == {"timeout": 2}, refused
    # dropped by KUBE-PROXY-FIREWALL (at least one SYN per attempt), not lost on the way
    assert rule_packets(topo, "node", "filter", "KUBE-PROXY-FIREWALL", drop) >= before + 2
    # NodePorts are not subject to loadBalancerSourceRanges
    nodeport = topo.probe("ext", NODE_IP["node"], 30084, count=3, src=EXT_IP2)
    assert nodeport.all_ok, nodeport.summary


# ---------------------------------------------------------------------------- affinity


def test_client_ip_affinity_sticks(topo: Topology) -> None:
    sticky = topo.probe("cl", STICKY, 80, count=40)
    assert sticky.all_ok and len(sticky.servers) == 1, sticky.summary
    again = topo.probe("cl", STICKY, 80, count=10)
    assert again.servers == sticky.servers, again.summary
    # the same client, a Service without affinity: spread (all alike by chance: 3 * 3^-40)
    loose = topo.probe("cl", WEB, 80, count=40)
    assert loose.all_ok and len(loose.servers) > 1, loose.summary


# ---------------------------------------------------------------------------- no endpoints


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_service_without_endpoints_is_refused_at_once(topo: Topology, proto: str) -> None:
    # Few attempts: the kernel rate-limits ICMP errors per destination (a burst of 6, then 1/s).
    result = topo.probe("cl", EMPTY, 80, proto=proto, count=2, timeout=2.0)
    assert result.summary.errors == {"refused": 2}, result
    assert all(a.elapsed_s < 0.5 for a in result.attempts), result


# ---------------------------------------------------------------------------- hairpin


def test_hairpin_is_masqueraded_other_pods_are_not(topo: Topology) -> None:
    itself = topo.probe("a", HAIRPIN, 80, count=3)
    assert itself.summary.by_server == {"a": 3}, itself.summary
    assert itself.seen_ips == {CNI0["node"]}  # not its own address: the reply would skip the NAT
    other = topo.probe("cl", HAIRPIN, 80, count=3)
    assert other.summary.by_server == {"a": 3}, other.summary
    assert other.seen_ips == {topo.pod_ip("cl")}


# ---------------------------------------------------------------------------- idempotence


@pytest.mark.parametrize("node", ["node", "node2"])
def test_full_sync_twice_changes_nothing(topo: Topology, node: str) -> None:
    before = normalised_save(topo, node)
    full_sync(topo.ns(node), render_for(topo, node))  # the fixture ran the first one
    after = normalised_save(topo, node)
    assert after == before
    rules = [line for line in after if line.startswith("-A ")]
    assert len(rules) == len(set(rules)), "a rule is there twice"
    assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in rules
