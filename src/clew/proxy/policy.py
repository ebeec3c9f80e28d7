"""Decide once, render twice: per Service port, which endpoints which traffic may use.

This is kube-proxy's ``CategorizeEndpoints`` (pkg/proxy/topology.go) plus the booleans its
iptables and nftables proxiers derive from it, as plain data. The iptables and nftables
renderers only turn a `PortPolicy` into syntax, and ``clew explain`` reads the same objects to
say why an endpoint is or is not used.

How kube-proxy decides, per Service port:

1. Endpoints: the union of the Service's EndpointSlices whose port has the same name and
   protocol, keyed by ``ip:port`` and sorted by that string in byte order.
2. Cluster traffic (iTP=Cluster, or any external traffic with eTP=Cluster) uses *ready*
   endpoints available for the topology (zone/node hints); if none, the *serving and
   terminating* ones on any node.
3. Local traffic (iTP=Local, or external traffic with eTP=Local) uses ready endpoints on this
   node; if none, local serving+terminating ones.
4. No usable endpoint anywhere → REJECT; endpoints elsewhere but none local for a Local
   policy → DROP for that kind of traffic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from clew.model.objects import EndpointSlice, Protocol, Service, ServiceType, Snapshot, TrafficPolicy
from clew.model.proxy_config import ProxyConfig
from clew.proxy import names

LARGE_CLUSTER_ENDPOINTS = 1000  # kube-proxy's largeClusterEndpointsThreshold


class Topology(StrEnum):
    NONE = ""
    PREFER_SAME_ZONE = "PreferSameZone"
    PREFER_SAME_NODE = "PreferSameNode"


class FilterVerdict(StrEnum):
    REJECT = "REJECT"  # no usable endpoint anywhere: refuse at once (ICMP port unreachable)
    DROP = "DROP"  # Local policy without a local endpoint: silently drop


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    is_local: bool
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``ip:port``, kube-proxy's ``Endpoint.String()``."""
        return f"{self.ip}:{self.port}"

    @property
    def serving_terminating(self) -> bool:
        return self.serving and self.terminating


@dataclass(frozen=True, slots=True)
class PortPolicy:
    """Everything the renderers and the explainer need about one Service port."""

    namespace: str
    name: str
    port_name: str
    protocol: Protocol
    cluster_ip: str
    port: int
    node_port: int
    external_ips: tuple[str, ...]
    load_balancer_ips: tuple[str, ...]
    source_ranges: tuple[str, ...]
    health_check_node_port: int
    affinity_timeout: int | None
    internal_policy_local: bool
    external_policy_local: bool
    endpoints: tuple[Endpoint, ...]  # every known endpoint of this port, sorted by ip:port
    cluster_endpoints: tuple[Endpoint, ...]
    local_endpoints: tuple[Endpoint, ...]
    all_reachable: tuple[Endpoint, ...]  # each gets a KUBE-SEP chain
    has_endpoints: bool  # kube-proxy's hasAnyEndpoints: usable somewhere in the cluster
    topology: Topology

    @property
    def spn(self) -> str:
        return names.service_port_name(self.namespace, self.name, self.port_name)

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def proto(self) -> str:
        return self.protocol.lowercase

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_ips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)

    @property
    def uses_cluster_chain(self) -> bool:
        """KUBE-SVC-… exists."""
        return bool(self.cluster_endpoints) and self.uses_cluster_endpoints

    @property
    def uses_local_chain(self) -> bool:
        """KUBE-SVL-… exists."""
        return bool(self.local_endpoints) and self.uses_local_endpoints

    @property
    def has_internal_endpoints(self) -> bool:
        if self.internal_policy_local and not self.local_endpoints:
            return False
        return self.has_endpoints

    @property
    def has_external_endpoints(self) -> bool:
        if self.external_policy_local and not self.local_endpoints:
            return False
        return self.has_endpoints

    @property
    def uses_external_chain(self) -> bool:
        """KUBE-EXT-… exists: even without external endpoints, for the short-circuit rules."""
        return self.has_endpoints and self.externally_accessible

    @property
    def uses_firewall_chain(self) -> bool:
        """KUBE-FW-… exists: LoadBalancer IPs restricted by loadBalancerSourceRanges."""
        return self.has_endpoints and bool(self.load_balancer_ips) and bool(self.source_ranges)

    @property
    def internal_verdict(self) -> FilterVerdict | None:
        """What the filter table does to ClusterIP traffic that has nowhere to go."""
        if not self.has_endpoints:
            return FilterVerdict.REJECT
        return None if self.has_internal_endpoints else FilterVerdict.DROP

    @property
    def external_verdict(self) -> FilterVerdict | None:
        """What the filter table does to external traffic that has nowhere to go."""
        if not self.has_endpoints:
            return FilterVerdict.REJECT
        return None if self.has_external_endpoints else FilterVerdict.DROP

    @property
    def verdict_comment(self) -> str:
        if not self.has_endpoints:
            return f"{self.spn} has no endpoints"
        return f"{self.spn} has no local endpoints"


def categorize(
    endpoints: tuple[Endpoint, ...], policy: PortPolicy, node_name: str, zone: str | None
) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...], tuple[Endpoint, ...], bool, Topology]:
    """kube-proxy's CategorizeEndpoints: (cluster, local, all reachable, has any, topology)."""
    if not endpoints:
        return (), (), (), False, Topology.NONE
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    has_any = False
    mode = Topology.NONE
    if policy.uses_cluster_endpoints:
        mode = topology_mode(endpoints, node_name, zone)
        cluster = tuple(e for e in endpoints if e.ready and available_for_topology(e, mode, node_name, zone))
        if not cluster:
            cluster = tuple(e for e in endpoints if e.serving_terminating)
        has_any = bool(cluster)
    if not policy.uses_local_endpoints:
        return cluster, (), cluster, has_any, mode
    local_ready = local_terminating = False
    for e in endpoints:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.is_local
        elif e.serving_terminating:
            has_any = True
            local_terminating = local_terminating or e.is_local
    if local_ready:
        local = tuple(e for e in endpoints if e.is_local and e.ready)
    elif local_terminating:
        local = tuple(e for e in endpoints if e.is_local and e.serving_terminating)
    if not policy.uses_cluster_endpoints:
        return cluster, local, local, has_any, mode
    uses_terminating = not local_ready and local_terminating
    if mode is Topology.NONE and not uses_terminating:
        # cluster holds every ready endpoint, local only ready ones: cluster is the superset
        return cluster, local, cluster, has_any, mode
    merged = {e.key: e for e in (*cluster, *local)}
    return cluster, local, tuple(sorted(merged.values(), key=lambda e: e.key)), has_any, mode


def topology_mode(endpoints: Iterable[Endpoint], node_name: str, zone: str | None) -> Topology:
    """Hints apply only when every ready endpoint carries one and one names this node/zone."""
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return Topology.NONE
    if all(e.node_hints for e in ready) and any(node_name in e.node_hints for e in ready):
        return Topology.PREFER_SAME_NODE
    if all(e.zone_hints for e in ready) and zone and any(zone in e.zone_hints for e in ready):
        return Topology.PREFER_SAME_ZONE
    return Topology.NONE


def available_for_topology(e: Endpoint, mode: Topology, node_name: str, zone: str | None) -> bool:
    if mode is Topology.PREFER_SAME_NODE:
        return node_name in e.node_hints
    if mode is Topology.PREFER_SAME_ZONE:
        return zone in e.zone_hints
    return True


def _port_endpoints(slices: list[EndpointSlice], port_name: str, protocol: Protocol, node: str) -> tuple[Endpoint, ...]:
    found: dict[str, Endpoint] = {}
    for sl in slices:
        for sp in sl.ports:
            if sp.name != port_name or sp.protocol is not protocol:
                continue
            for se in sl.endpoints:
                ep = Endpoint(
                    ip=se.address,
                    port=sp.port,
                    is_local=se.node_name == node,
                    ready=se.ready,
                    serving=se.serving,
                    terminating=se.terminating,
                    node_name=se.node_name,
                    zone_hints=se.zone_hints,
                    node_hints=se.node_hints,
                )
                old = found.get(ep.key)
                # Overlapping slices: prefer a local entry, then a non-terminating one.
                if old is None or (ep.is_local and not old.is_local) or (old.terminating and not ep.terminating):
                    found[ep.key] = ep
    return tuple(sorted(found.values(), key=lambda e: e.key))


def _service_ports(svc: Service) -> Iterable[tuple[str, Protocol, int, int]]:
    for p in svc.ports:
        yield p.name, p.protocol, p.port, p.node_port


def slices_by_service(snapshot: Snapshot) -> dict[str, list[EndpointSlice]]:
    """Each Service's EndpointSlices (by ``ns/name``), in slice-name order."""
    by_service: dict[str, list[EndpointSlice]] = defaultdict(list)
    for sl in snapshot.slices:
        by_service[sl.service_key].append(sl)
    for slices in by_service.values():
        if len(slices) > 1:
            slices.sort(key=lambda s: s.name)
    return by_service


def node_zone(snapshot: Snapshot, config: ProxyConfig) -> str | None:
    return next((n.zone for n in snapshot.nodes if n.name == config.node_name), None)


def decide(snapshot: Snapshot, config: ProxyConfig) -> list[PortPolicy]:
    """One `PortPolicy` per proxied Service port, sorted by service port name and protocol."""
    by_service = slices_by_service(snapshot)
    zone = node_zone(snapshot, config)
    policies: list[PortPolicy] = []
    for svc in snapshot.services:
        policies.extend(decide_service(svc, by_service.get(svc.key, []), config, zone))
    policies.sort(key=lambda p: (p.spn, p.proto))
    return policies


def decide_service(
    svc: Service, slices: list[EndpointSlice], config: ProxyConfig, zone: str | None
) -> list[PortPolicy]:
    """The policies of one Service's ports: a function of the Service, its slices and the node
    alone, so a sync can decide again only for the Services that changed."""
    if svc.proxy_name is not None or svc.cluster_ip is None:
        return []
    accessible_type = svc.type in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER) or bool(svc.external_ips)
    external_local = accessible_type and svc.external_traffic_policy is TrafficPolicy.LOCAL
    lb_ips = svc.load_balancer_ips if svc.type is ServiceType.LOAD_BALANCER else ()
    needs_health_check = svc.type is ServiceType.LOAD_BALANCER and external_local
    policies: list[PortPolicy] = []
    for port_name, protocol, port, node_port in _service_ports(svc):
        endpoints = _port_endpoints(slices, port_name, protocol, config.node_name)
        draft = PortPolicy(
            namespace=svc.namespace,
            name=svc.name,
            port_name=port_name,
            protocol=protocol,
            cluster_ip=svc.cluster_ip,
            port=port,
            node_port=node_port if svc.type is not ServiceType.CLUSTER_IP else 0,
            external_ips=svc.external_ips,
            load_balancer_ips=lb_ips,
            source_ranges=svc.source_ranges,
            health_check_node_port=svc.health_check_node_port if needs_health_check else 0,
            affinity_timeout=svc.affinity_timeout,
            internal_policy_local=svc.internal_traffic_policy is TrafficPolicy.LOCAL,
            external_policy_local=external_local,
            endpoints=endpoints,
            cluster_endpoints=(),
            local_endpoints=(),
            all_reachable=(),
            has_endpoints=False,
            topology=Topology.NONE,
        )
        cluster, local, reachable, has_any, mode = categorize(endpoints, draft, config.node_name, zone)
        policies.append(
            replace(
                draft,
                cluster_endpoints=cluster,
                local_endpoints=local,
                all_reachable=reachable,
                has_endpoints=has_any,
                topology=mode,
            )
        )
    return policies


def large_cluster_mode(policies: Iterable[PortPolicy]) -> bool:
    """kube-proxy drops per-endpoint comments past 1000 endpoints to keep restores small."""
    return sum(len(p.endpoints) for p in policies) > LARGE_CLUSTER_ENDPOINTS
