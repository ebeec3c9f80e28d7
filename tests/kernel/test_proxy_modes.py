"""Real packets through clew's Service proxy rules, in iptables mode and in nftables mode.

Every test runs once per mode (the module's ``mode`` fixture): one two-node topology per mode
(building it costs more than every probe here), where node and node2 each run clew's rules,
rendered for themselves from the same Kubernetes objects by the same policy module and loaded
the way the mode does (``proxy_modes.load``: iptables mode through the real applier,
``full_sync``; nftables mode as the renderer's full script through ``nft -f``). Echo servers in
pods a and b (node) and c (node2); ``cl`` (node) is a client that is no endpoint. Where the
modes differ by design, the test says so and holds an expectation per mode.

Tests share a Service only where probing it leaves no state behind (ClientIP affinity has
Services of its own), and a test that changes a route, a sysctl or a node's rules puts them
back (``reloaded``).

Routing (the topology has no default routes): a pod reaches a ClusterIP through its gateway
(the node routes after DNAT), so it needs nothing; the node needs some route for the Service
range before the packet ever reaches nat OUTPUT, and an un-DNATed packet (a Service without
endpoints, a LoadBalancer IP whose source is refused) must be *forwarded* to meet the filter
rules, which also takes a route. A real node has a default route to its gateway; here node gets
``default via ext`` (ext does not forward, so nothing comes back). With only ``10.96.0.0/12
dev cni0`` instead, the node reaches ClusterIPs too (source 10.244.1.1, cni0's address, which
counts as pod traffic and is not masqueraded); both are checked. ext routes the Service range
via node (as a router in front of the cluster would), so outside clients reach ClusterIPs too.

node2 runs with ``nodePortAddresses: [192.168.50.0/24]`` (its NodePorts only on its underlay
address); node with none (every local address).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from poll import poll_until
from proxy_modes import MODES, conntrack_entries, counting, load, nft_ruleset, policies_for, with_mode
from topology import EXT_IP, Topology, unique_prefix

from clew.kernel import iptables
from clew.lab.echo import Attempt
from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig

pytestmark = pytest.mark.kernel

PODS = {"node": ["a", "b", "cl"], "node2": ["c"]}
ENDPOINT_PODS = ("a", "b", "c")
PORT = 8080  # every echo server's port, so every endpoint's port
NS = "clew"
EXT_IP2 = "192.168.50.101"  # a second client address on ext, outside loadBalancerSourceRanges
EXT_CLUSTER_IP = "10.244.200.5"  # an address of ext inside the cluster CIDR but no node's pod CIDR
AFFINITY_CLIENTS = tuple(f"192.168.50.{110 + i}" for i in range(12))  # more addresses of ext
CNI0 = {"node": "10.244.1.1", "node2": "10.244.2.1"}
NODE_IP = {"node": "192.168.50.2", "node2": "192.168.50.3"}
SERVICE_RANGE = "10.96.0.0/12"
ZONE = {"node": "zone-a", "node2": "zone-b"}

# ClusterIPs; each Service's spec and endpoints are in `objects`.
WEB = "10.96.0.10"  # 3 endpoints over both nodes, TCP and UDP
NODEPORT = "10.96.0.11"  # NodePort 30080, eTP Cluster, endpoints a (node) and c (node2)
LOCAL = "10.96.0.12"  # NodePort 30081, eTP Local, endpoints b (node) and c (node2)
LOCAL_NODE = "10.96.0.13"  # NodePort 30082, eTP Local, endpoint b (node) only
PUBLIC = "10.96.0.14"  # LoadBalancer: externalIP 203.0.113.10, LB IP 198.51.100.10
FIREWALLED = "10.96.0.15"  # LoadBalancer 198.51.100.20, NodePort 30084, sourceRanges EXT_IP/32
STICKY = "10.96.0.16"  # ClientIP affinity, 3 endpoints
EMPTY = "10.96.0.17"  # no endpoints, TCP and UDP; NodePort 30086, externalIP 203.0.113.20
HAIRPIN = "10.96.0.18"  # endpoint a only
ITP_LOCAL = "10.96.0.19"  # internalTrafficPolicy Local, endpoints b (node) and c (node2)
ITP_REMOTE = "10.96.0.20"  # internalTrafficPolicy Local, endpoint c (node2) only
DRAINING = "10.96.0.21"  # no ready endpoint: a serving+terminating, b terminating, c not ready
MIXED = "10.96.0.22"  # c ready, a serving+terminating: the terminating one is only a fallback
ZONAL = "10.96.0.23"  # zone hints: a, b for zone-a (node), c for zone-b (node2)
NODE_HINTED = "10.96.0.24"  # node hints: a for node, c for node2
STICKY_SHORT = "10.96.0.25"  # ClientIP affinity with a 2 s timeout, 3 endpoints
DNS = "10.96.0.26"  # UDP NodePort 30090, endpoints a and b: the conntrack cleanup test changes them
DNS_NODE_PORT = 30090
HEALTH = "10.96.0.27"  # LoadBalancer 198.51.100.50, eTP Local, healthCheckNodePort 32000, endpoint b
HC_PORT = 32000
EXTERNAL_IP, LB_IP, FW_LB_IP, EMPTY_EXTERNAL_IP = "203.0.113.10", "198.51.100.10", "198.51.100.20", "203.0.113.20"
SHORT_TIMEOUT_S = 2


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


def _ep(
    topo: Topology,
    pod: str,
    *,
    ready: bool = True,
    serving: bool | None = None,
    terminating: bool = False,
    zones: Sequence[str] = (),
    nodes: Sequence[str] = (),
) -> dict[str, Any]:
    conditions = {"ready": ready, "serving": ready if serving is None else serving, "terminating": terminating}
    ep: dict[str, Any] = {"addresses": [topo.pod_ip(pod)], "nodeName": topo.pod_node(pod), "conditions": conditions}
    hints: dict[str, Any] = {}
    if zones:
        hints["forZones"] = [{"name": z} for z in zones]
    if nodes:
        hints["forNodes"] = [{"name": n} for n in nodes]
    if hints:
        ep["hints"] = hints
    return ep


def _slice(
    service: str, eps: Sequence[str | dict[str, Any]], topo: Topology, protos: Sequence[str] = ("TCP",)
) -> dict[str, Any]:
    names = {"TCP": "tcp", "UDP": "udp"}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "namespace": NS, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [_ep(topo, e) if isinstance(e, str) else e for e in eps],
        "ports": [{"name": names[p], "protocol": p, "port": PORT} for p in protos],
    }


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": ZONE[name]}},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP[name]}]},
    }


def _lb_status(ip: str) -> dict[str, Any]:
    return {"loadBalancer": {"ingress": [{"ip": ip}]}}


def objects(topo: Topology, dns_pods: Sequence[str] = ("a", "b")) -> list[dict[str, Any]]:
    tcp = [_port("tcp", "TCP")]
    both = [_port("tcp", "TCP"), _port("udp", "UDP")]
    e = topo
    return [
        _node("node"),
        _node("node2"),
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
        _service(
            "sticky-short",
            STICKY_SHORT,
            tcp,
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": SHORT_TIMEOUT_S}},
        ),
        _slice("sticky-short", ["a", "b", "c"], topo),
        _service(
            "empty",
            EMPTY,
            [_port("tcp", "TCP", 30086), _port("udp", "UDP", 30086)],
            type="NodePort",
            externalIPs=[EMPTY_EXTERNAL_IP],
        ),
        _service("hairpin", HAIRPIN, tcp),
        _slice("hairpin", ["a"], topo),
        _service("itp-local", ITP_LOCAL, tcp, internalTrafficPolicy="Local"),
        _slice("itp-local", ["b", "c"], topo),
        _service("itp-remote", ITP_REMOTE, tcp, internalTrafficPolicy="Local"),
        _slice("itp-remote", ["c"], topo),
        _service("draining", DRAINING, tcp),
        _slice(
            "draining",
            [
                _ep(e, "a", ready=False, serving=True, terminating=True),
                _ep(e, "b", ready=False, serving=False, terminating=True),
                _ep(e, "c", ready=False, serving=False),
            ],
            topo,
        ),
        _service("mixed", MIXED, tcp),
        _slice("mixed", [_ep(e, "a", ready=False, serving=True, terminating=True), "c"], topo),
        _service("zonal", ZONAL, tcp),
        _slice(
            "zonal",
            [_ep(e, "a", zones=["zone-a"]), _ep(e, "b", zones=["zone-a"]), _ep(e, "c", zones=["zone-b"])],
            topo,
        ),
        _service("node-hinted", NODE_HINTED, tcp),
        _slice("node-hinted", [_ep(e, "a", nodes=["node"]), _ep(e, "c", nodes=["node2"])], topo),
        _service(
            "health",
            HEALTH,
            [_port("tcp", "TCP", 30089)],
            type="LoadBalancer",
            externalTrafficPolicy="Local",
            healthCheckNodePort=HC_PORT,
            status=_lb_status("198.51.100.50"),
        ),
        _slice("health", ["b"], topo),
        _service("dns", DNS, [_port("udp", "UDP", DNS_NODE_PORT)], type="NodePort"),
        _slice("dns", list(dns_pods), topo, ("UDP",)),
    ]


def node_config(node: str, mode: str) -> ProxyConfig:
    base = ProxyConfig(
        node_name=node,
        node_ips=(NODE_IP[node],),
        detect_local=DetectLocal.CLUSTER_CIDR,
        cluster_cidrs=("10.244.0.0/16",),
        nodeport_addresses=("192.168.50.0/24",) if node == "node2" else (),
    )
    return with_mode(base, mode)


# ---------------------------------------------------------------------------- fixture


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def topo(mode: str) -> Iterator[Topology]:
    """The shared topology with clew's rules on both nodes in ``mode``; always torn down."""
    with Topology(unique_prefix("pt"), PODS) as t:
        for pod in ENDPOINT_PODS:
            t.start_echo(pod, [PORT])
        t.run("ext", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])  # node's "gateway" sends nothing back
        for ip in (EXT_IP2, *AFFINITY_CLIENTS):
            t.run("ext", ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
        t.run("ext", ["ip", "addr", "add", f"{EXT_CLUSTER_IP}/32", "dev", "eth0"])
        t.add_route("ext", SERVICE_RANGE, via=NODE_IP["node"])
        t.add_route("node", f"{EXT_CLUSTER_IP}/32", via=EXT_IP)
        t.add_route("node", "default", via=EXT_IP)
        for node in ("node", "node2"):
            load(t, node, objects(t), node_config(node, mode))
        yield t


@contextmanager
def reloaded(
    topo: Topology, mode: str, node: str, objs: list[dict[str, Any]] | None = None, **changes: Any
) -> Iterator[None]:
    """``node`` runs the module's objects (or ``objs``) with its configuration changed by
    ``changes``; its usual rules are back afterwards."""
    load(topo, node, objs if objs is not None else objects(topo), replace(node_config(node, mode), **changes))
    try:
        yield
    finally:
        load(topo, node, objects(topo), node_config(node, mode))


# ---------------------------------------------------------------------------- helpers


def chi_square_uniform(counts: Sequence[int]) -> float:
    """Pearson's statistic of ``counts`` against equal expected counts."""
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def seen_ip(attempt: Attempt) -> str | None:
    """The client address the echo server saw in one attempt."""
    return attempt.seen.rsplit(":", 1)[0] if attempt.seen else None


def normalised_save(topo: Topology, node: str) -> list[str]:
    """``iptables-save`` without comment lines and counters."""
    text = iptables.save(topo.ns(node))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in lines]


def sysctl(topo: Topology, who: str, key: str) -> str:
    return topo.run(who, ["sysctl", "-n", key]).stdout.strip()


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
    topo.add_route("node", SERVICE_RANGE, dev="cni0")
    try:
        result = topo.probe("node", WEB, 80, count=40)
    finally:
        topo.run("node", ["ip", "route", "del", SERVICE_RANGE])
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    assert result.seen_ips == {CNI0["node"]}  # source cni0's address, a pod-range source: kept


def test_clusterip_from_outside_is_masqueraded(topo: Topology) -> None:
    result = topo.probe("ext", WEB, 80, count=40)  # all three seen: fails by chance 3 * (2/3)^40 ≈ 2e-7
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    for attempt in result.attempts:  # not pod traffic (ClusterCIDR detection): masqueraded
        assert seen_ip(attempt) == (NODE_IP["node"] if attempt.server == "c" else CNI0["node"]), attempt


def test_unused_port_of_a_cluster_ip_is_not_rejected(topo: Topology) -> None:
    # Neither mode rejects a port the Service does not have (iptables mode cannot; clew's
    # nftables mode leaves out kube-proxy's nftables `cluster-ips-check` on purpose, to keep
    # iptables mode's behaviour): the packet is routed on un-DNATed, here to ext, which drops it.
    result = topo.probe("cl", WEB, 81, count=2, timeout=0.4)
    assert result.summary.errors == {"timeout": 2}, result
    flows = conntrack_entries(topo, "node", ["-d", WEB, "-p", "tcp", "--dport", "81"])
    assert flows and all(f.dnat is None for f in flows), flows  # forwarded (tracked), never DNATed


def test_udp_clusterip(topo: Topology) -> None:
    result = topo.probe("cl", WEB, 80, proto="udp", count=40)
    assert result.all_ok and set(result.summary.by_server) == set(ENDPOINT_PODS), result.summary
    assert result.seen_ips == {topo.pod_ip("cl")}


# ---------------------------------------------------------------------------- traffic policies


def test_internal_traffic_policy_local_uses_local_endpoints_only(topo: Topology) -> None:
    on_node = topo.probe("cl", ITP_LOCAL, 80, count=20)
    assert on_node.summary.by_server == {"b": 20}, on_node.summary  # never c on node2
    assert on_node.seen_ips == {topo.pod_ip("cl")}
    on_node2 = topo.probe("c", ITP_LOCAL, 80, count=5)  # node2's only local endpoint is c itself
    assert on_node2.summary.by_server == {"c": 5}, on_node2.summary


def test_internal_traffic_policy_local_without_local_endpoint_drops(topo: Topology) -> None:
    assert topo.probe("c", ITP_REMOTE, 80, count=2).summary.by_server == {"c": 2}  # node2 has one
    result = topo.probe("cl", ITP_REMOTE, 80, count=2, timeout=0.4)
    assert result.summary.errors == {"timeout": 2}, result  # DROP, not REJECT: no refusal


def test_terminating_endpoints_are_a_fallback(topo: Topology) -> None:
    # No ready endpoint: the serving+terminating one (a) takes everything; b (terminating, not
    # serving) and c (not ready, not terminating) never.
    draining = topo.probe("cl", DRAINING, 80, count=20)
    assert draining.summary.by_server == {"a": 20}, draining.summary
    # A ready endpoint (c) beside a serving+terminating one (a): only the ready one.
    mixed = topo.probe("cl", MIXED, 80, count=20)
    assert mixed.summary.by_server == {"c": 20}, mixed.summary


def test_topology_hints(topo: Topology) -> None:
    # Zone hints: node is in zone-a, whose endpoints are a and b; node2 in zone-b (c).
    zonal = topo.probe("cl", ZONAL, 80, count=30)
    assert zonal.all_ok and set(zonal.summary.by_server) == {"a", "b"}, zonal.summary
    assert topo.probe("c", ZONAL, 80, count=5).summary.by_server == {"c": 5}
    # Node hints (PreferSameNode): a for node, c for node2.
    hinted = topo.probe("cl", NODE_HINTED, 80, count=10)
    assert hinted.summary.by_server == {"a": 10}, hinted.summary
    assert topo.probe("c", NODE_HINTED, 80, count=5).summary.by_server == {"c": 5}


# ---------------------------------------------------------------------------- NodePort


def test_nodeport_from_outside_is_masqueraded(topo: Topology) -> None:
    result = topo.probe("ext", NODE_IP["node"], 30080, count=20)
    assert result.all_ok and set(result.summary.by_server) == {"a", "c"}, result.summary
    for attempt in result.attempts:
        # c (node2) sees the node's underlay address; a sees node's cni0 address; never ext's
        assert seen_ip(attempt) == (NODE_IP["node"] if attempt.server == "c" else CNI0["node"]), attempt


def test_node_port_addresses(topo: Topology) -> None:
    # node2 has nodePortAddresses 192.168.50.0/24: its NodePorts answer on 192.168.50.3 only;
    # on its cni0 address (10.244.2.1) nothing is DNATed and nothing listens: refused.
    underlay = topo.probe("ext", NODE_IP["node2"], 30080, count=10)
    assert underlay.all_ok and underlay.servers <= {"a", "c"}, underlay.summary
    other = topo.probe("c", CNI0["node2"], 30080, count=2)
    assert other.summary.errors == {"refused": 2}, other
    # node (no nodePortAddresses): every local address, cni0's too
    everywhere = topo.probe("cl", CNI0["node"], 30080, count=10)
    assert everywhere.all_ok and everywhere.servers <= {"a", "c"}, everywhere.summary


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


def test_localhost_nodeport(topo: Topology, mode: str) -> None:
    result = topo.probe("node", "127.0.0.1", 30080, count=20)
    if mode == "iptables":
        # route_localnet (set by full_sync) lets 127.0.0.1:NodePort be DNATed out of the node;
        # the source is masqueraded to the outgoing interface's address.
        assert result.all_ok and set(result.summary.by_server) == {"a", "c"}, result.summary
        for attempt in result.attempts:
            assert seen_ip(attempt) == (NODE_IP["node"] if attempt.server == "c" else CNI0["node"]), attempt
        assert sysctl(topo, "node", "net.ipv4.conf.all.route_localnet") == "1"
    else:
        # By design: nftables mode has no localhost NodePorts (as kube-proxy's nftables mode,
        # which never sets route_localnet): 127.0.0.1:30080 is the node's own port, closed.
        assert result.summary.errors == {"refused": 20}, result
        assert sysctl(topo, "node", "net.ipv4.conf.all.route_localnet") == "0"


# ---------------------------------------------------------------------------- external / LB IPs


@pytest.mark.parametrize("ip", [EXTERNAL_IP, LB_IP], ids=["externalIP", "loadBalancerIP"])
def test_external_and_load_balancer_ips(topo: Topology, ip: str) -> None:
    result = topo.probe("ext", ip, 80, count=20)
    assert result.all_ok and set(result.summary.by_server) == {"a", "c"}, result.summary
    assert EXT_IP not in result.seen_ips  # eTP Cluster: masqueraded


def test_load_balancer_source_ranges(topo: Topology) -> None:
    admitted = topo.probe("ext", FW_LB_IP, 80, count=5, src=EXT_IP)
    assert admitted.all_ok and admitted.servers <= {"a", "c"}, admitted.summary
    arrivals = {"refused": f"ip saddr {EXT_IP2} ip daddr {FW_LB_IP} tcp dport 80"}
    with counting(topo, "node", "prerouting", -300, arrivals) as counters:
        refused = topo.probe("ext", FW_LB_IP, 80, count=2, timeout=0.4, src=EXT_IP2)
        arrived = counters.read()["refused"]
    assert refused.summary.errors == {"timeout": 2}, refused
    # The SYNs reached node (at least one per attempt) and were dropped by its rules before
    # conntrack confirmed them: no flow from the refused source exists, so nothing was DNATed
    # or forwarded — not lost on the way, not answered elsewhere.
    assert arrived >= 2, arrived
    assert conntrack_entries(topo, "node", ["-s", EXT_IP2, "-d", FW_LB_IP]) == []
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


def test_client_ip_affinity_times_out(topo: Topology) -> None:
    """12 clients (ext's addresses) each stick to one endpoint; once the 2 s timeout has passed
    with no connection, each chooses afresh (2/3 chance of another endpoint): none moving at
    all has probability 3^-12 ≈ 2e-6 with a working timeout, and is certain without one."""

    def each_client(count: int) -> list[set[str]]:
        jobs = [{"dst": STICKY_SHORT, "port": 80, "count": count, "src": src} for src in AFFINITY_CLIENTS]
        results = topo.probe_batch("ext", jobs)
        assert all(r.all_ok for r in results), [r.summary for r in results]
        return [r.servers for r in results]

    first = each_client(4)
    assert all(len(s) == 1 for s in first), first  # within the timeout: sticky
    time.sleep(SHORT_TIMEOUT_S + 1.0)  # waiting out a kernel timer (the affinity entries' timeout)
    later = each_client(1)
    moved = sum(1 for a, b in zip(first, later, strict=True) if a != b)
    assert moved >= 1, (first, later)


# ---------------------------------------------------------------------------- no endpoints


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_service_without_endpoints_is_refused_at_once(topo: Topology, proto: str) -> None:
    # Few attempts: the kernel rate-limits ICMP errors per destination (a burst of 6, then 1/s).
    result = topo.probe("cl", EMPTY, 80, proto=proto, count=2, timeout=2.0)
    assert result.summary.errors == {"refused": 2}, result
    assert all(a.elapsed_s < 0.5 for a in result.attempts), result


@pytest.mark.parametrize(
    ("dst", "dport"), [(NODE_IP["node"], 30086), (EMPTY_EXTERNAL_IP, 80)], ids=["nodePort", "externalIP"]
)
def test_external_traffic_to_a_service_without_endpoints_is_refused(topo: Topology, dst: str, dport: int) -> None:
    result = topo.probe("ext", dst, dport, count=2, timeout=2.0)
    assert result.summary.errors == {"refused": 2}, result
    assert all(a.elapsed_s < 0.5 for a in result.attempts), result


# ---------------------------------------------------------------------------- masquerade


KEPT, MASQ = "kept", "masq"
# (configuration change on node) → what the endpoint (a, on node) sees for a pod on node (cl),
# an outside client (ext) and an outside client whose address is in the cluster CIDR but in no
# node's pod CIDR (ext from 10.244.200.5), each connecting to a ClusterIP.
MASQUERADE_CASES: dict[str, tuple[dict[str, Any], tuple[str, str, str]]] = {
    # no detector: kube-proxy masquerades no ClusterIP traffic at all
    "none": ({"detect_local": DetectLocal.NONE}, (KEPT, KEPT, KEPT)),
    "ClusterCIDR": ({}, (KEPT, MASQ, KEPT)),
    "NodeCIDR": (
        {"detect_local": DetectLocal.NODE_CIDR, "node_pod_cidrs": ("10.244.1.0/24",)},
        (KEPT, MASQ, MASQ),
    ),
    "BridgeInterface": ({"detect_local": DetectLocal.BRIDGE_INTERFACE, "bridge_interface": "cni0"}, (KEPT, MASQ, MASQ)),
    # pods' veths are bridge ports here, so the routed packet's input interface is cni0
    "InterfaceNamePrefix": (
        {"detect_local": DetectLocal.INTERFACE_NAME_PREFIX, "interface_name_prefix": "cni"},
        (KEPT, MASQ, MASQ),
    ),
    "masqueradeAll": ({"masquerade_all": True}, (MASQ, MASQ, MASQ)),
}


@pytest.mark.parametrize("case", list(MASQUERADE_CASES))
def test_masquerade_by_local_detection_mode(topo: Topology, mode: str, case: str) -> None:
    changes, expected = MASQUERADE_CASES[case]
    sources = (("cl", None, topo.pod_ip("cl")), ("ext", EXT_IP, EXT_IP), ("ext", EXT_CLUSTER_IP, EXT_CLUSTER_IP))
    with reloaded(topo, mode, "node", **changes):
        results = [topo.probe(who, HAIRPIN, 80, count=3, src=bind) for who, bind, _ in sources]
    for (_, _, ip), want, result in zip(sources, expected, results, strict=True):
        assert result.summary.by_server == {"a": 3}, (case, ip, result.summary)
        assert result.seen_ips == ({ip} if want == KEPT else {CNI0["node"]}), (case, ip, want, result.seen_ips)


def test_masquerade_mark_bit(topo: Topology, mode: str) -> None:
    """With masqueradeBit 5, masquerading works and the packets that need it carry 0x20 (and
    not kube-proxy's default 0x4000) when they leave nat PREROUTING/OUTPUT: counted by a table
    of the test's own just before nat POSTROUTING (priority 100) clears the bit."""
    marks = {"bit5": "meta mark & 0x20 == 0x20 ct state new", "bit14": "meta mark & 0x4000 == 0x4000 ct state new"}
    with reloaded(topo, mode, "node", masquerade_bit=5), counting(topo, "node", "postrouting", 99, marks) as counters:
        outside = topo.probe("ext", HAIRPIN, 80, count=3)
        pod = topo.probe("cl", HAIRPIN, 80, count=3)
        seen = counters.read()
    assert outside.summary.by_server == {"a": 3} and outside.seen_ips == {CNI0["node"]}, outside
    assert pod.summary.by_server == {"a": 3} and pod.seen_ips == {topo.pod_ip("cl")}, pod
    assert seen["bit5"] >= 3 and seen["bit14"] == 0, seen  # ≥: a SYN retransmitted under load counts again


@pytest.mark.parametrize("random_fully", [True, False], ids=["fully-random", "plain"])
def test_fully_random_masquerade(topo: Topology, mode: str, random_fully: bool) -> None:
    """Plain masquerade keeps the client's source port when it is free; fully-random picks a
    random one for every flow (a port kept by chance: ~1 in 64k per flow)."""
    with reloaded(topo, mode, "node", random_fully=random_fully):
        result = topo.probe("ext", NODE_IP["node"], 30080, count=12)
    assert result.all_ok, result.summary
    kept = 0
    for attempt in result.attempts:
        assert attempt.local and attempt.seen, attempt
        assert seen_ip(attempt) != EXT_IP, attempt  # masqueraded
        kept += attempt.local.rsplit(":", 1)[1] == attempt.seen.rsplit(":", 1)[1]
    assert kept == (0 if random_fully else 12) or (random_fully and kept <= 1), (kept, result.attempts)


# ---------------------------------------------------------------------------- hairpin


def test_hairpin_is_masqueraded_other_pods_are_not(topo: Topology) -> None:
    itself = topo.probe("a", HAIRPIN, 80, count=3)
    assert itself.summary.by_server == {"a": 3}, itself.summary
    assert itself.seen_ips == {CNI0["node"]}  # not its own address: the reply would skip the NAT
    other = topo.probe("cl", HAIRPIN, 80, count=3)
    assert other.summary.by_server == {"a": 3}, other.summary
    assert other.seen_ips == {topo.pod_ip("cl")}


# ---------------------------------------------------------------------------- 127.0.0.0/8 (CVE-2020-8558)

# A UDP datagram in an Ethernet frame of our own making: a neighbour cannot otherwise send to
# 127.0.0.1 (its own loopback route wins). argv: dev dst_mac src_mac src dst sport dport.
FRAME_SENDER = r"""
import socket, struct, sys
dev, dst_mac, src_mac, src, dst, sport, dport = sys.argv[1:8]
payload = b"pt-localnet\n"
udp = struct.pack("!HHHH", int(sport), int(dport), 8 + len(payload), 0) + payload
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                  socket.inet_aton(src), socket.inet_aton(dst))
words = sum(struct.unpack("!10H", hdr))
while words >> 16:
    words = (words & 0xFFFF) + (words >> 16)
hdr = hdr[:10] + struct.pack("!H", ~words & 0xFFFF) + hdr[12:]
eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
    s.bind((dev, 0))
    s.send(eth + hdr + udp)
"""


def mac(topo: Topology, who: str, dev: str) -> str:
    return str(json.loads(topo.run(who, ["ip", "-j", "link", "show", dev]).stdout)[0]["address"])


def send_frame(topo: Topology, dst: str, sport: int, dport: int = 9) -> None:
    args = ["eth0", mac(topo, "node", "eth0"), mac(topo, "ext", "eth0"), EXT_IP, dst, str(sport), str(dport)]
    topo.run("ext", [sys.executable, "-c", FRAME_SENDER, *args])


def test_localnet_is_protected_from_neighbours(topo: Topology, mode: str) -> None:
    """A neighbour's packet to 127.0.0.1 is dropped in INPUT (CVE-2020-8558). That needs
    route_localnet=1 (otherwise routing drops it as a martian, rules or not): iptables mode sets
    it for localhost NodePorts; nftables mode does not, so here it is set as another component
    might, which is exactly when the protection matters."""
    key = "net.ipv4.conf.all.route_localnet"
    before = sysctl(topo, "node", key)
    assert before == ("1" if mode == "iptables" else "0")
    topo.run("node", ["sysctl", "-qw", f"{key}=1"])
    try:
        arrivals = {"localnet": "ip daddr 127.0.0.1 udp sport 40001"}
        with counting(topo, "node", "prerouting", -300, arrivals) as counters:
            send_frame(topo, "127.0.0.1", 40001)
            send_frame(topo, NODE_IP["node"], 40002)  # the control: same way, to the node's address
            poll_until(
                lambda: conntrack_entries(topo, "node", ["-p", "udp", "--sport", "40002"]),
                5.0,
                what="conntrack entry of the control datagram",
            )
            arrived = counters.read()["localnet"]
    finally:
        topo.run("node", ["sysctl", "-qw", f"{key}={before}"])
    assert arrived == 1  # it reached node …
    assert conntrack_entries(topo, "node", ["-p", "udp", "--sport", "40001"]) == []  # … and was dropped


# ---------------------------------------------------------------------------- UDP conntrack cleanup


def make_syncer(topo: Topology, mode: str, node: str) -> Any:
    config = node_config(node, mode)
    if mode == "iptables":
        from clew.proxy.sync import ProxySyncer

        return ProxySyncer(netns=topo.ns(node), config=config)
    from clew.proxy.nftables.sync import NftSyncer

    return NftSyncer(netns=topo.ns(node), config=config)


@pytest.mark.parametrize(
    ("client", "dst", "dport", "sport"),
    [("cl", DNS, 80, 40100), ("ext", NODE_IP["node"], DNS_NODE_PORT, 40101)],
    ids=["clusterIP", "nodePort"],
)
def test_udp_conntrack_cleanup_when_an_endpoint_goes(
    topo: Topology, mode: str, client: str, dst: str, dport: int, sport: int
) -> None:
    """A UDP client keeps its 5-tuple (a DNS resolver's socket); when its endpoint leaves the
    Service, the sync engine deletes the flow (by Service IP, or by NodePort), so the next
    datagram is DNATed afresh to a remaining endpoint instead of following the stale mapping (the
    old pod still answers here, so without the cleanup the client would keep reaching it)."""
    syncer = make_syncer(topo, mode, "node")
    try:
        assert syncer.sync(build_snapshot(objects(topo))).ok
        first = topo.probe(client, dst, dport, proto="udp", sport=sport)
        assert first.all_ok, first.summary
        gone = first.attempts[0].server
        assert gone in ("a", "b")
        stays = "b" if gone == "a" else "a"
        flows = conntrack_entries(topo, "node", ["-p", "udp", "--sport", str(sport)])
        assert [f.dnat for f in flows] == [f"{topo.pod_ip(gone)}:{PORT}"], flows
        result = syncer.sync(build_snapshot(objects(topo, dns_pods=[stays])))
        assert result.ok and result.conntrack_deleted >= 1, result
        again = topo.probe(client, dst, dport, proto="udp", sport=sport, count=3)
        assert again.summary.by_server == {stays: 3}, again.summary
    finally:
        if hasattr(syncer, "close"):
            syncer.close()
        load(topo, "node", objects(topo), node_config("node", mode))


# ---------------------------------------------------------------------------- health-check NodePorts


def test_health_check_node_port_through_a_host_firewall(topo: Topology, mode: str) -> None:
    """A host firewall on node (iptables filter INPUT: established accepted, policy DROP) and the
    health-check server of an eTP=Local LoadBalancer listening on its healthCheckNodePort (an echo
    server here, as clew's agent serves it)."""
    server = topo.start_echo("node", [HC_PORT], name="healthz")
    established = ["INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    topo.iptables("node", ["-A", *established])
    topo.iptables("node", ["-P", "INPUT", "DROP"])
    try:
        result = topo.probe("ext", NODE_IP["node"], HC_PORT, count=2, timeout=0.5)
    finally:
        topo.iptables("node", ["-P", "INPUT", "ACCEPT"])
        topo.iptables("node", ["-D", *established])
        server.terminate()
        server.wait(timeout=5)
    if mode == "iptables":
        # KUBE-NODEPORTS in filter ACCEPTs the health-check port ahead of the firewall's policy
        assert result.summary.by_server == {"healthz": 2}, result
    else:
        # By design: nftables mode has no such accept (nor has kube-proxy's nftables mode): an
        # accept in clew's own table cannot override a drop in another table.
        assert result.summary.errors == {"timeout": 2}, result


# ---------------------------------------------------------------------------- reloading


@pytest.mark.parametrize("node", ["node", "node2"])
def test_loading_twice_changes_nothing(topo: Topology, mode: str, node: str) -> None:
    config = node_config(node, mode)
    if mode == "iptables":
        before = normalised_save(topo, node)
        load(topo, node, objects(topo), config)  # the fixture ran the first one
        after = normalised_save(topo, node)
        assert after == before
        rules = [line for line in after if line.startswith("-A ")]
        assert len(rules) == len(set(rules)), "a rule is there twice"
        assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in rules
    else:
        before_nft = nft_ruleset(topo, node)
        load(topo, node, objects(topo), config)  # replaces the table in one transaction
        assert nft_ruleset(topo, node) == before_nft
        assert len(policies_for(objects(topo), config)) > 0
        # nftables mode writes no iptables rule at all
        assert not [line for line in normalised_save(topo, node) if line.startswith("-A ")]
