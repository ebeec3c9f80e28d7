"""kube-proxy's chain names — a contract, do not change.

Users grep ``iptables-save`` for ``KUBE-SVC-XPGD46QRK7WJZT7O``; tools and dashboards key on
these names; a clew node must be indistinguishable from a kube-proxy node. The hash is
``base32(sha256(servicePortName + protocol))[:16]`` (``+ endpoint`` for KUBE-SEP), with the
protocol in lower case and the endpoint as ``ip:port``. Pinned by tests with names taken
from kube-proxy's own expectations.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

# Chains with fixed names (kube-proxy pkg/proxy/iptables/proxier.go).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"

# Prefixes of the per-Service-port and per-endpoint chains clew owns in the nat table.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


@lru_cache(maxsize=65536)
def port_hash(spn: str, protocol: str) -> str:
    """The 16-character hash shared by KUBE-SVC/SVL/EXT/FW of one Service port.

    ``spn`` is ``ns/name`` or ``ns/name:portname``; ``protocol`` is ``tcp``/``udp``/``sctp``.
    """
    return _hash16(spn + protocol)


def svc_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVC-" + port_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVL-" + port_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    return "KUBE-EXT-" + port_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    return "KUBE-FW-" + port_hash(spn, protocol)


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-… for one endpoint (``ip:port``) of one Service port."""
    return "KUBE-SEP-" + _hash16(spn + protocol + endpoint)


def service_port_name(namespace: str, name: str, port_name: str) -> str:
    """kube-proxy's ServicePortName string: ``ns/name`` plus ``:port`` when the port is named."""
    return f"{namespace}/{name}:{port_name}" if port_name else f"{namespace}/{name}"
