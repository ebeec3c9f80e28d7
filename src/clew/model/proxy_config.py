"""The node proxy's settings: kube-proxy's ``KubeProxyConfiguration`` fields, typed.

`ProxyConfig` is part of every render's input (render reads no globals). `from_kube_proxy_config`
reads a ``kubeproxy.config.k8s.io/v1alpha1`` document the way kube-proxy does:

* Field names are v1alpha1's, nested as there (``iptables.minSyncPeriod``, ``nftables.*``,
  ``detectLocal.*``, ``conntrack.*``, ...). The internal config's ``linux.*``,
  ``detectLocal.clusterCIDRs`` and top-level ``syncPeriod``/``minSyncPeriod`` are read too.
* The mode's own section holds its settings: ``iptables.*`` in mode iptables, ``nftables.*`` in
  mode nftables (kube-proxy's v1alpha1 conversion); the other section is not read, and a value
  there that would have made a difference is a warning.
* A field kube-proxy does not know, at any depth, is a warning naming its full path
  (``iptables.minSyncPeriodd``); so is a kube-proxy setting clew does not act on, when it is set
  (``conntrack.maxPerCore``, ``featureGates``). kube-proxy fields clew ignores stay quiet at their
  zero values, so kubeadm's generated file loads cleanly.
* An invalid value raises `Invalid` naming the field, by kube-proxy's rules (its
  ``validation.go``): CIDRs, at most one per IP family; Go durations (``1m30s``), never negative;
  ``syncPeriod`` > 0 and ≥ ``minSyncPeriod``; ``masqueradeBit`` 0-31; bind addresses ``IP:port``
  (a bare IP gets the default port, as kube-proxy's defaulting does); ``hostnameOverride`` a
  DNS subdomain (lower-cased first, as kube-proxy does).
* Defaults are kube-proxy's: metrics on 127.0.0.1:10249, health on 0.0.0.0:10256 (cloud load
  balancers probe it on every node); ``clientConnection.kubeconfig`` names the API server's
  kubeconfig when the agent is given no ``--kubeconfig`` (the flag wins, as kube-proxy's does).
"""

from __future__ import annotations

import ipaddress
import re
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
    healthz_bind_address: str = "0.0.0.0:10256"  # kube-proxy's: load balancers probe every node's
    kubeconfig: str = field(default="", compare=False)  # clientConnection.kubeconfig (the agent's API server)
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


API_VERSION = "kubeproxy.config.k8s.io/v1alpha1"
KIND = "KubeProxyConfiguration"
METRICS_PORT = 10249
HEALTHZ_PORT = 10256

# kube-proxy's fields (k8s.io/kube-proxy/config/v1alpha1 types.go), nested as there: a dict is an
# object whose keys are checked, None a value (or a free-form map such as featureGates).
_Schema = Mapping[str, "_Schema | None"]


def _fields(names: str) -> dict[str, None]:
    return dict.fromkeys(names.split())


_SYNC = ("syncPeriod", "minSyncPeriod")
_CONNTRACK = _fields(
    "maxPerCore min tcpEstablishedTimeout tcpCloseWaitTimeout tcpBeLiberal udpTimeout udpStreamTimeout"
)
_SCHEMA: _Schema = {
    **_fields(
        """apiVersion kind featureGates hostnameOverride bindAddress healthzBindAddress metricsBindAddress
        bindAddressHardFail enableProfiling showHiddenMetricsForVersion mode detectLocalMode clusterCIDR
        nodePortAddresses oomScoreAdj configSyncPeriod portRange windowsRunAsService syncPeriod minSyncPeriod"""
    ),
    "clientConnection": _fields("kubeconfig acceptContentTypes contentType qps burst"),
    "logging": _fields("format flushFrequency verbosity vmodule options"),
    "iptables": _fields("masqueradeBit masqueradeAll localhostNodePorts syncPeriod minSyncPeriod"),
    "nftables": _fields("masqueradeBit masqueradeAll syncPeriod minSyncPeriod"),
    "ipvs": _fields("scheduler excludeCIDRs strictARP tcpTimeout tcpFinTimeout udpTimeout syncPeriod minSyncPeriod"),
    "winkernel": _fields("networkName sourceVip enableDSR rootHnsEndpointName forwardHealthCheckVip"),
    "detectLocal": _fields("bridgeInterface interfaceNamePrefix clusterCIDRs"),
    "conntrack": _CONNTRACK,
    "linux": {"masqueradeAll": None, "oomScoreAdj": None, "conntrack": _CONNTRACK},
}


def _unknown_fields(doc: Mapping[str, Any], schema: _Schema, prefix: str = "") -> list[str]:
    """A warning per key that kube-proxy does not know, at any depth, naming its full path."""
    found = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if key not in schema:
            found.append(f"unknown field {path!r}: kube-proxy has no such field; ignored")
            continue
        sub = schema[key]
        if sub is not None and value is not None:
            found += _unknown_fields(f.mapping(value, path), sub, f"{path}.")
    return found


def _unapplied(doc: Mapping[str, Any]) -> list[str]:
    """Warnings for kube-proxy settings that clew does not act on, when they are set."""
    found = []
    for path in ("conntrack", "linux.conntrack"):
        section: Mapping[str, Any] = doc
        parts = path.split(".")
        for depth, part in enumerate(parts, 1):
            section = f.mapping(section.get(part), ".".join(parts[:depth]))
        for key, value in section.items():
            if key in _CONNTRACK and value not in (None, 0, False, "", "0", "0s"):
                found.append(f"{path}.{key} is not applied by clew: set the node's nf_conntrack sysctls yourself")
    if f.mapping(doc.get("featureGates"), "featureGates"):
        found.append("featureGates are not read by clew")
    return found


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")  # Go accepts both micro signs
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, path: str) -> float | None:
    """A Go duration (``1s``, ``500ms``, ``1m30s``, ``0``) in seconds; None when unset or empty.

    Go's ``time.ParseDuration`` grammar; a negative duration is refused, as kube-proxy's
    validation refuses every negative period."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise f.Invalid(path, f"{value!r} is not a duration: write it with a unit, like 1s or 500ms")
    text = value.strip()
    negative = text.startswith("-")
    body = text[1:] if text[:1] in "+-" else text
    total, pos = 0.0, 0
    if body != "0":
        while pos < len(body) or not body:
            m = _DURATION_PART.match(body, pos)
            if m is None:
                raise f.Invalid(path, f"{value!r} is not a duration like 1s, 500ms or 1m30s")
            total, pos = total + float(m[1]) * _UNITS[m[2]], m.end()
    if negative and total:
        raise f.Invalid(path, f"{value!r} must not be negative")
    return total


def parse_bind_address(value: Any, path: str, default_port: int) -> str | None:
    """``IP:port`` (``[IPv6]:port``) as kube-proxy's validateHostPort wants it; a bare IP gets
    ``default_port`` (kube-proxy's AppendPortIfNeeded). None when unset or empty."""
    text = f.string(value, path).strip()
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
        port = str(default_port)
    except ValueError:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise f.Invalid(path, f"{text!r} must be IP:port, like 0.0.0.0:{default_port}") from None
        if ":" in host:
            if not (host.startswith("[") and host.endswith("]")):
                raise f.Invalid(path, f"{text!r}: an IPv6 address needs brackets, like [::]:{default_port}") from None
            host = host[1:-1]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise f.Invalid(path, f"{text!r}: {host!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise f.Invalid(path, f"{text!r}: an address with a zone (%{ip.scope_id}) cannot be bound")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise f.Invalid(path, f"{text!r}: {port!r} is not a port (1-65535)")
    return f"[{ip}]:{int(port)}" if ip.version == 6 else f"{ip}:{int(port)}"


def _header(doc: Mapping[str, Any]) -> list[str]:
    """``kind`` and ``apiVersion``, when given, must be kube-proxy's; another version is read with a warning."""
    kind = f.string(doc.get("kind"), "kind")
    if kind and kind != KIND:
        raise f.Invalid("kind", f"{kind!r} is not {KIND}")
    api = f.string(doc.get("apiVersion"), "apiVersion")
    if api and api.partition("/")[0] != API_VERSION.partition("/")[0]:
        raise f.Invalid("apiVersion", f"{api!r} is not {API_VERSION}")
    return [f"apiVersion {api!r}: clew reads {API_VERSION}'s field names"] if api and api != API_VERSION else []


def mode_of(doc: Mapping[str, Any]) -> str:
    """The document's ``mode`` (default iptables); `Invalid` naming ``mode`` for one clew does not
    run (``ipvs``, ``kernelspace``): what ``clew render`` and the agent both refuse."""
    return _mode(doc)


def _mode(doc: Mapping[str, Any]) -> str:
    mode = f.string(doc.get("mode"), "mode") or "iptables"
    if mode not in ("iptables", "nftables"):
        raise f.Invalid("mode", f"{mode!r} is not supported (iptables or nftables)")
    return mode


def _hostname(doc: Mapping[str, Any]) -> str:
    """``hostnameOverride`` trimmed and lower-cased (kube-proxy's GetHostname); a Node name."""
    name = f.string(doc.get("hostnameOverride"), "hostnameOverride").strip().lower()
    return f.dns_subdomain(name, "hostnameOverride") if name else ""


def _one_per_family(cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network], path: str) -> list[str]:
    if len(cidrs) > 2 or (len(cidrs) == 2 and cidrs[0].version == cidrs[1].version):
        shown = ",".join(map(str, cidrs))
        raise f.Invalid(path, f"{shown}: at most one CIDR per IP family (dual-stack: one IPv4, one IPv6)")
    return [str(c) for c in cidrs]


def _cluster_cidrs(doc: Mapping[str, Any], detect: Mapping[str, Any]) -> tuple[str, ...]:
    """v1alpha1's comma-separated ``clusterCIDR`` and the internal ``detectLocal.clusterCIDRs``."""
    text = f.string(doc.get("clusterCIDR"), "clusterCIDR")
    cidrs = _one_per_family([f.cidr(c, "clusterCIDR") for c in text.split(",") if c.strip()], "clusterCIDR")
    path = "detectLocal.clusterCIDRs"
    listed = [f.cidr(c, f"{path}[{i}]") for i, c in enumerate(f.items(detect.get("clusterCIDRs"), path))]
    return tuple(dict.fromkeys([*cidrs, *_one_per_family(listed, path)]))


def _detect_mode(doc: Mapping[str, Any], cidrs: tuple[str, ...]) -> DetectLocal:
    text = f.string(doc.get("detectLocalMode"), "detectLocalMode")
    try:
        mode = DetectLocal(text)
    except ValueError:
        choices = ", ".join(m.value for m in DetectLocal if m.value)
        raise f.Invalid("detectLocalMode", f"{text!r} is not one of {choices}") from None
    if mode is DetectLocal.NONE and cidrs:
        return DetectLocal.CLUSTER_CIDR  # kube-proxy's default mode when a cluster CIDR is set
    return mode


def _nodeport_addresses(doc: Mapping[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """CIDRs, or ``primary`` alone (kube-proxy: the node's primary IPs; clew: every local one)."""
    path = "nodePortAddresses"
    entries = f.items(doc.get(path), path)
    if "primary" in entries:
        if len(entries) > 1:
            raise f.Invalid(f"{path}[{entries.index('primary')}]", "'primary' cannot be combined with CIDRs")
        return (), [f"{path} 'primary': clew accepts NodePorts on every local address, not only the primary IPs"]
    return tuple(str(f.cidr(c, f"{path}[{i}]")) for i, c in enumerate(entries)), []


def _sync_periods(doc: Mapping[str, Any], mode: str) -> dict[str, tuple[float, str]]:
    """``syncPeriod`` and ``minSyncPeriod`` with the path each came from: the mode's section, else
    the internal config's top-level field, else kube-proxy's default (30s, 1s).

    A ``syncPeriod`` of 0 is unset, as kube-proxy's defaulting has it (kubeadm writes ``0s``). A
    ``minSyncPeriod`` of 0 is kept: "sync on every change", the flag's meaning (kube-proxy's
    defaulting would turn a file's ``0s`` into 1s; the lab relies on 0)."""
    section = f.mapping(doc.get(mode), mode)
    found: dict[str, tuple[float, str]] = {}
    for key, default in (("syncPeriod", 30.0), ("minSyncPeriod", 1.0)):
        found[key] = (default, f"{mode}.{key}")
        for path, raw in ((f"{mode}.{key}", section.get(key)), (key, doc.get(key))):
            value = parse_duration(raw, path)
            if value is not None and (value > 0 or key == "minSyncPeriod"):
                found[key] = (value, path)
                break
    return found


def _other_section(doc: Mapping[str, Any], mode: str, used: Mapping[str, Any]) -> list[str]:
    """kube-proxy reads only the mode's section: say so where the other one sets a different value."""
    other = "nftables" if mode == "iptables" else "iptables"
    own, theirs = f.mapping(doc.get(mode), mode), f.mapping(doc.get(other), other)
    notes = []
    for key, value in used.items():
        raw = theirs.get(key)
        if key in own or raw is None:
            continue
        parsed = parse_duration(raw, f"{other}.{key}") if key in _SYNC else raw
        if parsed and parsed != value:  # zero values are kube-proxy's "unset" (kubeadm writes them)
            notes.append(f"{other}.{key} is not read in mode {mode}: kube-proxy reads {mode}.{key}")
    return notes


def _checked(config: ProxyConfig, paths: Mapping[str, str]) -> ProxyConfig:
    """Rules over several fields, on the final values (flags included)."""
    sync, low = config.sync_period, config.min_sync_period
    if sync <= 0:
        raise f.Invalid(paths["syncPeriod"], f"{sync:g}s must be greater than 0")
    if low < 0:
        raise f.Invalid(paths["minSyncPeriod"], f"{low:g}s must not be negative")
    if low > sync:
        raise f.Invalid(paths["syncPeriod"], f"{sync:g}s must be at least {paths['minSyncPeriod']} ({low:g}s)")
    if config.detect_local is DetectLocal.BRIDGE_INTERFACE and not config.bridge_interface:
        raise f.Invalid("detectLocal.bridgeInterface", "is required with detectLocalMode BridgeInterface")
    if config.detect_local is DetectLocal.INTERFACE_NAME_PREFIX and not config.interface_name_prefix:
        raise f.Invalid("detectLocal.interfaceNamePrefix", "is required with detectLocalMode InterfaceNamePrefix")
    if config.detect_local is DetectLocal.CLUSTER_CIDR and not config.cluster_cidrs:
        # kube-proxy's behaviour: ClusterCIDR mode without a CIDR detects nothing (and says so)
        note = "detectLocalMode ClusterCIDR without clusterCIDR: pod traffic cannot be told apart"
        return replace(config, detect_local=DetectLocal.NONE, warnings=(*config.warnings, note))
    return config


def from_kube_proxy_config(doc: Mapping[str, Any], **overrides: Any) -> ProxyConfig:
    """Read a KubeProxyConfiguration document; keyword overrides (from flags) win."""
    doc = f.mapping(doc, "config")
    warnings = [*_header(doc), *_unknown_fields(doc, _SCHEMA), *_unapplied(doc)]
    mode = _mode(doc)
    section, ipt = f.mapping(doc.get(mode), mode), f.mapping(doc.get("iptables"), "iptables")
    linux, detect = f.mapping(doc.get("linux"), "linux"), f.mapping(doc.get("detectLocal"), "detectLocal")
    client = f.mapping(doc.get("clientConnection"), "clientConnection")
    cidrs = _cluster_cidrs(doc, detect)
    nodeport_addresses, notes = _nodeport_addresses(doc)
    periods = _sync_periods(doc, mode)
    masq_all = f.boolean(linux.get("masqueradeAll"), "linux.masqueradeAll", default=False)
    used = {
        "masqueradeAll": f.boolean(section.get("masqueradeAll"), f"{mode}.masqueradeAll", default=masq_all),
        "masqueradeBit": f.integer(section.get("masqueradeBit"), f"{mode}.masqueradeBit", lo=0, hi=31, default=14),
        **{key: value for key, (value, _) in periods.items()},
    }
    metrics = parse_bind_address(doc.get("metricsBindAddress"), "metricsBindAddress", METRICS_PORT)
    healthz = parse_bind_address(doc.get("healthzBindAddress"), "healthzBindAddress", HEALTHZ_PORT)
    values: dict[str, Any] = dict(
        node_name=_hostname(doc) or "localhost",
        mode=mode,
        detect_local=_detect_mode(doc, cidrs),
        cluster_cidrs=cidrs,
        bridge_interface=f.string(detect.get("bridgeInterface"), "detectLocal.bridgeInterface"),
        interface_name_prefix=f.string(detect.get("interfaceNamePrefix"), "detectLocal.interfaceNamePrefix"),
        masquerade_all=used["masqueradeAll"],
        masquerade_bit=used["masqueradeBit"],
        localhost_nodeports=f.boolean(ipt.get("localhostNodePorts"), "iptables.localhostNodePorts", default=True),
        nodeport_addresses=nodeport_addresses,
        min_sync_period=used["minSyncPeriod"],
        sync_period=used["syncPeriod"],
        metrics_bind_address=metrics or f"127.0.0.1:{METRICS_PORT}",
        healthz_bind_address=healthz or f"0.0.0.0:{HEALTHZ_PORT}",
        kubeconfig=f.string(client.get("kubeconfig"), "clientConnection.kubeconfig").strip(),
        warnings=(*warnings, *notes, *_other_section(doc, mode, used)),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _checked(ProxyConfig(**values), {key: path for key, (_, path) in periods.items()})
