"""What the lab's API server refuses: every object of a ``clew lab apply`` is checked before
anything changes, so a bad object costs one line naming it and the field, and the lab stays as
it was (no half-applied file, no traceback).

The rules are the API server's where the lab has the same notion (object names, labels,
annotation size, replicas, ports, the service range and NodePort range, allocated IPs and
ports) and the lab's own where it is smaller than a cluster (pods per node, Deployment name
length: a pod ``<deployment>-<i>`` is also a namespace and an echo server's host name).
Services are finally checked by `clew.model.from_kube.service_from_kube` — the code every
node agent runs — after the lab has allocated their cluster IP and NodePorts, so an object
the lab accepts is one the agents accept too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NAME_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # namespaces
NAME_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # Service names
NAME_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # label value / key name part
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME, plus ≥ 1 letter, ≤ 15
MAX_ANNOTATIONS_BYTES = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB
MAX_DEPLOYMENT_NAME = 63  # the lab's: pod <name>-<i> is a namespace name and a host name
MAX_PODS_PER_NODE = 40  # the lab's: every pod is a namespace and a Python echo server (~20 MB)
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")
API_VERSIONS = {"Deployment": "apps/v1", "Service": "v1"}


class ApplyError(Exception):
    """Objects the lab refuses; one line per problem, each naming the object and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Bad(Exception):
    """One bad field: ``field: reason``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")


def short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a 1 MB value is not echoed back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}…{text[-4:]} ({len(str(value))} characters)"


def object_label(obj: object, index: int) -> str:
    """``Kind ns/name`` for messages, whatever the object holds (``document N`` if nothing)."""
    if not isinstance(obj, Mapping):
        return f"document {index + 1}"
    raw_kind, raw_meta = obj.get("kind"), obj.get("metadata")
    kind = raw_kind if isinstance(raw_kind, str) and raw_kind else "object"
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    name, raw_ns = meta.get("name"), meta.get("namespace")
    ns = raw_ns if isinstance(raw_ns, str) and raw_ns else "default"
    if not isinstance(name, str) or not name:
        return f"{kind} (document {index + 1})"
    shown = name if len(name) <= 63 else f"{name[:40]}…({len(name)} characters)"
    return f"{kind} {ns[:63]}/{shown}"


def mapping(value: object, field: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None:
        if required:
            raise Bad(field, "Required value")
        return {}
    if not isinstance(value, Mapping):
        raise Bad(field, f"must be an object, not {type(value).__name__}")
    return value


def listing(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Bad(field, f"must be a list, not {type(value).__name__}")
    return value


def integer(value: object, field: str, lo: int, hi: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Bad(field, f"must be an integer, not {short(value)}")
    if not lo <= value <= hi:
        raise Bad(field, f"{value} is out of range {lo}-{hi}{why}")
    return value


def dns_name(value: object, field: str, pattern: re.Pattern[str], limit: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Bad(field, "Required value" if value in (None, "") else f"must be a string, not {short(value)}")
    if len(value) > limit:
        raise Bad(field, f"must be no more than {limit} characters ({len(value)} given)")
    if not pattern.match(value):
        raise Bad(field, f"{short(value)} is not a valid {what} (lowercase letters, digits and '-')")
    return value


def metadata(obj: Mapping[str, Any], name_rule: tuple[re.Pattern[str], int, str]) -> tuple[str, str]:
    """The object's (namespace, name), its labels and annotations checked as the API server does."""
    meta = mapping(obj.get("metadata"), "metadata", required=True)
    name = dns_name(meta.get("name"), "metadata.name", *name_rule)
    ns = meta.get("namespace")
    if ns is None or ns == "":
        ns = "default"
    dns_name(ns, "metadata.namespace", NAME_1123_LABEL, 63, "DNS-1123 label")
    labels(meta.get("labels"), "metadata.labels")
    annotations = mapping(meta.get("annotations"), "metadata.annotations")
    size = 0
    for key, value in annotations.items():
        label_key(key, "metadata.annotations")
        if not isinstance(value, str):
            raise Bad(f"metadata.annotations[{short(key)}]", f"must be a string, not {short(value)}")
        size += len(key.encode()) + len(value.encode())
    if size > MAX_ANNOTATIONS_BYTES:
        raise Bad("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes ({size} given)")
    return ns, name


def label_key(key: object, field: str) -> str:
    if not isinstance(key, str) or not key:
        raise Bad(field, f"key {short(key)} must be a non-empty string")
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not NAME_1123_SUBDOMAIN.match(prefix)):
        raise Bad(field, f"key {short(key)}: the prefix must be a DNS-1123 subdomain of at most 253 characters")
    if len(name) > 63 or not LABEL_NAME.match(name):
        raise Bad(field, f"key {short(key)}: the name must be at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends")
    return key


def labels(value: object, field: str) -> dict[str, str]:
    found = mapping(value, field)
    out = {}
    for key, v in found.items():
        label_key(key, field)
        if not isinstance(v, str):
            raise Bad(f"{field}[{short(key)}]", f"must be a string, not {short(v)}")
        if v and (len(v) > 63 or not LABEL_NAME.match(v)):
            raise Bad(f"{field}[{short(key)}]", f"{short(v)}: must be at most 63 of [A-Za-z0-9-_.], "
                                                "alphanumeric at both ends")  # fmt: skip
        out[key] = v
    return out


def kind_and_version(obj: Mapping[str, Any]) -> str:
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise Bad("kind", "Required value")
    if kind not in API_VERSIONS:
        raise Bad("kind", f"{short(kind)}: the lab applies Deployments and Services")
    if obj.get("apiVersion") != API_VERSIONS[kind]:
        raise Bad("apiVersion", f"{short(obj.get('apiVersion'))}: a {kind} is {API_VERSIONS[kind]}")
    return kind


def deployment(obj: Mapping[str, Any]) -> tuple[str, str, int, dict[str, str], dict[str, int]]:
    """(namespace, name, replicas, pod labels, container ports by name) of a Deployment."""
    ns, name = metadata(obj, (NAME_1123_SUBDOMAIN, MAX_DEPLOYMENT_NAME, "DNS-1123 subdomain"))
    spec = mapping(obj.get("spec"), "spec", required=True)
    replicas = spec.get("replicas", 1)
    replicas = integer(replicas, "spec.replicas", 0, 2**31 - 1)
    template = mapping(spec.get("template"), "spec.template", required=True)
    pod_labels = labels(mapping(template.get("metadata"), "spec.template.metadata").get("labels"),
                        "spec.template.metadata.labels")  # fmt: skip
    if not pod_labels:
        raise Bad("spec.template.metadata.labels", "Required value")
    selector = mapping(spec.get("selector"), "spec.selector")
    match = labels(selector.get("matchLabels"), "spec.selector.matchLabels")
    if any(pod_labels.get(k) != v for k, v in match.items()):
        raise Bad("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")
    ports: dict[str, int] = {}
    pod_spec = mapping(template.get("spec"), "spec.template.spec")
    for i, c in enumerate(listing(pod_spec.get("containers"), "spec.template.spec.containers")):
        where = f"spec.template.spec.containers[{i}]"
        container = mapping(c, where, required=True)
        for j, p in enumerate(listing(container.get("ports"), f"{where}.ports")):
            at = f"{where}.ports[{j}]"
            port = mapping(p, at, required=True)
            number = integer(port.get("containerPort"), f"{at}.containerPort", 1, 65535)
            port_name = port.get("name")
            if port_name is not None:
                port_name = _port_name(port_name, f"{at}.name")
            protocol = port.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                raise Bad(f"{at}.protocol", f"{short(protocol)} is not one of {', '.join(PROTOCOLS)}")
            ports[port_name or str(number)] = number
    return ns, name, replicas, pod_labels, ports or {"8080": 8080}


def _port_name(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise Bad(field, f"must be a string, not {short(value)}")
    if len(value) > 15 or not PORT_NAME.match(value) or not any(ch.isalpha() for ch in value) or "--" in value:
        raise Bad(field, f"{short(value)} is not a valid port name (IANA_SVC_NAME: ≤ 15 of a-z, 0-9, '-')")
    return value


def service_shape(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a Service, with the fields the lab's allocation reads checked."""
    ns, name = metadata(obj, (NAME_1035_LABEL, 63, "DNS-1035 label"))
    spec = mapping(obj.get("spec"), "spec", required=True)
    svc_type = spec.get("type", "ClusterIP")
    if svc_type not in SERVICE_TYPES:
        raise Bad("spec.type", f"{short(svc_type)} is not one of {', '.join(SERVICE_TYPES)}")
    ip = spec.get("clusterIP")
    if ip is not None and not isinstance(ip, str):
        raise Bad("spec.clusterIP", f"must be a string, not {short(ip)}")
    labels(spec.get("selector"), "spec.selector")
    for i, p in enumerate(listing(spec.get("ports"), "spec.ports")):
        port = mapping(p, f"spec.ports[{i}]", required=True)
        integer(port.get("port"), f"spec.ports[{i}].port", 1, 65535)
        node_port = port.get("nodePort")
        if node_port not in (None, 0):
            integer(node_port, f"spec.ports[{i}].nodePort", 30000, 32767, " (the NodePort range)")
    return ns, name
