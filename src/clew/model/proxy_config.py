"""The node proxy's settings: kube-proxy's ``KubeProxyConfiguration`` fields, typed.

`ProxyConfig` is part of every render's input (render reads no globals). `from_kube_proxy_config`
reads a ``kubeproxy.config.k8s.io/v1alpha1`` document; unknown fields are reported as warnings,
invalid values raise `Invalid` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from clew.model import fields as f


class DetectLocal(StrEnum):
    """How kube-proxy tells pod traffic from the rest (``--detect-local-mode``)."""

    NONE = ""
    CLUSTER_CIDR = "ClusterCIDR"
    NODE_CIDR = "NodeCIDR"
    BRIDGE_INTERFACE = "BridgeInterface"
    INTERFACE_NAME_PREFIX = "InterfaceNamePrefix"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    node_name: str = "localhost"
    node_ips: tuple[str, ...] = ()
    mode: str = "iptables"
    detect_local: DetectLocal = DetectLocal.NONE
    cluster_cidrs: tuple[str, ...] = ()
    node_pod_cidrs: tuple[str, ...] = ()  # for NodeCIDR detection: the node's spec.podCIDRs
    bridge_interface: str = ""
    interface_name_prefix: str = ""
    masquerade_all: bool = False
    masquerade_bit: int = 14
    localhost_nodeports: bool = True
    nodeport_addresses: tuple[str, ...] = ()  # CIDRs; empty = every local address
    random_fully: bool = True  # iptables >= 1.6.2 (Debian 12 ships 1.8.9)
    nfacct: bool = False  # kube-proxy adds nfacct counters when the kernel has them; clew does not
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    metrics_bind_address: str = "127.0.0.1:10249"
    healthz_bind_address: str = "127.0.0.1:10256"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def masquerade_mark(self) -> str:
        """``0x4000`` for bit 14: kube-proxy's fwmark, as iptables prints it."""
        return hex(1 << self.masquerade_bit)

    @property
    def local_cidrs(self) -> tuple[str, ...]:
        """The CIDRs whose sources count as pods (ClusterCIDR or NodeCIDR detection)."""
        if self.detect_local is DetectLocal.CLUSTER_CIDR:
            return self.cluster_cidrs
        if self.detect_local is DetectLocal.NODE_CIDR:
            return self.node_pod_cidrs
        return ()


_KNOWN = {
    "apiVersion",
    "kind",
    "mode",
    "clusterCIDR",
    "hostnameOverride",
    "detectLocalMode",
    "detectLocal",
    "iptables",
    "linux",
    "nodePortAddresses",
    "metricsBindAddress",
    "healthzBindAddress",
    "bindAddress",
    "clientConnection",
    "conntrack",
    "featureGates",
    "ipvs",
    "nftables",
    "winkernel",
    "configSyncPeriod",
    "oomScoreAdj",
    "portRange",
    "showHiddenMetricsForVersion",
    "enableProfiling",
    "logging",
    "bindAddressHardFail",
    "syncPeriod",
    "minSyncPeriod",
}


def _duration(value: Any, path: str, default: float) -> float:
    """A Go duration string (``1s``, ``500ms``, ``1m30s``) in seconds."""
    text = f.string(value, path)
    if not text:
        return default
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, number, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = next((u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i)), None)
        if unit is None or not number:
            raise f.Invalid(path, f"{text!r} is not a duration like 1s or 500ms")
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise f.Invalid(path, f"{text!r} is missing a unit (s, ms, m, h)")
    return total


def from_kube_proxy_config(doc: Mapping[str, Any], **overrides: Any) -> ProxyConfig:
    """Read a KubeProxyConfiguration document; keyword overrides (from flags) win."""
    doc = f.mapping(doc, "config")
    warnings = [f"config field {k!r} is not used by clew" for k in doc if k not in _KNOWN]
    ipt = f.mapping(doc.get("iptables"), "iptables")
    linux = f.mapping(doc.get("linux"), "linux")
    detect = f.mapping(doc.get("detectLocal"), "detectLocal")
    cidrs_text = f.string(doc.get("clusterCIDR"), "clusterCIDR")
    cidrs = [str(f.cidr(c, "clusterCIDR")) for c in cidrs_text.split(",") if c.strip()]
    cidrs += [
        str(f.cidr(c, f"detectLocal.clusterCIDRs[{i}]"))
        for i, c in enumerate(f.items(detect.get("clusterCIDRs"), "detectLocal.clusterCIDRs"))
    ]
    mode_text = f.string(doc.get("detectLocalMode"), "detectLocalMode")
    try:
        detect_mode = DetectLocal(mode_text)
    except ValueError:
        choices = ", ".join(m.value for m in DetectLocal if m.value)
        raise f.Invalid("detectLocalMode", f"{mode_text!r} is not one of {choices}") from None
    if detect_mode is DetectLocal.NONE and cidrs:
        detect_mode = DetectLocal.CLUSTER_CIDR  # kube-proxy's default mode when a cluster CIDR is set
    mode = f.string(doc.get("mode"), "mode", default="iptables") or "iptables"
    if mode not in ("iptables", "nftables"):
        raise f.Invalid("mode", f"{mode!r} is not supported (iptables or nftables)")
    masq_all = f.boolean(linux.get("masqueradeAll"), "linux.masqueradeAll", default=False)
    masq_all = f.boolean(ipt.get("masqueradeAll"), "iptables.masqueradeAll", default=masq_all)
    nodeport_addresses = tuple(
        str(f.cidr(c, f"nodePortAddresses[{i}]"))
        for i, c in enumerate(f.items(doc.get("nodePortAddresses"), "nodePortAddresses"))
        if c != "primary"
    )
    values: dict[str, Any] = dict(
        node_name=f.string(doc.get("hostnameOverride"), "hostnameOverride") or "localhost",
        mode=mode,
        detect_local=detect_mode,
        cluster_cidrs=tuple(dict.fromkeys(cidrs)),
        bridge_interface=f.string(detect.get("bridgeInterface"), "detectLocal.bridgeInterface"),
        interface_name_prefix=f.string(detect.get("interfaceNamePrefix"), "detectLocal.interfaceNamePrefix"),
        masquerade_all=masq_all,
        masquerade_bit=f.integer(ipt.get("masqueradeBit"), "iptables.masqueradeBit", lo=0, hi=31, default=14),
        localhost_nodeports=f.boolean(ipt.get("localhostNodePorts"), "iptables.localhostNodePorts", default=True),
        nodeport_addresses=nodeport_addresses,
        min_sync_period=_duration(ipt.get("minSyncPeriod") or doc.get("minSyncPeriod"), "iptables.minSyncPeriod", 1.0),
        sync_period=_duration(ipt.get("syncPeriod") or doc.get("syncPeriod"), "iptables.syncPeriod", 30.0),
        metrics_bind_address=f.string(doc.get("metricsBindAddress"), "metricsBindAddress") or "127.0.0.1:10249",
        healthz_bind_address=f.string(doc.get("healthzBindAddress"), "healthzBindAddress") or "127.0.0.1:10256",
        warnings=tuple(warnings),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = ProxyConfig(**values)
    if config.detect_local is DetectLocal.BRIDGE_INTERFACE and not config.bridge_interface:
        raise f.Invalid("detectLocal.bridgeInterface", "is required with detectLocalMode BridgeInterface")
    if config.detect_local is DetectLocal.INTERFACE_NAME_PREFIX and not config.interface_name_prefix:
        raise f.Invalid("detectLocal.interfaceNamePrefix", "is required with detectLocalMode InterfaceNamePrefix")
    if config.detect_local is DetectLocal.CLUSTER_CIDR and not config.cluster_cidrs:
        # kube-proxy's behaviour: ClusterCIDR mode without a CIDR detects nothing (and says so)
        note = "detectLocalMode ClusterCIDR without clusterCIDR: pod traffic cannot be told apart"
        config = replace(config, detect_local=DetectLocal.NONE, warnings=(*config.warnings, note))
    return config
