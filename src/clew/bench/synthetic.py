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
