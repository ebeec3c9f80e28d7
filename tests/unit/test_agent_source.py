"""The agent against sources that go away, ``--once`` that must fail when the sync did, the rule
counts the metrics promise, and ``/configz`` — without a kernel (fake syncers)."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the test API server and its helpers
from kube_fake_server import FakeApiServer
from test_kube_source import eps, fast_backoff, node, svc

from clew.agent.loop import Agent
from clew.agent.metrics import Observer
from clew.agent.servers import Servers
from clew.model.configz import go_duration
from clew.model.objects import Snapshot
from clew.model.proxy_config import ProxyConfig, from_kube_proxy_config
from clew.proxy import sync as proxy_sync
from clew.proxy.runner import SyncRunner
from clew.proxy.sync import ProxySyncer, SyncResult
from clew.sources.files import FolderSource, write_atomic
from clew.sources.kube import KubeSource
from clew.sources.kubeconfig import ClusterConfig

SERVICE = svc("web", "10.96.0.10")
NODE = node("n1", "192.168.0.11")


@dataclass
class FakeProxy(ProxySyncer):
    calls: list[list[str]] = field(default_factory=list)
    fail: str | None = None

    def sync(self, snapshot: Snapshot) -> SyncResult:
        self.calls.append(sorted(s.name for s in snapshot.services))
        return SyncResult(self.fail is None, 0.01, len(snapshot.services), 7, self.fail)

    def intact(self) -> bool:
        return True


def make_agent(source: Any, tmp_path: Path, **kw: Any) -> tuple[Agent, FakeProxy, Observer]:
    obs = Observer(node_name="n1", sync_period=30.0)
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"), **kw)
    agent = Agent(source, proxy, SyncRunner(0.0, 30.0), tmp_path / "status.json", obs=obs)
    return agent, proxy, obs


def test_a_missing_folder_syncs_nothing_and_fails_healthz(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    objects = tmp_path / "objects"
    agent, proxy, obs = make_agent(FolderSource(objects), tmp_path)
    for _ in range(5):
        assert not agent.turn()
    assert proxy.calls == []  # not "no Services": no sync at all
    assert obs.health.healthz()[0] == 503 and obs.health.livez()[0] == 200
    assert [r.message for r in caplog.records if "source unavailable" in r.message] == [
        f"source unavailable, keeping the last rules: {objects}: cannot read the objects folder: "
        "No such file or directory"
    ]  # once, not once a turn
    write_atomic(objects / "nodes" / "n1.json", json.dumps(NODE))
    assert agent.turn() and proxy.calls == [[]]
    assert agent.problem is None and obs.health.healthz()[0] == 200


def test_a_folder_removed_under_the_agent_keeps_its_rules(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    write_atomic(objects / "web.json", json.dumps(SERVICE))
    agent, proxy, obs = make_agent(FolderSource(objects), tmp_path)
    assert agent.turn() and proxy.calls == [["web"]]
    shutil.rmtree(objects)
    agent.runner.last_end = -1e9  # even a periodic resync now would sync the last good snapshot
    agent.turn()
    assert all(call == ["web"] for call in proxy.calls)
    assert obs.health.healthz()[0] == 503


def test_an_unreachable_api_server_is_a_problem(tmp_path: Path) -> None:
    api = FakeApiServer()
    api.put(SERVICE)
    api.put(eps("web-abc", "web", "10.244.1.5"))
    api.put(NODE)
    api.start()
    with KubeSource(ClusterConfig(server=api.url, token="t"), backoff=fast_backoff) as source:
        agent, proxy, obs = make_agent(source, tmp_path)
        turn_until(agent, lambda: proxy.calls == [["web"]])
        assert source.problem is None
        api.stop()
        turn_until(agent, lambda: agent.problem is not None)
        assert agent.problem is not None and agent.problem.startswith(f"kube-apiserver {api.url}: ")
        assert obs.health.healthz()[0] == 503
        api.start()
        turn_until(agent, lambda: agent.problem is None)
        assert obs.health.healthz()[0] == 200


def turn_until(agent: Agent, check: Callable[[], bool], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "condition not reached"
        agent.turn()
        time.sleep(0.01)


# -- --once


def test_once_fails_without_a_source(tmp_path: Path) -> None:
    agent, proxy, _ = make_agent(FolderSource(tmp_path / "typo"), tmp_path)
    assert agent.once() == f"source: {tmp_path / 'typo'}: cannot read the objects folder: No such file or directory"
    assert proxy.calls == []


def test_once_fails_when_the_sync_fails(tmp_path: Path) -> None:
    write_atomic(tmp_path / "o" / "n1.json", json.dumps(NODE))
    agent, _, _ = make_agent(FolderSource(tmp_path / "o"), tmp_path, fail='netns "x": no such network namespace')
    assert agent.once() == 'netns "x": no such network namespace'


def test_once_fails_when_the_node_is_not_among_the_objects(tmp_path: Path) -> None:
    write_atomic(tmp_path / "o" / "web.json", json.dumps(SERVICE))
    agent, proxy, _ = make_agent(FolderSource(tmp_path / "o"), tmp_path)
    assert agent.once() == 'node "n1" not found among the Node objects'
    write_atomic(tmp_path / "o" / "n1.json", json.dumps(NODE))
    agent, proxy, _ = make_agent(FolderSource(tmp_path / "o"), tmp_path)
    assert agent.once() is None and proxy.calls == [["web"]]


def test_once_fails_when_the_api_server_cannot_be_reached(tmp_path: Path) -> None:
    with KubeSource(ClusterConfig(server="http://127.0.0.1:1", token="t"), backoff=fast_backoff) as source:
        agent, proxy, _ = make_agent(source, tmp_path)
        problem = agent.once(deadline_s=10)
    assert problem is not None and problem.startswith("source: kube-apiserver http://127.0.0.1:1: ")
    assert proxy.calls == []


def clew_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clew", "agent", "--once", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_once_exits_non_zero_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "kube-proxy.yaml"
    config.write_text("kind: KubeProxyConfiguration\nhostnameOverride: n1\n")
    proc = clew_agent("--config", str(config), "--objects", str(tmp_path / "typo"), "--state-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"clew: error: sync failed: source: {tmp_path / 'typo'}: cannot read the objects folder: "
        "No such file or directory"
    )
    assert "Traceback" not in proc.stderr


def test_cli_reads_the_api_server_from_client_connection_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    config = tmp_path / "kube-proxy.yaml"
    config.write_text(
        f"kind: KubeProxyConfiguration\nhostnameOverride: n1\nclientConnection:\n  kubeconfig: {kubeconfig}\n"
    )
    proc = clew_agent("--config", str(config), "--state-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "sync failed: source: kube-apiserver http://127.0.0.1:1: " in proc.stderr  # not the in-cluster config


# -- metrics: the rule counts per table


def test_the_syncer_reports_rules_per_table_and_the_metrics_show_them(tmp_path: Path) -> None:
    from clew.agent.metrics import rules_per_table
    from clew.fakes.iptables import FakeIptables
    from clew.model.from_kube import build_snapshot

    config = ProxyConfig(node_name="n1", node_ips=("192.168.0.11",))
    syncer = ProxySyncer("unused", config, kernel=FakeIptables())  # conntrack cleanup goes to the fake
    objects = [SERVICE, eps("web-abc", "web", "10.244.1.5"), NODE]
    with (
        mock.patch.object(proxy_sync.apply, "full_sync", return_value=proxy_sync.apply.FullSync(True)),
        mock.patch.object(proxy_sync.apply, "partial_sync") as partial,
        mock.patch.object(proxy_sync.apply, "remove_other_mode_leftovers", return_value=[]),
    ):
        first = syncer.sync(build_snapshot(objects))
        assert first.full and first.rules_by_table == rules_per_table(syncer.payload()) == first.written_by_table
        assert first.rules_by_table["nat"] > 0 and first.rules_by_table["filter"] > 0
        second = syncer.sync(build_snapshot([*objects, svc("db", "10.96.0.20"), eps("db-1", "db", "10.244.2.9")]))
    assert not second.full
    assert second.rules_by_table == rules_per_table(syncer.payload())
    assert second.written_by_table == {"filter": 0, **rules_per_table(partial.call_args.args[1])}
    assert 0 < second.written_by_table["nat"] < second.rules_by_table["nat"]
    obs = Observer(node_name="n1", sync_period=30.0)
    obs.sync_finished(second, full=False)
    text = obs.metrics.exposition("")[0].decode()
    for table in ("filter", "nat"):
        total = f'kubeproxy_sync_proxy_rules_iptables_total{{ip_family="IPv4",table="{table}"}}'
        last = f'kubeproxy_sync_proxy_rules_iptables_last{{ip_family="IPv4",table="{table}"}}'
        assert f"{total} {float(second.rules_by_table[table])}" in text
        assert f"{last} {float(second.written_by_table[table])}" in text


# -- /configz


@pytest.fixture
def servers() -> Iterator[Servers]:
    config = from_kube_proxy_config(
        {"hostnameOverride": "n1", "clusterCIDR": "10.244.0.0/16", "iptables": {"minSyncPeriod": "500ms"}}
    )
    obs = Observer(node_name="n1", sync_period=30.0)
    s = Servers(obs.metrics, obs.health, config=config)
    s.start("127.0.0.1:0", "")
    yield s
    s.stop()


def test_configz_serves_the_effective_configuration_as_kube_proxy(servers: Servers) -> None:
    host, port = servers.bound("metricsBindAddress")
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/configz")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    doc = json.loads(resp.read())
    conn.close()
    config = doc["kubeproxy.config.k8s.io"]
    assert config["Mode"] == "iptables" and config["HostnameOverride"] == "n1"
    assert config["HealthzBindAddress"] == "0.0.0.0:10256" and config["MetricsBindAddress"] == "127.0.0.1:10249"
    assert (config["SyncPeriod"], config["MinSyncPeriod"]) == ("30s", "500ms")
    assert config["DetectLocalMode"] == "ClusterCIDR" and config["DetectLocal"]["ClusterCIDRs"] == ["10.244.0.0/16"]
    assert config["IPTables"] == {"MasqueradeBit": 14, "LocalhostNodePorts": True}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (30, "30s"), (1.5, "1.5s"), (0.5, "500ms"), (90, "1m30s"), (3600, "1h0m0s"), (7384.5, "2h3m4.5s")],
)
def test_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_mode_of_refuses_ipvs_naming_the_field() -> None:
    from clew.model.fields import Invalid
    from clew.model.proxy_config import mode_of

    assert mode_of({}) == "iptables" and mode_of({"mode": "nftables"}) == "nftables"
    with pytest.raises(Invalid, match="mode"):
        mode_of({"mode": "ipvs"})
