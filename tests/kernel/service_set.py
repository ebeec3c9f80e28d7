"""A compact description of Services for the random-packet kernel tests (trace agreement,
mode parity): each `Svc` becomes a Service and an EndpointSlice, and `destinations` says how a
client reaches one of its ports by a given way in.

Every port is port 80 → the echo servers' 8080; endpoints are pods of a `Topology`, ready.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from topology import Topology

PORT = 8080  # every echo server's port, so every endpoint's port
NS = "clew"
NODE_IP = {"node": "192.168.50.2", "node2": "192.168.50.3"}
CNI0_IP = "10.244.1.1"  # node's address on its pod bridge


@dataclass(frozen=True)
class Svc:
    name: str
    cluster_ip: str
    ports: tuple[tuple[str, int], ...]  # (protocol, nodePort or 0); every one is port 80 → 8080
    pods: tuple[str, ...]  # endpoints (ready)
    type: str = "ClusterIP"
    etp: str = "Cluster"
    external_ips: tuple[str, ...] = ()
    lb_ip: str | None = None
    source_ranges: tuple[str, ...] = ()
    affinity: bool = False
    itp: str = "Cluster"


def service_object(svc: Svc) -> dict[str, Any]:
    ports = []
    for proto, node_port in svc.ports:
        port: dict[str, Any] = {"name": proto.lower(), "protocol": proto, "port": 80, "targetPort": PORT}
        if node_port:
            port["nodePort"] = node_port
        ports.append(port)
    spec: dict[str, Any] = {"clusterIP": svc.cluster_ip, "type": svc.type, "ports": ports}
    if svc.type != "ClusterIP":
        spec["externalTrafficPolicy"] = svc.etp
    if svc.itp != "Cluster":
        spec["internalTrafficPolicy"] = svc.itp
    if svc.external_ips:
        spec["externalIPs"] = list(svc.external_ips)
    if svc.source_ranges:
        spec["loadBalancerSourceRanges"] = list(svc.source_ranges)
    if svc.affinity:
        spec["sessionAffinity"] = "ClientIP"
    status = {"loadBalancer": {"ingress": [{"ip": svc.lb_ip}]}} if svc.lb_ip else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": NS},
        "spec": spec,
        "status": status,
    }


def slice_object(svc: Svc, topo: Topology) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc.name}-1", "namespace": NS, "labels": {"kubernetes.io/service-name": svc.name}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [topo.pod_ip(p)], "nodeName": topo.pod_node(p), "conditions": {"ready": True}}
            for p in svc.pods
        ],
        "ports": [{"name": proto.lower(), "protocol": proto, "port": PORT} for proto, _ in svc.ports],
    }


def objects(services: Iterable[Svc], topo: Topology) -> list[dict[str, Any]]:
    out = []
    for svc in services:
        out.append(service_object(svc))
        if svc.pods:
            out.append(slice_object(svc, topo))
    return out


def destinations(svc: Svc, kind: str) -> list[tuple[str, str, int]]:
    """(proto, dst, dport) of ``svc`` reached the way ``kind`` says: clusterip, nodeport (on
    node), nodeport2 (on node2), nodeport-cni0 (on node's cni0 address), localhost
    (127.0.0.1:NodePort), externalip, lb."""
    out: list[tuple[str, str, int]] = []
    for proto, node_port in svc.ports:
        p = proto.lower()
        if kind == "clusterip":
            out.append((p, svc.cluster_ip, 80))
        elif kind in ("nodeport", "nodeport2") and node_port:
            out.append((p, NODE_IP["node" if kind == "nodeport" else "node2"], node_port))
        elif kind == "nodeport-cni0" and node_port:
            out.append((p, CNI0_IP, node_port))
        elif kind == "localhost" and node_port:
            out.append((p, "127.0.0.1", node_port))
        elif kind == "externalip":
            out += [(p, ip, 80) for ip in svc.external_ips]
        elif kind == "lb" and svc.lb_ip:
            out.append((p, svc.lb_ip, 80))
    return out
