"""``/configz``: the effective proxy configuration, as kube-proxy serves it.

kube-proxy registers its internal ``KubeProxyConfiguration`` under the name
``kubeproxy.config.k8s.io`` and serves ``{"kubeproxy.config.k8s.io": <config>}`` on its metrics
address. The internal type has no JSON tags, so the keys are Go's field names (``Mode``,
``IPTables``, ``SyncPeriod``) and durations are Go's ``Duration.String()`` (``30s``, ``1m30s``,
``500ms``). clew serves the same shape with the fields it acts on, at the values it uses
(defaults and flags applied); the ones it does not act on (conntrack, ipvs, logging, …) are left
out rather than shown at values clew does not apply.
"""

from __future__ import annotations

from typing import Any

from clew.model.proxy_config import ProxyConfig

CONFIGZ_NAME = "kubeproxy.config.k8s.io"

_UNITS = (("h", 3600 * 10**9), ("m", 60 * 10**9))
_SMALL = (("ms", 10**6), ("µs", 10**3), ("ns", 1))


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String()``: ``0s``, ``500ms``, ``1.5s``, ``1h0m0s``."""
    ns = round(seconds * 10**9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        for unit, size in _SMALL:
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    text, started = "", False
    for unit, size in _UNITS:
        if ns >= size or started:
            text += f"{ns // size}{unit}"
            ns %= size
            started = True
    return sign + text + _decimal(ns, 10**9) + "s"


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def configz(config: ProxyConfig) -> dict[str, Any]:
    """The ``/configz`` document of ``config``."""
    effective: dict[str, Any] = {
        "ClientConnection": {"Kubeconfig": config.kubeconfig},
        "HostnameOverride": config.node_name,
        "BindAddress": config.node_ips[0] if config.node_ips else "",
        "HealthzBindAddress": config.healthz_bind_address,
        "MetricsBindAddress": config.metrics_bind_address,
        "Mode": config.mode,
        "Linux": {"MasqueradeAll": config.masquerade_all},
        "IPTables": {"MasqueradeBit": config.masquerade_bit, "LocalhostNodePorts": config.localhost_nodeports},
        "NFTables": {"MasqueradeBit": config.masquerade_bit},
        "DetectLocalMode": config.detect_local.value,
        "DetectLocal": {
            "BridgeInterface": config.bridge_interface,
            "ClusterCIDRs": list(config.cluster_cidrs) or None,
            "InterfaceNamePrefix": config.interface_name_prefix,
        },
        "NodePortAddresses": list(config.nodeport_addresses) or None,
        "SyncPeriod": go_duration(config.sync_period),
        "MinSyncPeriod": go_duration(config.min_sync_period),
    }
    return {CONFIGZ_NAME: effective}
