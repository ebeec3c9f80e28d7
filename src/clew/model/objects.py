"""Frozen dataclasses for the Kubernetes objects clew acts on.

Only the fields that change packet paths are kept. IP addresses and CIDRs are stored as
normalised strings (``str(ipaddress.ip_address(x))``): `from_kube` has already validated them,
and renderers format tens of thousands of them, so re-parsing on every use would be waste.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"

    @property
    def lowercase(self) -> str:
        """The spelling iptables and kube-proxy's chain hashes use (``tcp``)."""
        return self.value.lower()


class ServiceType(StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


class TrafficPolicy(StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One entry of ``spec.ports``. ``name`` is "" for an unnamed port; ``node_port`` 0 for none."""

    name: str
    protocol: Protocol
    port: int
    node_port: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    """A v1 Service, reduced to what a node proxy needs.

    ``cluster_ip`` is the IPv4 cluster IP or None (headless, ExternalName, or IPv6-only).
    ``affinity_timeout`` is None without ClientIP session affinity.
    """

    namespace: str
    name: str
    type: ServiceType
    cluster_ip: str | None
    ports: tuple[ServicePort, ...]
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    affinity_timeout: int | None = None
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    internal_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    health_check_node_port: int = 0
    proxy_name: str | None = None  # label service.kubernetes.io/service-proxy-name: not ours
    # metadata.creationTimestamp in UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` ("" when absent): who keeps a
    # clusterIP or NodePort two Services ask for (`model.admission`); no effect on rules.
    created: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """One endpoint of an EndpointSlice. Only its first address is used, as kube-proxy does.

    Conditions carry kube-proxy's defaults already applied: ready and serving default to
    true when unset, terminating to false.
    """

    address: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str
    protocol: Protocol
    port: int


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """A discovery.k8s.io/v1 EndpointSlice of address type IPv4."""

    namespace: str
    name: str
    service_name: str
    endpoints: tuple[SliceEndpoint, ...]
    ports: tuple[SlicePort, ...]
    trigger_time: str | None = None  # endpoints.kubernetes.io/last-change-trigger-time

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.service_name}"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Node:
    """A v1 Node: its addresses, pod subnets, and the labels/annotations clew reads."""

    name: str
    internal_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=True)

    @property
    def zone(self) -> str | None:
        return self.labels.get("topology.kubernetes.io/zone")


@dataclass(frozen=True, slots=True)
class Rejection:
    """An object clew refused, and exactly why: ``kind ns/name``, the field path, the reason."""

    object: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.object}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the previous snapshot of the same source, when the source knows it
    (an API watch does): the keys (``ns/name``) of Services whose object or EndpointSlices
    changed or went away, whether any Node changed, and indexes to find them without a scan.
    With it a consumer does work proportional to the change, not to the cluster."""

    services: frozenset[str]
    nodes_changed: bool
    service_index: Mapping[str, Service] = field(default_factory=dict)
    slice_index: Mapping[str, tuple[EndpointSlice, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a render reads about the cluster; a pure value."""

    services: tuple[Service, ...] = ()
    slices: tuple[EndpointSlice, ...] = ()
    nodes: tuple[Node, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    notes: tuple[str, ...] = ()  # skipped but valid input (IPv6, headless, other proxies)
    service_cidrs: tuple[str, ...] = ()  # IPv4 service ranges of the ServiceCIDR objects given, if any
    changes: Changes | None = field(default=None, compare=False)  # a hint; the tuples are the truth
