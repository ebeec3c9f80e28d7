"""The agent in nftables mode: the syncer it picks, its metrics (kube-proxy's nftables names;
none of the iptables-only ones), the agent loop driving an `NftSyncer`, and ``--cleanup`` /
the mode switch's removal of iptables mode's and the pod network's rules (through the fake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clew.agent.loop import Agent
from clew.agent.metrics import Observer, ProxyMetrics
from clew.fakes.iptables import FakeIptables
from clew.fakes.nft import FakeNft
from clew.model.proxy_config import ProxyConfig
from clew.proxy import cleanup
from clew.proxy.nftables.sync import NftSyncer
from clew.proxy.runner import SyncRunner
from clew.proxy.sync import SyncResult
from clew.sources.files import FolderSource

IPTABLES_MODE_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:FLANNEL-FWD - [0:0]
:OTHER - [0:0]
-A INPUT -j OTHER
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A OUTPUT -m conntrack --ctstate NEW -j KUBE-SERVICES
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT
-A OTHER -p tcp --dport 22 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-X
-A KUBE-POSTROUTING -j RETURN
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:KUBE-PROXY-CANARY - [0:0]
COMMIT
"""


def families(m: ProxyMetrics) -> set[str]:
    body, _ = m.exposition()
    return {f.name for f in text_string_to_metric_families(body.decode())}


def test_nftables_mode_has_kube_proxys_nftables_metrics_and_no_iptables_ones() -> None:
    names = families(ProxyMetrics(mode="nftables"))
    p = "kubeproxy_sync_proxy_rules_"
    assert {f"{p}nftables_sync_failures", f"{p}nftables_cleanup_failures", f"{p}last_timestamp_seconds"} <= names
    assert not any("iptables" in n for n in names)
    assert not any("nftables" in n for n in families(ProxyMetrics()))


def test_observer_counts_nftables_failures_cleanup_failures_and_rejected_ports() -> None:
    obs = Observer(node_name="n1", sync_period=30.0, mode="nftables", clock=lambda: 1000.0)
    m = obs.metrics
    obs.sync_finished(SyncResult(False, 0.1, 0, 0, "boom", full=False, cleanup_failed=True), full=False)
    bad = (("ns/s:bad/tcp", "cannot"),)
    obs.sync_finished(SyncResult(True, 0.1, 1, 5, rejected=bad), full=True)
    obs.sync_finished(SyncResult(True, 0.1, 1, 5, rejected=bad), full=False)  # still there: counted once
    body = m.exposition()[0].decode()
    assert 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="IPv4"} 1.0' in body
    assert 'kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv4"} 1.0' in body
    assert 'clew_rejected_objects_total{kind="Service",reason="nftables"} 1.0' in body
    assert 'kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1000.0' in body


def test_the_agent_loop_runs_the_nftables_syncer(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
           "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "p", "port": 80}]}}  # fmt: skip
    (objects / "svc.json").write_text(json.dumps(svc))
    k = FakeNft()
    gen = [0]
    left: list[int] = []
    proxy = NftSyncer("fake", ProxyConfig(node_name="n1"), kernel=k, generation=lambda: gen[0] + len(k.log),
                      leave_iptables_mode=lambda: left.append(1) or ["filter/KUBE-SERVICES"])  # fmt: skip
    now = [100.0]
    obs = Observer(node_name="n1", sync_period=30.0, mode="nftables")
    agent = Agent(FolderSource(objects), proxy, SyncRunner(1.0, 30.0), tmp_path / "status.json",
                  clock=lambda: now[0], obs=obs)  # fmt: skip
    assert agent.turn()
    assert json.loads((tmp_path / "status.json").read_text())["ok"]
    assert k.elements("no-endpoint-reject") == {"10.96.0.9 . tcp . 80": None}
    assert left == [1]  # the first (full) sync left iptables mode, once
    k.run("delete table ip clew")  # someone deletes the table
    now[0] += 2
    assert agent.turn()  # the tamper check finds it and resyncs in full at once
    assert k.elements("no-endpoint-reject") == {"10.96.0.9 . tcp . 80": None} and left == [1]


def test_removal_payload_removes_kube_chains_and_their_jumps_only() -> None:
    k = FakeIptables.from_save(IPTABLES_MODE_RULES)
    removed = cleanup.remove_iptables_chains(k)
    assert "filter/FORWARD jump to KUBE-FORWARD" in removed and "nat/KUBE-SVC-X" in removed
    dump = k.dump()
    assert "KUBE-" not in dump
    assert "-A INPUT -j OTHER" in dump and "FLANNEL-FWD" in dump and "-s 10.0.0.0/8 -j MASQUERADE" in dump
    assert cleanup.remove_iptables_chains(k) == []  # idempotent: nothing left to remove


def test_cleanup_node_removes_both_modes_and_the_pod_network() -> None:
    k = FakeIptables.from_save(IPTABLES_MODE_RULES)
    asked: list[list[str]] = []
    real = k.nft
    k.nft = lambda args: asked.append(list(args)) or real(args)  # type: ignore[method-assign]
    cleanup.cleanup_node(k)
    dump = k.dump()
    assert "KUBE-" not in dump and "FLANNEL-" not in dump
    assert "-A INPUT -j OTHER" in dump and "-A OTHER -p tcp" in dump
    assert asked == [["delete", "table", "ip", "clew"], ["delete", "table", "ip", "kube-proxy"],
                     ["delete", "table", "ip6", "kube-proxy"]]  # fmt: skip


def test_cleanup_reports_an_nft_failure() -> None:
    k = FakeIptables()
    k.nft = lambda args: type("C", (), {"returncode": 1, "stderr": "Error: Operation not permitted\n"})()  # type: ignore[method-assign]
    with pytest.raises(cleanup.KernelError, match="Operation not permitted"):
        cleanup.cleanup_node(k)
