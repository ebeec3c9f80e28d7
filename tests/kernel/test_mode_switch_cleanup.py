"""Mode switch and ``clew agent --cleanup`` in throwaway namespaces: starting in nftables mode
removes iptables mode's KUBE-* chains and jumps (and keeps others' rules); starting in iptables
mode deletes the ``ip clew`` table; ``--cleanup`` leaves no KUBE-*, FLANNEL-* or clew rule of
either mode and exits 0, and a one-line error with exit 1 when it cannot."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator

import pytest
from topology import unique_prefix

from clew.kernel import netns
from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.podnet import masquerade
from clew.proxy.syncer import syncer_for

pytestmark = pytest.mark.kernel

CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",), detect_local=DetectLocal.CLUSTER_CIDR,
                     cluster_cidrs=("10.244.0.0/16",))  # fmt: skip


def snapshot() -> Snapshot:
    return build_snapshot([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
         "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                  "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": "web-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "n1"}],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
    ])  # fmt: skip


@pytest.fixture
def node() -> Iterator[str]:
    name = unique_prefix("sy") + "-node"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def save(ns: str) -> str:
    return netns.run(ns, ["iptables-save"]).stdout


def tables(ns: str) -> str:
    return netns.run(ns, ["nft", "list", "tables"]).stdout


def mode(name: str) -> ProxyConfig:
    from dataclasses import replace

    return replace(CONFIG, mode=name)


def test_switching_modes_removes_the_other_modes_rules(node: str) -> None:
    netns.run(node, ["iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
    assert syncer_for(node, mode("iptables")).sync(snapshot()).ok
    assert "KUBE-SERVICES" in save(node)
    r = syncer_for(node, mode("nftables")).sync(snapshot())
    assert r.ok and r.full and not r.cleanup_failed
    text = save(node)
    assert "KUBE-" not in text and "--dport 22 -j ACCEPT" in text  # others' rules stay
    assert "table ip clew" in tables(node)
    assert syncer_for(node, mode("iptables")).sync(snapshot()).ok  # and back
    assert "table ip clew" not in tables(node) and "KUBE-SERVICES" in save(node)


def test_cleanup_removes_both_modes_and_the_pod_network(node: str) -> None:
    netns.run(node, ["iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
    assert syncer_for(node, mode("iptables")).sync(snapshot()).ok
    masquerade.apply(node, ipaddress.IPv4Network("10.244.0.0/16"), ipaddress.IPv4Network("10.244.1.0/24"))
    nft = syncer_for(node, mode("nftables"))
    nft.leave_iptables_mode = None  # type: ignore[attr-defined]  # keep both modes' rules loaded
    assert nft.sync(snapshot()).ok
    assert "KUBE-SERVICES" in save(node) and "FLANNEL-POSTRTG" in save(node) and "table ip clew" in tables(node)
    done = subprocess.run([sys.executable, "-m", "clew", "agent", "--cleanup", "--netns", node],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "removed nft table ip clew" in done.stdout
    text = save(node)
    assert "KUBE-" not in text and "FLANNEL-" not in text and "--dport 22 -j ACCEPT" in text
    assert "clew" not in tables(node)
    again = subprocess.run([sys.executable, "-m", "clew", "agent", "--cleanup", "--netns", node],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert again.returncode == 0 and again.stdout == ""  # nothing left: idempotent


def test_cleanup_of_a_missing_namespace_is_one_line_and_exit_1() -> None:
    done = subprocess.run([sys.executable, "-m", "clew", "agent", "--cleanup", "--netns", "sy-none-such"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "sy-none-such" in done.stderr, done.stderr
