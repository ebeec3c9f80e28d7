"""Kubernetes API objects (dicts) → model dataclasses, or a `Rejection` naming the bad field.

The contract: every object is converted on its own. A malformed object becomes one
`Rejection(object, field, reason)` and is otherwise absent; it never costs another object its
place. Valid objects that clew deliberately ignores (IPv6, headless Services, Services owned by
another proxy) are kept out with a note. IPv4 only for now.

What the API server would refuse is refused here too, since a folder (and the lab) bypasses it:
names longer or other than the API allows (a Service name is a DNS-1035 label), labels and
annotations it would not store (256 KiB of annotations in all), endpoint and external IPs that
reach the node rather than a pod (its ValidateEndpointIP: unspecified, loopback, link-local,
link-local multicast), EndpointSlices over 1000 endpoints or 100 ports. Across objects,
`build_snapshot` applies `model.admission` (service range, duplicate clusterIPs and NodePorts,
clusterIPs that are a Node's address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from clew.model import fields as f
from clew.model.admission import Admission, node_addresses
from clew.model.objects import (
    EndpointSlice,
    Node,
    Protocol,
    Rejection,
    Service,
    ServicePort,
    ServiceType,
    SliceEndpoint,
    SlicePort,
    Snapshot,
    TrafficPolicy,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, v1.DefaultClientIPServiceAffinitySeconds
MAX_SLICE_ENDPOINTS = 1000  # the API server's EndpointSlice limits
MAX_SLICE_PORTS = 100
MAX_ENDPOINT_ADDRESSES = 100
RANGE_UNKNOWN = "no ServiceCIDR object given: the service range is unknown, so clusterIPs are not checked against it"

_KINDS = {
    ("v1", "Service"): "Service",
    ("discovery.k8s.io/v1", "EndpointSlice"): "EndpointSlice",
    ("v1", "Node"): "Node",
    ("networking.k8s.io/v1", "ServiceCIDR"): "ServiceCIDR",
    ("networking.k8s.io/v1beta1", "ServiceCIDR"): "ServiceCIDR",
}


Invalid = f.Invalid


class Skip(Exception):
    """A valid object that clew does not act on; the message says why."""


def object_name(obj: Mapping[str, Any]) -> str:
    """``Kind ns/name`` (or ``Kind name``) for messages, from whatever the object has."""
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "object"
    raw_meta = obj.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    raw_name, raw_ns = meta.get("name"), meta.get("namespace")
    name = _shown(raw_name) if isinstance(raw_name, str) else "<unnamed>"
    ns = _shown(raw_ns) if isinstance(raw_ns, str) else None
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def _shown(text: str, limit: int = 64) -> str:
    """A name as a message shows it: a name too long for the API is cut, with its length."""
    return text if len(text) <= limit else f"{text[:40]}…({len(text)} characters)"


def build_snapshot(objects: Iterable[Any], *, ignored_kinds: Iterable[str] = (), admit: bool = True) -> Snapshot:
    """Convert every object; collect rejections and notes instead of raising.

    Objects of kinds in ``ignored_kinds`` (e.g. ``Deployment`` for the lab) pass silently;
    other unknown kinds are noted. With ``admit`` (the default) the cross-object rules of
    `model.admission` are applied; a source that converts objects one by one (the API watch)
    passes False and keeps an `Admission` of its own.
    """
    services: list[Service] = []
    slices: list[EndpointSlice] = []
    nodes: list[Node] = []
    cidrs: list[str] = []
    rejections: list[Rejection] = []
    notes: list[str] = []
    seen: set[tuple[str, str]] = set()
    ignored = set(ignored_kinds)
    for index, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            rejections.append(Rejection(f"document {index + 1}", "", "is not an object"))
            continue
        name = object_name(obj)
        api, kind_text = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api, str) or not isinstance(kind_text, str):
            rejections.append(Rejection(name, "kind" if not isinstance(kind_text, str) else "apiVersion",
                                        "must be a string"))  # fmt: skip
            continue
        kind = _KINDS.get((api, kind_text))
        if kind is None:
            if kind_text not in ignored:
                notes.append(f"{name}: apiVersion {obj.get('apiVersion')!r} kind {obj.get('kind')!r} ignored")
            continue
        try:
            converted: Service | EndpointSlice | Node
            if kind == "ServiceCIDR":
                cidrs.extend(service_cidr_from_kube(obj))
                continue
            if kind == "Service":
                converted = service_from_kube(obj)
            elif kind == "EndpointSlice":
                converted = slice_from_kube(obj)
            else:
                converted = node_from_kube(obj)
        except f.Invalid as bad:
            rejections.append(Rejection(name, bad.field, bad.reason))
            continue
        except Skip as why:
            notes.append(f"{name}: {why}")
            continue
        ident = (kind, getattr(converted, "key", getattr(converted, "name", "")))
        if ident in seen:
            rejections.append(Rejection(name, "metadata.name", "duplicate object; the first one is used"))
            continue
        seen.add(ident)
        if isinstance(converted, Service):
            services.append(converted)
        elif isinstance(converted, EndpointSlice):
            slices.append(converted)
        else:
            nodes.append(converted)
    service_cidrs = tuple(dict.fromkeys(cidrs))
    if admit and services:
        admission = Admission()
        ranges = tuple(ipaddress.IPv4Network(c) for c in service_cidrs) or None
        admission.update((), services, node_addresses(nodes), ranges)
        if admission.rejected:
            services = [s for s in services if s.key not in admission.rejected]
            rejections += admission.rejected.values()
        if ranges is None:
            notes.append(RANGE_UNKNOWN)
    return Snapshot(tuple(services), tuple(slices), tuple(nodes), tuple(rejections), tuple(notes), service_cidrs)


def _metadata(obj: Mapping[str, Any], *, namespaced: bool, dns1035: bool = False) -> tuple[str, str, Mapping[str, Any]]:
    """Namespace, name and labels, checked as the API server checks them (a Service's name is a
    DNS-1035 label, other names DNS-1123 subdomains), and the annotations' size."""
    meta = f.mapping(obj.get("metadata"), "metadata", required=True)
    name = (f.dns1035_label if dns1035 else f.dns_subdomain)(meta.get("name"), "metadata.name")
    namespace = ""
    if namespaced:
        namespace = f.dns_label(meta.get("namespace") or "default", "metadata.namespace")
    labels = f.label_map(meta.get("labels"), "metadata.labels")
    f.annotation_map(meta.get("annotations"), "metadata.annotations")
    return namespace, name, labels


def _created(obj: Mapping[str, Any]) -> str:
    """``metadata.creationTimestamp`` in UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (so that text order is
    time order, whatever offset the input used); "" when absent."""
    raw = f.string(f.mapping(obj.get("metadata"), "metadata").get("creationTimestamp"), "metadata.creationTimestamp")
    if not raw:
        return ""
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid("metadata.creationTimestamp", f"{raw!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise Invalid("metadata.creationTimestamp", f"{raw!r} has no time zone")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def service_cidr_from_kube(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """A ServiceCIDR's IPv4 range (``spec.cidrs``: one per IP family, as the API server has it)."""
    _metadata(obj, namespaced=False)
    spec = f.mapping(obj.get("spec"), "spec", required=True)
    raw = f.items(spec.get("cidrs"), "spec.cidrs")
    if not 1 <= len(raw) <= 2:
        raise Invalid("spec.cidrs", f"must hold one or two CIDRs (one per IP family), not {len(raw)}")
    nets = [f.cidr(c, f"spec.cidrs[{i}]") for i, c in enumerate(raw)]
    if len(nets) == 2 and nets[0].version == nets[1].version:
        raise Invalid("spec.cidrs", "two CIDRs must be of different IP families")
    return tuple(str(n) for n in nets if n.version == 4)


def _protocol(value: Any, path: str) -> Protocol:
    text = f.string(value, path, default="TCP")
    try:
        return Protocol(text)
    except ValueError:
        raise Invalid(path, f"{text!r} is not one of TCP, UDP, SCTP") from None


def _ipv4(value: Any, path: str) -> str | None:
    """The normalised IPv4 address, or None for a valid IPv6 address (skipped: IPv4 only)."""
    addr = f.ip(value, path)
    return str(addr) if addr.version == 4 else None


def _service_ports(spec: Mapping[str, Any]) -> tuple[ServicePort, ...]:
    ports: list[ServicePort] = []
    names: set[str] = set()
    raw_ports = f.items(spec.get("ports"), "spec.ports")
    for i, raw in enumerate(raw_ports):
        path = f"spec.ports[{i}]"
        p = f.mapping(raw, path, required=True)
        name = f.dns_label(p.get("name"), f"{path}.name", required=len(raw_ports) > 1)
        if name in names:
            raise Invalid(f"{path}.name", f"duplicate port name {name!r}")
        names.add(name)
        ports.append(
            ServicePort(
                name=name,
                protocol=_protocol(p.get("protocol"), f"{path}.protocol"),
                port=f.port(p.get("port"), f"{path}.port", required=True),
                node_port=f.port(p.get("nodePort"), f"{path}.nodePort", allow_zero=True),
            )
        )
    seen = {(p.protocol, p.port) for p in ports}
    if len(seen) != len(ports):
        raise Invalid("spec.ports", "two ports share the same protocol and port")
    return tuple(ports)


def _policy(value: Any, path: str) -> TrafficPolicy:
    text = f.string(value, path, default="Cluster")
    if text == "":
        return TrafficPolicy.CLUSTER
    try:
        return TrafficPolicy(text)
    except ValueError:
        raise Invalid(path, f"{text!r} is not Cluster or Local") from None


def _cluster_ip(spec: Mapping[str, Any]) -> str | None:
    """The IPv4 cluster IP; None when headless or when the Service has only IPv6 ones."""
    primary = f.string(spec.get("clusterIP"), "spec.clusterIP")
    if primary == "None":
        raise Skip("headless Service (clusterIP None): no proxy rules")
    candidates = [primary] if primary else []
    for i, value in enumerate(f.items(spec.get("clusterIPs"), "spec.clusterIPs")):
        text = f.string(value, f"spec.clusterIPs[{i}]", required=True)
        if text == "None":
            raise Skip("headless Service (clusterIPs None): no proxy rules")
        candidates.append(text)
    found = None
    for i, text in enumerate(candidates):
        v4 = _ipv4(text, "spec.clusterIP" if i == 0 and primary else "spec.clusterIPs")
        if v4 and found is None:
            found = v4
    return found


def service_from_kube(obj: Mapping[str, Any]) -> Service:
    namespace, name, labels = _metadata(obj, namespaced=True, dns1035=True)
    created = _created(obj)
    spec = f.mapping(obj.get("spec"), "spec", required=True)
    type_text = f.string(spec.get("type"), "spec.type", default="ClusterIP")
    try:
        svc_type = ServiceType(type_text)
    except ValueError:
        raise Invalid("spec.type", f"{type_text!r} is not a Service type") from None
    if svc_type is ServiceType.EXTERNAL_NAME:
        raise Skip("ExternalName Service: DNS only, no proxy rules")
    ports = _service_ports(spec)
    cluster_ip = _cluster_ip(spec)
    if cluster_ip is None and not f.string(spec.get("clusterIP"), "spec.clusterIP"):
        raise Invalid("spec.clusterIP", "is required (the API server allocates it)")
    if cluster_ip is None:
        raise Skip("no IPv4 cluster IP (IPv6 is not supported yet)")
    if (why := f.special_ip_reason(ipaddress.IPv4Address(cluster_ip))) is not None:
        raise Invalid("spec.clusterIP", f"{cluster_ip} {why}: no service range can hold it")
    external = [
        str(addr)
        for i, v in enumerate(f.items(spec.get("externalIPs"), "spec.externalIPs"))
        if (addr := f.non_special_ip(v, f"spec.externalIPs[{i}]")).version == 4
    ]
    status = f.mapping(obj.get("status"), "status")
    lb = f.mapping(status.get("loadBalancer"), "status.loadBalancer")
    lb_ips: list[str] = []
    for i, raw in enumerate(f.items(lb.get("ingress"), "status.loadBalancer.ingress")):
        path = f"status.loadBalancer.ingress[{i}]"
        ingress = f.mapping(raw, path, required=True)
        if ingress.get("ip") is None:
            continue  # hostname-only ingress: nothing to program
        v4 = _ipv4(ingress.get("ip"), f"{path}.ip")
        if f.string(ingress.get("ipMode"), f"{path}.ipMode", default="VIP") == "Proxy":
            continue  # KEP-1860: the load balancer proxies; traffic must go through it
        if v4:
            lb_ips.append(v4)
    ranges = []
    for i, v in enumerate(f.items(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")):
        net = f.cidr(v, f"spec.loadBalancerSourceRanges[{i}]")
        if net.version == 4:
            ranges.append(str(net))
    affinity = f.string(spec.get("sessionAffinity"), "spec.sessionAffinity", default="None")
    if affinity not in ("None", "ClientIP", ""):
        raise Invalid("spec.sessionAffinity", f"{affinity!r} is not None or ClientIP")
    timeout = None
    if affinity == "ClientIP":
        cfg = f.mapping(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
        client = f.mapping(cfg.get("clientIP"), "spec.sessionAffinityConfig.clientIP")
        timeout = f.integer(
            client.get("timeoutSeconds"),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            lo=1,
            hi=86400,
            default=DEFAULT_AFFINITY_TIMEOUT,
        )
    hcnp = f.port(spec.get("healthCheckNodePort"), "spec.healthCheckNodePort", allow_zero=True)
    return Service(
        namespace=namespace,
        name=name,
        type=svc_type,
        cluster_ip=cluster_ip,
        ports=ports,
        external_ips=tuple(external),
        load_balancer_ips=tuple(dict.fromkeys(lb_ips)),
        source_ranges=tuple(ranges),
        affinity_timeout=timeout,
        external_traffic_policy=_policy(spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy"),
        internal_traffic_policy=_policy(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy"),
        health_check_node_port=hcnp,
        proxy_name=labels.get(PROXY_NAME_LABEL),
        created=created,
    )


def _slice_endpoint(raw: Any, path: str) -> SliceEndpoint | None:
    ep = f.mapping(raw, path, required=True)
    addresses = f.items(ep.get("addresses"), f"{path}.addresses")
    if not 1 <= len(addresses) <= MAX_ENDPOINT_ADDRESSES:
        raise Invalid(f"{path}.addresses", f"must hold at least one address, at most {MAX_ENDPOINT_ADDRESSES}")
    checked = []
    for i, raw_address in enumerate(addresses):  # every one, as the API server checks them
        at = f"{path}.addresses[{i}]"
        addr = f.non_special_ip(raw_address, at)
        if addr.version != 4:
            raise Invalid(at, "is IPv6 in an IPv4 slice")
        checked.append(str(addr))
    address = checked[0]  # kube-proxy uses the first
    cond = f.mapping(ep.get("conditions"), f"{path}.conditions")
    hints = f.mapping(ep.get("hints"), f"{path}.hints")
    zones = tuple(
        f.string(f.mapping(z, f"{path}.hints.forZones[{i}]").get("name"), f"{path}.hints.forZones[{i}].name")
        for i, z in enumerate(f.items(hints.get("forZones"), f"{path}.hints.forZones"))
    )
    node_hints = tuple(
        f.string(f.mapping(n, f"{path}.hints.forNodes[{i}]").get("name"), f"{path}.hints.forNodes[{i}].name")
        for i, n in enumerate(f.items(hints.get("forNodes"), f"{path}.hints.forNodes"))
    )
    node = ep.get("nodeName")
    return SliceEndpoint(
        address=address,
        ready=f.boolean(cond.get("ready"), f"{path}.conditions.ready", default=True),
        serving=f.boolean(cond.get("serving"), f"{path}.conditions.serving", default=True),
        terminating=f.boolean(cond.get("terminating"), f"{path}.conditions.terminating", default=False),
        node_name=f.string(node, f"{path}.nodeName") if node is not None else None,
        zone=f.string(ep.get("zone"), f"{path}.zone") or None,
        zone_hints=zones,
        node_hints=node_hints,
    )


def slice_from_kube(obj: Mapping[str, Any]) -> EndpointSlice:
    namespace, name, labels = _metadata(obj, namespaced=True)
    service = labels.get(SERVICE_NAME_LABEL)
    if not service:
        raise Invalid(f"metadata.labels[{SERVICE_NAME_LABEL}]", "is required: it names the slice's Service")
    f.dns_label(service, f"metadata.labels[{SERVICE_NAME_LABEL}]")
    if HEADLESS_LABEL in labels:
        raise Skip("slice of a headless Service")
    family = f.string(obj.get("addressType"), "addressType", required=True)
    if family == "IPv6":
        raise Skip("IPv6 slice (IPv6 is not supported yet)")
    if family != "IPv4":
        raise Skip(f"addressType {family}: not proxied")
    ports: list[SlicePort] = []
    raw_ports = f.items(obj.get("ports"), "ports")
    if len(raw_ports) > MAX_SLICE_PORTS:
        raise Invalid("ports", f"{len(raw_ports)} ports, more than the API server's {MAX_SLICE_PORTS}")
    raw_endpoints = f.items(obj.get("endpoints"), "endpoints")
    if len(raw_endpoints) > MAX_SLICE_ENDPOINTS:
        raise Invalid("endpoints", f"{len(raw_endpoints)} endpoints, more than the API server's {MAX_SLICE_ENDPOINTS}")
    for i, raw in enumerate(raw_ports):
        path = f"ports[{i}]"
        p = f.mapping(raw, path, required=True)
        if p.get("port") is None or p.get("name") is None:
            continue  # kube-proxy ignores ports without a number or a name (nil, not "")
        ports.append(
            SlicePort(
                name=f.dns_label(p.get("name"), f"{path}.name", required=False),
                protocol=_protocol(p.get("protocol"), f"{path}.protocol"),
                port=f.port(p.get("port"), f"{path}.port", required=True),
            )
        )
    endpoints = []
    for i, raw in enumerate(raw_endpoints):
        ep = _slice_endpoint(raw, f"endpoints[{i}]")
        if ep is not None:
            endpoints.append(ep)
    annotations = f.mapping(f.mapping(obj.get("metadata"), "metadata").get("annotations"), "metadata.annotations")
    trigger = annotations.get(TRIGGER_TIME_ANNOTATION)
    return EndpointSlice(
        namespace=namespace,
        name=name,
        service_name=service,
        endpoints=tuple(endpoints),
        ports=tuple(ports),
        trigger_time=trigger if isinstance(trigger, str) else None,
    )


def node_from_kube(obj: Mapping[str, Any]) -> Node:
    _, name, labels = _metadata(obj, namespaced=False)
    meta = f.mapping(obj.get("metadata"), "metadata")
    annotations = f.mapping(meta.get("annotations"), "metadata.annotations")
    spec = f.mapping(obj.get("spec"), "spec")
    status = f.mapping(obj.get("status"), "status")
    internal: list[str] = []
    external: list[str] = []
    for i, raw in enumerate(f.items(status.get("addresses"), "status.addresses")):
        path = f"status.addresses[{i}]"
        a = f.mapping(raw, path, required=True)
        kind = f.string(a.get("type"), f"{path}.type", required=True)
        if kind in ("InternalIP", "ExternalIP"):
            v4 = _ipv4(a.get("address"), f"{path}.address")
            if v4:
                (internal if kind == "InternalIP" else external).append(v4)
    cidrs = [f.string(spec.get("podCIDR"), "spec.podCIDR")] if spec.get("podCIDR") else []
    cidrs += [f.string(c, f"spec.podCIDRs[{i}]") for i, c in enumerate(f.items(spec.get("podCIDRs"), "spec.podCIDRs"))]
    pod_cidrs = []
    for c in dict.fromkeys(cidrs):
        net = f.cidr(c, "spec.podCIDRs")
        if isinstance(net, ipaddress.IPv4Network):
            pod_cidrs.append(str(net))
    return Node(
        name=name,
        internal_ips=tuple(internal),
        external_ips=tuple(external),
        pod_cidrs=tuple(pod_cidrs),
        labels={str(k): str(v) for k, v in labels.items()},
        annotations={str(k): str(v) for k, v in annotations.items() if isinstance(v, str)},
    )
