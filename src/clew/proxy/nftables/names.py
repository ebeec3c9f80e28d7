"""kube-proxy's nftables-mode names for per-Service-port chains and sets — a contract.

kube-proxy (pkg/proxy/nftables/proxier.go) names a Service port's chains
``service-<H8>-<ns>/<svc>/<proto>/<port name>`` (``local-``, ``external-``, ``firewall-`` share
the suffix) and an endpoint's ``endpoint-<H8>-<ns>/<svc>/<proto>/<port name>__<ip>/<port>``
(``affinity-`` for its ClientIP-affinity set), where ``H8 = base32(sha256(<the rest>))[:8]``.
IPv6 colons become dots (``:`` is not allowed in a chain name); a name longer than 240
characters (never, in practice) is cut to 237 and ends in ``...``.

clew uses these names for the few Services that get chains of their own (ClientIP affinity),
so a person who knows kube-proxy's table recognises them; the benchmark uses them to build
kube-proxy's own layout. Pinned by tests with names from kube-proxy's test expectations.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

NAME_LENGTH_MAX = 256  # knftables.NameLengthMax
PREFIX_LENGTH_MAX = 16  # kube-proxy's chainNamePrefixLengthMax (prefix incl. its "-")
BASE_LENGTH_MAX = NAME_LENGTH_MAX - PREFIX_LENGTH_MAX  # 240

SERVICE = "service-"  # cluster-policy endpoints
LOCAL = "local-"  # local-policy endpoints
EXTERNAL = "external-"  # external destinations (NodePort, externalIPs, LB IPs)
FIREWALL = "firewall-"  # loadBalancerSourceRanges
ENDPOINT = "endpoint-"  # one endpoint
AFFINITY = "affinity-"  # one endpoint's ClientIP-affinity set


def hash_and_truncate(name: str) -> str:
    """``<H8>-<name>``, cut to 240 characters with ``...`` (kube-proxy's hashAndTruncate)."""
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    out = digest[:8] + "-" + name
    if len(out) > BASE_LENGTH_MAX:
        out = out[: BASE_LENGTH_MAX - 3] + "..."
    return out


@lru_cache(maxsize=65536)
def port_base(namespace: str, name: str, protocol: str, port_name: str) -> str:
    """``<H8>-ns/svc/proto/portname`` (``ULMVA6XW-ns1/svc1/tcp/p80``); ``protocol`` in lower case,
    ``port_name`` the Service port's name ("" for an unnamed port)."""
    return hash_and_truncate(f"{namespace}/{name}/{protocol}/{port_name}")


def endpoint_base(namespace: str, name: str, protocol: str, port_name: str, ip: str, port: int) -> str:
    """``<H8>-ns/svc/proto/portname__ip/port`` (``5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80``)."""
    return hash_and_truncate(f"{namespace}/{name}/{protocol}/{port_name}__{ip.replace(':', '.')}/{port}")


def service_chain(namespace: str, name: str, protocol: str, port_name: str) -> str:
    return SERVICE + port_base(namespace, name, protocol, port_name)


def local_chain(namespace: str, name: str, protocol: str, port_name: str) -> str:
    return LOCAL + port_base(namespace, name, protocol, port_name)


def external_chain(namespace: str, name: str, protocol: str, port_name: str) -> str:
    return EXTERNAL + port_base(namespace, name, protocol, port_name)


def firewall_chain(namespace: str, name: str, protocol: str, port_name: str) -> str:
    return FIREWALL + port_base(namespace, name, protocol, port_name)


def endpoint_chain(namespace: str, name: str, protocol: str, port_name: str, ip: str, port: int) -> str:
    return ENDPOINT + endpoint_base(namespace, name, protocol, port_name, ip, port)


def affinity_set(namespace: str, name: str, protocol: str, port_name: str, ip: str, port: int) -> str:
    return AFFINITY + endpoint_base(namespace, name, protocol, port_name, ip, port)


def is_service_chain(name: str) -> bool:
    """Per-Service and per-endpoint chains always contain a ``/``; fixed chains never do."""
    return "/" in name
