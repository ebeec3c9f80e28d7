"""Synthetic clusters for benchmarks: N Services × K endpoints as real API objects."""

from __future__ import annotations

import ipaddress
from typing import Any

SERVICE_BASE = int(ipaddress.IPv4Address("10.96.0.1"))
POD_BASE = int(ipaddress.IPv4Address("10.244.0.10"))
NODE_PORT_BASE = 30000
NODE_PORTS = 2768  # 30000-32767


def objects(services: int, endpoints: int = 3, *, nodes: int = 3, node_port_every: int = 5) -> list[dict[str, Any]]:
    """Services ``svc-0…`` in namespace ``bench``: every ``node_port_every``-th is a NodePort
    (while NodePorts last), each with one EndpointSlice of ``endpoints`` ready endpoints spread
    over ``node-0…``."""
    out: list[dict[str, Any]] = []
    node_ports = 0
    for i in range(services):
        port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
        svc_type = "ClusterIP"
        if node_port_every and i % node_port_every == 0 and node_ports < NODE_PORTS:
            svc_type = "NodePort"
            port["nodePort"] = NODE_PORT_BASE + node_ports
            node_ports += 1
        ip = str(ipaddress.IPv4Address(SERVICE_BASE + i))
        name = f"svc-{i}"
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "bench"},
                "spec": {"type": svc_type, "clusterIP": ip, "clusterIPs": [ip], "ports": [port]},
            }
        )
        eps = [
            {
                "addresses": [str(ipaddress.IPv4Address(POD_BASE + i * endpoints + j))],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": f"node-{(i + j) % nodes}",
            }
            for j in range(endpoints)
        ]
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": "bench",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": eps,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )
    return out


def every_chain(services: int) -> list[dict[str, Any]]:
    """`objects` plus three Services in namespace ``g`` that put rules into every shared chain:
    a ClusterIP and a NodePort without endpoints (REJECTs in filter KUBE-SERVICES and
    KUBE-EXTERNAL-SERVICES), and a LoadBalancer with source ranges (KUBE-PROXY-FIREWALL) and
    externalTrafficPolicy Local with its one endpoint on another node (its health check port in
    filter KUBE-NODEPORTS). For the tamper guard's tests and benches."""

    def svc(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
        ports = [{"name": "p", "port": 80, "protocol": "TCP"}]
        meta = {"name": name, "namespace": "g"}
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": ports, **spec},
                "status": status or {}}  # fmt: skip

    def node_port(port: int) -> list[dict[str, Any]]:
        return [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": port}]

    lb = svc(
        "lb",
        {"type": "LoadBalancer", "clusterIP": "10.97.0.3", "externalTrafficPolicy": "Local",
         "healthCheckNodePort": 32100, "loadBalancerSourceRanges": ["203.0.113.0/24"], "ports": node_port(32101)},
        {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}},
    )  # fmt: skip
    lonely_np = svc("lonely-np", {"type": "NodePort", "clusterIP": "10.97.0.2", "ports": node_port(32102)})
    lb_slice = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": "lb-x", "namespace": "g", "labels": {"kubernetes.io/service-name": "lb"}},
                "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": "node-7"}],
                "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}  # fmt: skip
    return [*objects(services), svc("lonely", {"clusterIP": "10.97.0.1"}), lonely_np, lb, lb_slice]
