"""KubeProxyConfiguration reading: kube-proxy's v1alpha1 field names and defaults, unknown fields
warned with their full path, invalid values refused naming the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from clew.model.fields import Invalid
from clew.model.proxy_config import DetectLocal, ProxyConfig, from_kube_proxy_config, parse_duration

HEADER = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"}

# kubeadm's kube-proxy ConfigMap as `kubeadm init` writes it: every field, zero values for "unset".
KUBEADM = yaml.safe_load(
    """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
"""
)


@dataclass(frozen=True)
class Good:
    name: str
    doc: dict[str, Any]
    want: dict[str, Any]  # ProxyConfig attributes that must have these values
    overrides: dict[str, Any] = field(default_factory=dict)


GOOD = [
    Good(
        "empty: kube-proxy's defaults",
        {},
        dict(
            mode="iptables",
            detect_local=DetectLocal.NONE,
            masquerade_bit=14,
            masquerade_all=False,
            localhost_nodeports=True,
            min_sync_period=1.0,
            sync_period=30.0,
            metrics_bind_address="127.0.0.1:10249",
            healthz_bind_address="0.0.0.0:10256",
            kubeconfig="",
            nodeport_addresses=(),
            node_name="localhost",
        ),
    ),
    Good(
        "the golden scenarios' config",
        {
            **HEADER,
            "mode": "iptables",
            "clusterCIDR": "10.0.0.0/8",
            "detectLocalMode": "ClusterCIDR",
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "masqueradeBit": 14},
            "nodePortAddresses": ["192.168.0.0/24", "2001:db8::/64"],
        },
        dict(
            cluster_cidrs=("10.0.0.0/8",),
            detect_local=DetectLocal.CLUSTER_CIDR,
            localhost_nodeports=False,
            nodeport_addresses=("192.168.0.0/24", "2001:db8::/64"),
        ),
    ),
    Good(
        "the lab's config: minSyncPeriod 0s means every change",
        {
            **HEADER,
            "mode": "iptables",
            "hostnameOverride": "node-a",
            "clusterCIDR": "10.244.0.0/16",
            "iptables": {"minSyncPeriod": "0s", "syncPeriod": "30s"},
        },
        dict(node_name="node-a", min_sync_period=0.0, sync_period=30.0, detect_local=DetectLocal.CLUSTER_CIDR),
    ),
    Good(
        "kubeadm's generated file: zero values are unset",
        KUBEADM,
        dict(
            mode="iptables",
            cluster_cidrs=("10.244.0.0/16",),
            detect_local=DetectLocal.CLUSTER_CIDR,
            masquerade_bit=14,
            localhost_nodeports=True,
            sync_period=30.0,
            min_sync_period=0.0,
            metrics_bind_address="127.0.0.1:10249",
            healthz_bind_address="0.0.0.0:10256",  # kube-proxy's default: load balancers probe it
            kubeconfig="/var/lib/kube-proxy/kubeconfig.conf",  # clientConnection.kubeconfig is honoured
        ),
    ),
    Good(
        "dual-stack clusterCIDR",
        {"clusterCIDR": "10.0.0.0/8, fd00::/48"},
        dict(cluster_cidrs=("10.0.0.0/8", "fd00::/48")),
    ),
    Good("host bits cleared", {"clusterCIDR": "10.1.2.3/16"}, dict(cluster_cidrs=("10.1.0.0/16",))),
    Good(
        "detectLocal.clusterCIDRs (internal config) joins clusterCIDR",
        {"clusterCIDR": "10.0.0.0/8", "detectLocal": {"clusterCIDRs": ["10.0.0.0/8", "fd00::/48"]}},
        dict(cluster_cidrs=("10.0.0.0/8", "fd00::/48"), detect_local=DetectLocal.CLUSTER_CIDR),
    ),
    Good(
        "NodeCIDR detection",
        {"detectLocalMode": "NodeCIDR", "clusterCIDR": "10.0.0.0/8"},
        dict(detect_local=DetectLocal.NODE_CIDR),
    ),
    Good(
        "BridgeInterface detection",
        {"detectLocalMode": "BridgeInterface", "detectLocal": {"bridgeInterface": "cni0"}},
        dict(detect_local=DetectLocal.BRIDGE_INTERFACE, bridge_interface="cni0"),
    ),
    Good(
        "InterfaceNamePrefix detection",
        {"detectLocalMode": "InterfaceNamePrefix", "detectLocal": {"interfaceNamePrefix": "veth"}},
        dict(detect_local=DetectLocal.INTERFACE_NAME_PREFIX, interface_name_prefix="veth"),
    ),
    Good(
        "Go durations",
        {"iptables": {"minSyncPeriod": "1.5s", "syncPeriod": "1m30s"}},
        dict(min_sync_period=1.5, sync_period=90.0),
    ),
    Good("milliseconds", {"iptables": {"minSyncPeriod": "250ms"}}, dict(min_sync_period=0.25)),
    Good("a bare 0 is a duration", {"iptables": {"minSyncPeriod": "0"}}, dict(min_sync_period=0.0)),
    Good(
        "top-level periods (internal config) when the section has none",
        {"syncPeriod": "10s", "minSyncPeriod": "2s"},
        dict(sync_period=10.0, min_sync_period=2.0),
    ),
    Good(
        "the section wins over top-level periods",
        {"syncPeriod": "10s", "iptables": {"syncPeriod": "20s"}},
        dict(sync_period=20.0),
    ),
    Good(
        "mode nftables reads the nftables section",
        {
            "mode": "nftables",
            "nftables": {"masqueradeBit": 10, "masqueradeAll": True, "syncPeriod": "45s", "minSyncPeriod": "2s"},
        },
        dict(mode="nftables", masquerade_bit=10, masquerade_all=True, sync_period=45.0, min_sync_period=2.0),
    ),
    Good("linux.masqueradeAll (internal config)", {"linux": {"masqueradeAll": True}}, dict(masquerade_all=True)),
    Good(
        "iptables.masqueradeAll wins over linux.masqueradeAll",
        {"linux": {"masqueradeAll": True}, "iptables": {"masqueradeAll": False}},
        dict(masquerade_all=False),
    ),
    Good("masqueradeBit 0", {"iptables": {"masqueradeBit": 0}}, dict(masquerade_bit=0, masquerade_mark="0x1")),
    Good("masqueradeBit 31", {"iptables": {"masqueradeBit": 31}}, dict(masquerade_bit=31)),
    Good(
        "bind addresses: a bare IP gets the default port",
        {"metricsBindAddress": "0.0.0.0", "healthzBindAddress": "::"},
        dict(metrics_bind_address="0.0.0.0:10249", healthz_bind_address="[::]:10256"),
    ),
    Good(
        "bind addresses with ports",
        {"metricsBindAddress": "127.0.0.1:9999", "healthzBindAddress": "[::1]:10256"},
        dict(metrics_bind_address="127.0.0.1:9999", healthz_bind_address="[::1]:10256"),
    ),
    Good(
        "hostnameOverride trimmed and lower-cased",
        {"hostnameOverride": " Node-A.example "},
        dict(node_name="node-a.example"),
    ),
    Good("nodePortAddresses 'primary'", {"nodePortAddresses": ["primary"]}, dict(nodeport_addresses=())),
    Good("flags win", {"hostnameOverride": "from-file"}, dict(node_name="from-flag"), dict(node_name="from-flag")),
    Good(
        "None overrides are ignored",
        {"hostnameOverride": "from-file"},
        dict(node_name="from-file"),
        dict(node_name=None),
    ),
]


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_reads(case: Good) -> None:
    config = from_kube_proxy_config(case.doc, **case.overrides)
    got = {key: getattr(config, key) for key in case.want}
    assert got == case.want


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(KUBEADM, id="kubeadm"),
        pytest.param({**HEADER, "mode": "iptables", "clusterCIDR": "10.0.0.0/8"}, id="plain"),
        pytest.param(
            {"iptables": {"syncPeriod": "30s"}, "nftables": {"syncPeriod": "30s"}}, id="same value in both sections"
        ),
        pytest.param({"ipvs": {"scheduler": "rr", "syncPeriod": "5s"}}, id="ipvs section in another mode"),
    ],
)
def test_no_warnings(doc: dict[str, Any]) -> None:
    assert from_kube_proxy_config(doc).warnings == ()


WARNS = [
    ("unknown top-level field", {"proxyMode": "iptables"}, "unknown field 'proxyMode'"),
    ("unknown iptables field", {"iptables": {"minSyncPeriodd": "1s"}}, "unknown field 'iptables.minSyncPeriodd'"),
    (
        "unknown nftables field",
        {"nftables": {"localhostNodePorts": True}},
        "unknown field 'nftables.localhostNodePorts'",
    ),
    ("unknown detectLocal field", {"detectLocal": {"bridge": "cni0"}}, "unknown field 'detectLocal.bridge'"),
    ("unknown linux field", {"linux": {"masqAll": True}}, "unknown field 'linux.masqAll'"),
    ("unknown linux.conntrack field", {"linux": {"conntrack": {"max": 1}}}, "unknown field 'linux.conntrack.max'"),
    ("unknown conntrack field", {"conntrack": {"maxPerCPU": 1}}, "unknown field 'conntrack.maxPerCPU'"),
    ("unknown clientConnection field", {"clientConnection": {"QPS": 5}}, "unknown field 'clientConnection.QPS'"),
    ("unknown logging field", {"logging": {"level": 2}}, "unknown field 'logging.level'"),
    ("unknown ipvs field", {"ipvs": {"strictArp": True}}, "unknown field 'ipvs.strictArp'"),
    ("unknown winkernel field", {"winkernel": {"dsr": True}}, "unknown field 'winkernel.dsr'"),
    ("conntrack setting not applied", {"conntrack": {"maxPerCore": 32768}}, "conntrack.maxPerCore is not applied"),
    (
        "linux.conntrack setting not applied",
        {"linux": {"conntrack": {"tcpEstablishedTimeout": "24h"}}},
        "linux.conntrack.tcpEstablishedTimeout is not applied",
    ),
    ("feature gates", {"featureGates": {"Foo": True}}, "featureGates are not read by clew"),
    (
        "the other mode's section",
        {"nftables": {"minSyncPeriod": "5s"}},
        "nftables.minSyncPeriod is not read in mode iptables: kube-proxy reads iptables.minSyncPeriod",
    ),
    (
        "the iptables section in mode nftables",
        {"mode": "nftables", "iptables": {"masqueradeBit": 10}},
        "iptables.masqueradeBit is not read in mode nftables: kube-proxy reads nftables.masqueradeBit",
    ),
    ("primary nodePortAddresses", {"nodePortAddresses": ["primary"]}, "nodePortAddresses 'primary'"),
    (
        "another version of kube-proxy's group",
        {"apiVersion": "kubeproxy.config.k8s.io/v1alpha2"},
        "apiVersion 'kubeproxy.config.k8s.io/v1alpha2'",
    ),
    (
        "ClusterCIDR detection without a CIDR",
        {"detectLocalMode": "ClusterCIDR"},
        "detectLocalMode ClusterCIDR without clusterCIDR",
    ),
]


@pytest.mark.parametrize(("name", "doc", "want"), WARNS, ids=[w[0] for w in WARNS])
def test_warns(name: str, doc: dict[str, Any], want: str) -> None:
    warnings = from_kube_proxy_config(doc).warnings
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(want), warnings


def test_warns_for_each_unknown_field_and_still_reads_the_rest() -> None:
    config = from_kube_proxy_config({"a": 1, "iptables": {"b": 2, "masqueradeBit": 12}, "detectLocal": {"c": 3}})
    assert [w.split("'")[1] for w in config.warnings] == ["a", "iptables.b", "detectLocal.c"]
    assert config.masquerade_bit == 12


def test_clusterCIDR_detection_without_cidr_is_off() -> None:
    assert from_kube_proxy_config({"detectLocalMode": "ClusterCIDR"}).detect_local is DetectLocal.NONE


BAD = [
    ("kind", {"kind": "KubeletConfiguration"}, "kind"),
    ("apiVersion of another group", {"apiVersion": "kubelet.config.k8s.io/v1beta1"}, "apiVersion"),
    ("not an object", {"iptables": "fast"}, "iptables"),
    ("nested not an object", {"linux": {"conntrack": []}}, "linux.conntrack"),
    ("mode ipvs", {"mode": "ipvs"}, "mode"),
    ("mode typo", {"mode": "iptable"}, "mode"),
    ("detectLocalMode", {"detectLocalMode": "PodCIDR"}, "detectLocalMode"),
    ("bridge interface required", {"detectLocalMode": "BridgeInterface"}, "detectLocal.bridgeInterface"),
    ("prefix required", {"detectLocalMode": "InterfaceNamePrefix"}, "detectLocal.interfaceNamePrefix"),
    ("bad clusterCIDR", {"clusterCIDR": "10.0.0.0/33"}, "clusterCIDR"),
    ("clusterCIDR not a string", {"clusterCIDR": ["10.0.0.0/8"]}, "clusterCIDR"),
    ("two IPv4 clusterCIDRs", {"clusterCIDR": "10.0.0.0/8,192.168.0.0/16"}, "clusterCIDR"),
    ("three clusterCIDRs", {"clusterCIDR": "10.0.0.0/8,fd00::/48,fd01::/48"}, "clusterCIDR"),
    (
        "bad detectLocal.clusterCIDRs",
        {"detectLocal": {"clusterCIDRs": ["10.0.0.0/8", "nope"]}},
        "detectLocal.clusterCIDRs[1]",
    ),
    ("bad nodePortAddresses", {"nodePortAddresses": ["10.0.0.0/8", "eth0"]}, "nodePortAddresses[1]"),
    ("primary with CIDRs", {"nodePortAddresses": ["10.0.0.0/8", "primary"]}, "nodePortAddresses[1]"),
    ("masqueradeBit too big", {"iptables": {"masqueradeBit": 32}}, "iptables.masqueradeBit"),
    ("masqueradeBit negative", {"iptables": {"masqueradeBit": -1}}, "iptables.masqueradeBit"),
    ("masqueradeBit a string", {"iptables": {"masqueradeBit": "14"}}, "iptables.masqueradeBit"),
    ("nftables masqueradeBit", {"mode": "nftables", "nftables": {"masqueradeBit": 40}}, "nftables.masqueradeBit"),
    ("masqueradeAll not a bool", {"iptables": {"masqueradeAll": "yes"}}, "iptables.masqueradeAll"),
    ("linux.masqueradeAll not a bool", {"linux": {"masqueradeAll": 1}}, "linux.masqueradeAll"),
    ("localhostNodePorts not a bool", {"iptables": {"localhostNodePorts": "true"}}, "iptables.localhostNodePorts"),
    ("duration without a unit", {"iptables": {"syncPeriod": "30"}}, "iptables.syncPeriod"),
    ("duration as a number", {"iptables": {"minSyncPeriod": 1}}, "iptables.minSyncPeriod"),
    ("duration with a bad unit", {"iptables": {"minSyncPeriod": "1sec"}}, "iptables.minSyncPeriod"),
    ("negative minSyncPeriod", {"iptables": {"minSyncPeriod": "-1s"}}, "iptables.minSyncPeriod"),
    ("negative syncPeriod", {"iptables": {"syncPeriod": "-30s"}}, "iptables.syncPeriod"),
    ("bad top-level syncPeriod", {"syncPeriod": "soon"}, "syncPeriod"),
    ("bad nftables period", {"mode": "nftables", "nftables": {"syncPeriod": "1d"}}, "nftables.syncPeriod"),
    (
        "minSyncPeriod above syncPeriod",
        {"iptables": {"minSyncPeriod": "1m", "syncPeriod": "30s"}},
        "iptables.syncPeriod",
    ),
    ("minSyncPeriod above the default syncPeriod", {"iptables": {"minSyncPeriod": "31s"}}, "iptables.syncPeriod"),
    (
        "minSyncPeriod above top-level syncPeriod",
        {"syncPeriod": "1s", "iptables": {"minSyncPeriod": "2s"}},
        "syncPeriod",
    ),
    ("metrics address host", {"metricsBindAddress": "localhost:10249"}, "metricsBindAddress"),
    ("metrics address port", {"metricsBindAddress": "127.0.0.1:http"}, "metricsBindAddress"),
    ("healthz port 0", {"healthzBindAddress": "0.0.0.0:0"}, "healthzBindAddress"),
    ("healthz port too big", {"healthzBindAddress": "0.0.0.0:65536"}, "healthzBindAddress"),
    ("healthz missing host", {"healthzBindAddress": ":10256"}, "healthzBindAddress"),
    ("IPv6 without brackets", {"healthzBindAddress": "fd00::1:10256x"}, "healthzBindAddress"),
    ("IPv6 with a zone", {"healthzBindAddress": "[fe80::1%eth0]:10256"}, "healthzBindAddress"),
    ("bind address not a string", {"healthzBindAddress": 10256}, "healthzBindAddress"),
    ("hostnameOverride not a node name", {"hostnameOverride": "node_1"}, "hostnameOverride"),
    ("hostnameOverride not a string", {"hostnameOverride": 7}, "hostnameOverride"),
]


@pytest.mark.parametrize(("name", "doc", "path"), BAD, ids=[b[0] for b in BAD])
def test_refuses_naming_the_field(name: str, doc: dict[str, Any], path: str) -> None:
    with pytest.raises(Invalid) as info:
        from_kube_proxy_config(doc)
    assert info.value.field == path, str(info.value)


def test_not_a_mapping() -> None:
    with pytest.raises(Invalid) as info:
        from_kube_proxy_config(["mode: iptables"])  # type: ignore[arg-type]
    assert info.value.field == "config"


def test_overrides_are_checked_too() -> None:
    with pytest.raises(Invalid) as info:
        from_kube_proxy_config({"iptables": {"syncPeriod": "10s"}}, min_sync_period=20.0)
    assert info.value.field == "iptables.syncPeriod"
    with pytest.raises(Invalid) as info:
        from_kube_proxy_config({}, sync_period=0.0)
    assert info.value.field == "iptables.syncPeriod"


def test_config_is_frozen_and_warnings_do_not_compare() -> None:
    a = from_kube_proxy_config({"x": 1})
    b = from_kube_proxy_config({})
    assert a == b and a.warnings and not b.warnings
    assert isinstance(a, ProxyConfig)


DURATIONS = [
    ("1s", 1.0),
    ("500ms", 0.5),
    ("1m30s", 90.0),
    ("1h", 3600.0),
    ("1.5h", 5400.0),
    (".5s", 0.5),
    ("100us", 1e-4),
    ("100µs", 1e-4),
    ("100ns", 1e-7),
    ("+2s", 2.0),
    ("0", 0.0),
    ("-0s", 0.0),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_go_durations(text: str | None, seconds: float | None) -> None:
    got = parse_duration(text, "f")
    assert got == pytest.approx(seconds) if seconds is not None else got is None


@pytest.mark.parametrize("text", ["1", "s", "1x", "1s2", "1 s", "1d", "--1s", "-1ms", " "])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_duration(text, "iptables.syncPeriod")
    assert info.value.field == "iptables.syncPeriod"
