"""kube-proxy's own packet-flow expectations, traced through clew's render of the same objects.

Upstream ``pkg/proxy/iptables/proxier_test.go`` (kubernetes/kubernetes, the current version
served as file id 191206484; see upstream/README.md) checks its rules with ``runPacketFlowTests``:
rows of ``packetFlowTest{sourceIP, destIP, destPort, output, masq}`` where ``output`` is
"10.180.0.4:80, 10.180.0.5:80", "DROP", "REJECT", "ACCEPT" or "" (no Service). The rows below
are copied from there as facts, each under the scenario whose objects are the ones the upstream
test builds:

* ``TestTracePacket`` runs on a hand-written copy of ``TestOverallIPTablesRules``' output, so
  its rows hold for `upstream-overall_iptables_rules_nfacct`;
* ``TestLoadBalancer``, ``TestExternalTrafficPolicyLocal``, ``TestHealthCheckNodePort``,
  ``TestInternalTrafficPolicy`` and ``TestTerminatingEndpointsTrafficPolicy{Local,Cluster}``
  build the objects of the like-named upstream scenarios (the fork's copies; the terminating
  ones add ClientIP affinity, which does not change a first packet);
* ``TestInternalExternalMasquerade`` is rebuilt here from its objects, with its four
  configurations and their overrides;
* rows marked "as <Test>: <row>" transpose an upstream row to a Service of the overall
  objects that has the same shape (the same IPs where the row names them).

Every source that is not an address of the node arrives from outside: pods (10.0.0.0/8) on
``cni0``, everything else on ``eth0``. ACCEPT and "" both mean "no DNAT".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
from flows import UNTOUCHED, Check, Flow, Node, Row, Rows, ended, node_for, node_from_objects, run, table
from scenario import scenarios

from clew.model.proxy_config import from_kube_proxy_config
from clew.sources.manifests import parse_text
from clew.trace.engine import trace
from clew.trace.packet import Packet

POD = "10.0.0.2"
TEST_NODE_IP = "192.168.0.2"
TEST_NODE_IP_ALT = "192.168.1.2"
TEST_EXTERNAL_CLIENT = "203.0.113.2"
TEST_EXTERNAL_CLIENT_BLOCKED = "203.0.113.130"
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Known:
    """One ``packetFlowTest`` row: name, sourceIP, destIP, destPort, output, masq."""

    name: str
    src: str
    dst: str
    dport: int
    output: str
    masq: bool = False
    proto: str = "tcp"
    note: str = ""


K = Known


def upstream_rows(output: str, masq: bool) -> Rows:
    """kube-proxy's ``output`` string as rows: every endpoint listed is equally likely."""
    if output in ("", "ACCEPT"):
        return UNTOUCHED
    if output in ("DROP", "REJECT"):
        return ended(output)
    endpoints = [e.strip() for e in output.split(",")]
    return frozenset(Row("ACCEPT", e, round(1 / len(endpoints), 6), masq) for e in endpoints)


def flows_for(node: Node, test: str, rows: list[Known]) -> list[Flow]:
    return [
        Flow(r.name, test, r.src, node.iif_for(r.src), r.dst, r.dport, r.proto, upstream_rows(r.output, r.masq), r.note)
        for r in rows
    ]


@dataclass(frozen=True)
class KnownTable:
    scenario: str
    test: str
    rows: list[Known]


TABLES = [
    KnownTable("upstream-overall_iptables_rules_nfacct", "TestTracePacket", [
        K("no match", POD, "10.0.0.3", 80, ""),
        K("single endpoint", POD, "172.30.0.41", 80, "10.180.0.1:80"),
        K("multiple endpoints", POD, "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80"),
        K("LOCAL, KUBE-MARK-MASQ", TEST_NODE_IP, "192.168.99.22", 80, "10.180.0.2:80", masq=True),
        K("DROP", TEST_EXTERNAL_CLIENT, "192.168.99.22", 80, "DROP"),
        K("ACCEPT (NodePortHealthCheck)", TEST_NODE_IP, TEST_NODE_IP, 30000, "ACCEPT"),
        K("REJECT", POD, "172.30.0.46", 80, "REJECT"),
    ]),
    KnownTable("upstream-overall_iptables_rules_nfacct", "transposed rows", [
        K("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", masq=True,
          note="TestClusterIPGeneral: same ClusterIP and endpoint as svc1 here"),
        K("node to ClusterIP", TEST_NODE_IP, "172.30.0.41", 80, "10.180.0.1:80", masq=True,
          note="as TestInternalExternalMasquerade: node to ClusterIP"),
        K("external to ClusterIP", TEST_EXTERNAL_CLIENT, "172.30.0.41", 80, "10.180.0.1:80", masq=True,
          note="as TestInternalExternalMasquerade: external to ClusterIP"),
        K("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3003, "10.180.0.3:80", masq=True,
          note="as TestNodePorts: external to nodePort (svc3, no local endpoint)"),
        K("external to nodePort on secondary IP", TEST_EXTERNAL_CLIENT, TEST_NODE_IP_ALT, 3003, "10.180.0.3:80",
          masq=True, note="as TestNodePorts"),
        K("node to nodePort", TEST_NODE_IP, TEST_NODE_IP, 3003, "10.180.0.3:80", masq=True, note="as TestNodePorts"),
        K("localhost to nodePort gets masqueraded", LOCALHOST, LOCALHOST, 3003, "10.180.0.3:80", masq=True,
          note="as TestNodePorts"),
        K("external to NodePort, eTP Local, no local endpoint", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "DROP",
          note="svc2 of TestTracePacket's DROP row, on its NodePort"),
        K("pod to NodePort with eTP:Local", POD, TEST_NODE_IP, 3001, "10.180.0.2:80",
          note="as TestInternalExternalMasquerade (short-circuit to all endpoints)"),
        K("pod to LB with eTP:Local", POD, "1.2.3.4", 80, "10.180.0.2:80",
          note="as TestInternalExternalMasquerade"),
        K("external to LB with eTP:Local, no local endpoint", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "DROP",
          note="as TestTerminatingEndpointsTrafficPolicyLocal: external to LB, no locally-usable endpoints"),
        K("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.3:80", masq=True,
          note="as TestLoadBalancer (same LB IP and range 203.0.113.0/25)"),
        K("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP", note="as TestLoadBalancer"),
        K("pod to LB2 (blocked by LoadBalancerSourceRanges)", POD, "5.6.7.8", 80, "DROP", note="as TestLoadBalancer"),
        K("nodePort bypasses LoadBalancerSourceRanges", TEST_EXTERNAL_CLIENT_BLOCKED, TEST_NODE_IP, 3002,
          "10.180.0.3:80", masq=True, note="as TestLoadBalancer"),
        K("pod to cluster IP with affinity", POD, "172.30.0.45", 80, "10.180.0.3:80",
          note="as TestLoadBalancer: pod to cluster IP (svc5 has ClientIP affinity)"),
    ]),
    KnownTable("upstream-load_balancer_source_ranges_node_ip", "TestLoadBalancer", [
        K("pod to cluster IP", POD, "172.30.0.41", 80, "10.180.0.1:80"),
        K("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "10.180.0.1:80", masq=True),
        K("nodePort bypasses LoadBalancerSourceRanges", TEST_EXTERNAL_CLIENT_BLOCKED, TEST_NODE_IP, 3001,
          "10.180.0.1:80", masq=True),
        K("accepted external to LB1", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.180.0.1:80", masq=True),
        K("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.1:80", masq=True),
        K("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP"),
        K("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP"),
        K("pod to LB1 (blocked by LoadBalancerSourceRanges)", POD, "1.2.3.4", 80, "DROP"),
        K("pod to LB2 (blocked by LoadBalancerSourceRanges)", POD, "5.6.7.8", 80, "DROP"),
        K("node to LB1 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "1.2.3.4", 80, "10.180.0.1:80", masq=True),
        K("node to LB2 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "5.6.7.8", 80, "10.180.0.1:80", masq=True),
        K("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "1.2.3.4", 80, "10.180.0.1:80",
          masq=True),
        K("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "5.6.7.8", 80, "10.180.0.1:80",
          masq=True),
    ]),
    KnownTable("upstream-external_traffic_policy_local", "TestExternalTrafficPolicyLocal", [
        K("pod to cluster IP hits both endpoints, unmasqueraded", POD, "172.30.0.41", 80,
          "10.180.0.1:80, 10.180.2.1:80"),
        K("pod to external IP hits both endpoints, unmasqueraded", POD, "192.168.99.11", 80,
          "10.180.0.1:80, 10.180.2.1:80"),
        K("external to external IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80,
          "10.180.2.1:80"),
        K("pod to LB IP hits only both endpoints, unmasqueraded", POD, "1.2.3.4", 80, "10.180.0.1:80, 10.180.2.1:80"),
        K("external to LB IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80,
          "10.180.2.1:80"),
        K("pod to NodePort hits both endpoints, unmasqueraded", POD, TEST_NODE_IP, 3001,
          "10.180.0.1:80, 10.180.2.1:80"),
        K("external to NodePort hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001,
          "10.180.2.1:80"),
    ]),
    KnownTable("upstream-health_check_nodeport_no_endpoints", "TestHealthCheckNodePort", [
        K("firewall accepts HealthCheckNodePort", "1.2.3.4", TEST_NODE_IP, 30000, "ACCEPT"),
    ]),
    KnownTable("upstream-internal_traffic_policy_cluster", "TestInternalTrafficPolicy", [
        K("pod to ClusterIP hits all endpoints", POD, "172.30.1.1", 80, "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    ]),
    KnownTable("upstream-internal_traffic_policy_local", "TestInternalTrafficPolicy", [
        K("pod to ClusterIP hits only local endpoint", POD, "172.30.1.1", 80, "10.0.1.1:80"),
    ]),
    KnownTable("upstream-internal_traffic_policy_local_no_local_endpoints", "TestInternalTrafficPolicy", [
        K("no endpoints", POD, "172.30.1.1", 80, "DROP"),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_local_ready_endpoints_exist",
               "TestTerminatingEndpointsTrafficPolicyLocal", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80"),
        K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.0.1.1:80, 10.0.1.2:80"),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_local_only_terminating_endpoints",
               "TestTerminatingEndpointsTrafficPolicyLocal", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.5:80"),
        K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.0.1.2:80, 10.0.1.3:80"),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_local_terminating_on_remote_node",
               "TestTerminatingEndpointsTrafficPolicyLocal", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.5:80"),
        K("external to LB, no locally-usable endpoints", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "DROP"),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_local_no_usable_endpoints",
               "TestTerminatingEndpointsTrafficPolicyLocal", [
        K("pod to clusterIP, no usable endpoints", POD, "172.30.1.1", 80, "REJECT"),
        K("external to LB, no usable endpoints", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_cluster_ready_endpoints_exist",
               "TestTerminatingEndpointsTrafficPolicyCluster", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80"),
        K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", masq=True),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_cluster_only_terminating_endpoints",
               "TestTerminatingEndpointsTrafficPolicyCluster", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80"),
        K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", masq=True),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_cluster_terminating_on_remote_node",
               "TestTerminatingEndpointsTrafficPolicyCluster", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.5:80"),
        K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.0.1.5:80", masq=True),
    ]),
    KnownTable("upstream-terminating_endpoints_etp_cluster_no_usable_endpoints",
               "TestTerminatingEndpointsTrafficPolicyCluster", [
        K("pod to clusterIP", POD, "172.30.1.1", 80, "REJECT"),
        K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
    ]),
]  # fmt: skip

SCENARIOS = {s.name: s for s in scenarios()}


@functools.cache
def scenario_node(name: str) -> Node:
    return node_for(SCENARIOS[name])[0]


def _fail_message(checks: list[Check], title: str) -> str:
    return table(checks, title=title)


@pytest.mark.parametrize("known", TABLES, ids=[f"{t.scenario}-{t.test}" for t in TABLES])
def test_upstream_packet_flows(known: KnownTable) -> None:
    node = scenario_node(known.scenario)
    checks = run(node, flows_for(node, known.test, known.rows))
    assert all(c.ok for c in checks), _fail_message(checks, f"{known.scenario}, rows of {known.test}")


# ---------------------------------------------------------------------------------------------
# TestInternalExternalMasquerade: its objects, its four configurations, its rows and overrides.

MASQUERADE_OBJECTS = """
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.41
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
  healthCheckNodePort: 30001
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
---
apiVersion: v1
kind: Service
metadata: {name: svc2, namespace: ns2}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.42
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3002}]
  healthCheckNodePort: 30002
  externalTrafficPolicy: Local
status: {loadBalancer: {ingress: [{ip: 5.6.7.8}]}}
---
apiVersion: v1
kind: Service
metadata: {name: svc3, namespace: ns3}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.43
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3003}]
  healthCheckNodePort: 30003
  internalTrafficPolicy: Local
status: {loadBalancer: {ingress: [{ip: 9.10.11.12}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.1], nodeName: test-node}
- {addresses: [10.180.1.1], nodeName: remote}
ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc2-1, namespace: ns2, labels: {kubernetes.io/service-name: svc2}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.2], nodeName: test-node}
- {addresses: [10.180.1.2], nodeName: remote}
ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc3-1, namespace: ns3, labels: {kubernetes.io/service-name: svc3}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.3], nodeName: test-node}
- {addresses: [10.180.1.3], nodeName: remote}
ports: [{name: p80, port: 80, protocol: TCP}]
"""

E1, E2, E3 = "10.180.0.1:80, 10.180.1.1:80", "10.180.0.2:80, 10.180.1.2:80", "10.180.0.3:80, 10.180.1.3:80"
MASQUERADE_ROWS = [
    K("pod to ClusterIP", POD, "172.30.0.41", 80, E1, False),
    K("pod to NodePort", POD, TEST_NODE_IP, 3001, E1, True),
    K("pod to LB", POD, "1.2.3.4", 80, E1, True),
    K("node to ClusterIP", TEST_NODE_IP, "172.30.0.41", 80, E1, True),
    K("node to NodePort", TEST_NODE_IP, TEST_NODE_IP, 3001, E1, True),
    K("localhost to NodePort", LOCALHOST, LOCALHOST, 3001, E1, True),
    K("node to LB", TEST_NODE_IP, "1.2.3.4", 80, E1, True),
    K("external to ClusterIP", TEST_EXTERNAL_CLIENT, "172.30.0.41", 80, E1, True),
    K("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, E1, True),
    K("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, E1, True),
    K("pod to ClusterIP with eTP:Local", POD, "172.30.0.42", 80, E2, False),
    K("pod to NodePort with eTP:Local", POD, TEST_NODE_IP, 3002, E2, False),
    K("pod to LB with eTP:Local", POD, "5.6.7.8", 80, E2, False),
    K("node to ClusterIP with eTP:Local", TEST_NODE_IP, "172.30.0.42", 80, E2, True),
    K("node to NodePort with eTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3001, E1, True),  # sic: upstream uses 3001
    K("localhost to NodePort with eTP:Local", LOCALHOST, LOCALHOST, 3002, E2, True),
    K("node to LB with eTP:Local", TEST_NODE_IP, "5.6.7.8", 80, E2, True),
    K("external to ClusterIP with eTP:Local", TEST_EXTERNAL_CLIENT, "172.30.0.42", 80, E2, True),
    K("external to NodePort with eTP:Local", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3002, "10.180.0.2:80", False),
    K("external to LB with eTP:Local", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.2:80", False),
    K("pod to ClusterIP with iTP:Local", POD, "172.30.0.43", 80, "10.180.0.3:80", False),
    K("pod to NodePort with iTP:Local", POD, TEST_NODE_IP, 3003, E3, True),
    K("pod to LB with iTP:Local", POD, "9.10.11.12", 80, E3, True),
    K("node to ClusterIP with iTP:Local", TEST_NODE_IP, "172.30.0.43", 80, "10.180.0.3:80", True),
    K("node to NodePort with iTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3003, E3, True),
    K("localhost to NodePort with iTP:Local", LOCALHOST, LOCALHOST, 3003, E3, True),
    K("node to LB with iTP:Local", TEST_NODE_IP, "9.10.11.12", 80, E3, True),
    K("external to ClusterIP with iTP:Local", TEST_EXTERNAL_CLIENT, "172.30.0.43", 80, "10.180.0.3:80", True),
    K("external to NodePort with iTP:Local", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3003, E3, True),
    K("external to LB with iTP:Local", TEST_EXTERNAL_CLIENT, "9.10.11.12", 80, E3, True),
]
Overrides = dict[str, tuple[str | None, bool | None]]  # row name → (output, masq); None = unchanged
SHORT_CIRCUIT_NEEDS_DETECTOR: Overrides = {
    "pod to NodePort with eTP:Local": ("10.180.0.2:80", None),
    "pod to LB with eTP:Local": ("10.180.0.2:80", None),
}
NO_DETECTOR: Overrides = {
    **SHORT_CIRCUIT_NEEDS_DETECTOR,
    "node to ClusterIP": (None, False),
    "node to ClusterIP with eTP:Local": (None, False),
    "node to ClusterIP with iTP:Local": (None, False),
    "external to ClusterIP": (None, False),
    "external to ClusterIP with eTP:Local": (None, False),
    "external to ClusterIP with iTP:Local": (None, False),
}
MASQUERADE_ALL: Overrides = {
    "pod to ClusterIP": (None, True),
    "pod to ClusterIP with eTP:Local": (None, True),
    "pod to ClusterIP with iTP:Local": (None, True),
}
# (name, masqueradeAll, local detector, overrides)
MASQUERADE_CASES: list[tuple[str, bool, bool, Overrides]] = [
    ("base", False, True, {}),
    ("no LocalTrafficDetector", False, False, NO_DETECTOR),
    ("masqueradeAll", True, True, MASQUERADE_ALL),
    ("masqueradeAll, no LocalTrafficDetector", True, False, {**MASQUERADE_ALL, **SHORT_CIRCUIT_NEEDS_DETECTOR}),
]


def _overridden(overrides: Overrides) -> list[Known]:
    assert set(overrides) <= {r.name for r in MASQUERADE_ROWS}, "an override names no row"
    rows = []
    for r in MASQUERADE_ROWS:
        output, masq = overrides.get(r.name, (None, None))
        rows.append(Known(r.name, r.src, r.dst, r.dport, r.output if output is None else output,
                          r.masq if masq is None else masq))  # fmt: skip
    return rows


@pytest.mark.parametrize(
    ("case", "masquerade_all", "detector", "overrides"), MASQUERADE_CASES, ids=[c[0] for c in MASQUERADE_CASES]
)
def test_internal_external_masquerade(case: str, masquerade_all: bool, detector: bool, overrides: Overrides) -> None:
    doc: dict[str, object] = {"iptables": {"masqueradeAll": masquerade_all}}
    if detector:
        doc["clusterCIDR"] = "10.0.0.0/8"
    config = from_kube_proxy_config(
        doc, node_name="test-node", node_ips=(TEST_NODE_IP, TEST_NODE_IP_ALT, "192.168.99.11")
    )
    node = node_from_objects(parse_text(MASQUERADE_OBJECTS, "TestInternalExternalMasquerade"), config)
    checks = run(node, flows_for(node, "TestInternalExternalMasquerade", _overridden(overrides)))
    assert len(checks) == 30
    assert all(c.ok for c in checks), _fail_message(checks, f"TestInternalExternalMasquerade/{case}")


# ---------------------------------------------------------------------------------------------
# ClientIP affinity: a first packet spreads as usual; the tracer says where a returning client goes.


def _affinity_notes(scenario: str, src: str, dst: str, dport: int) -> dict[str, list[str]]:
    node = scenario_node(scenario)
    result = trace(node.view, Packet(src=src, dst=dst, dport=dport, iif=node.iif_for(src)))
    return {o.dnat or o.verdict: o.notes for o in result.outcomes}


def test_affinity_single_endpoint_notes_returning_clients() -> None:
    notes = _affinity_notes("upstream-overall_iptables_rules_nfacct", POD, "172.30.0.45", 80)
    assert list(notes) == ["10.180.0.3:80"]
    assert notes["10.180.0.3:80"] == [
        "ClientIP affinity: a returning client (in recent list KUBE-SEP-I77PXRDZVX7PMWMN) goes to 10.180.0.3:80 (100%)"
    ]


def test_affinity_two_endpoints_each_outcome_pins_its_endpoint() -> None:
    # v127 TestOnlyLocalLoadBalancing objects: ClientIP affinity, endpoints 10.180.0.1 and 10.180.2.1 (local)
    notes = _affinity_notes("upstream-v127_only_local_load_balancing_affinity", POD, "172.30.0.41", 80)
    assert sorted(notes) == ["10.180.0.1:80", "10.180.2.1:80"]
    for endpoint, said in notes.items():
        assert len(said) == 1 and said[0].startswith("ClientIP affinity: a returning client (in recent list KUBE-SEP-")
        assert said[0].endswith(f"goes to {endpoint} (100%)"), said


def test_affinity_without_it_there_is_no_note() -> None:
    notes = _affinity_notes("upstream-overall_iptables_rules_nfacct", POD, "172.30.0.44", 80)
    assert notes == {"10.180.0.4:80": [], "10.180.0.5:80": []}


def test_known_tables_cover_every_outcome() -> None:
    """The tables hold what the brief asks for: enough rows, every outcome kind."""
    rows = [r for t in TABLES for r in t.rows]
    assert len(rows) >= 60
    outputs = {r.output if r.output in ("", "ACCEPT", "DROP", "REJECT") else "endpoints" for r in rows}
    assert outputs == {"", "ACCEPT", "DROP", "REJECT", "endpoints"}
    assert any(r.masq for r in rows) and any(not r.masq and "," in r.output for r in rows)
    assert {t.scenario for t in TABLES} <= set(SCENARIOS)
