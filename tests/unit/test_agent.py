"""The agent's pieces without a kernel: the sync runner on a fake clock, the folder source,
the loop with fake syncers, and annotation patches."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from clew.agent.loop import Agent
from clew.model.objects import Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.guard import Difference
from clew.proxy.runner import SyncRunner
from clew.proxy.sync import ProxySyncer, SyncResult
from clew.sources.files import FolderSource, patch_node_annotations

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "demo"},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
}


def test_runner_first_sync_at_once_then_bounded() -> None:
    r = SyncRunner(min_interval=1.0, max_interval=30.0, retry_interval=5.0)
    assert r.due(0.0)
    r.done(0.5, ok=True)
    assert not r.due(0.6)
    r.request()
    assert not r.due(1.4) and r.due(1.5)  # min interval counts from the end of the last sync
    assert r.next_due(1.0) == pytest.approx(0.5)
    r.done(2.0, ok=True)
    assert not r.due(31.9) and r.due(32.0)  # periodic resync without requests
    r.done(40.0, ok=False)
    assert not r.due(44.9) and r.due(45.0)  # retry after a failure


def test_runner_coalesces_requests() -> None:
    r = SyncRunner(min_interval=1.0, max_interval=30.0)
    r.done(0.0, ok=True)
    for _ in range(10):
        r.request()
    assert r.due(1.0)
    r.done(1.0, ok=True)
    assert not r.due(1.5)


def test_folder_source_sees_changes_and_keeps_a_broken_files_objects(tmp_path: Path) -> None:
    src = FolderSource(tmp_path)
    assert src.poll() is not None  # first look: an (empty) snapshot
    assert src.poll() is None
    f = tmp_path / "svc.yaml"
    f.write_text(yaml.safe_dump(SERVICE))
    snap = src.poll()
    assert snap is not None and [s.name for s in snap.services] == ["web"]
    assert src.poll() is None
    f.write_text("kind: Service\nspec: [broken\n")
    os.utime(f, ns=(f.stat().st_mtime_ns + 1_000_000, f.stat().st_mtime_ns + 1_000_000))
    snap = src.poll()
    assert snap is not None and [s.name for s in snap.services] == ["web"]  # kept, not lost
    assert "not valid YAML" in src.errors[f]
    f.unlink()
    snap = src.poll()
    assert snap is not None and snap.services == () and src.errors == {}


@dataclass
class FakeProxy(ProxySyncer):
    calls: list[int] = field(default_factory=list)

    def sync(self, snapshot: Snapshot) -> SyncResult:
        self.calls.append(len(snapshot.services))
        return SyncResult(True, 0.01, len(snapshot.services), 7)

    def tampered(self) -> list[Difference]:
        return []


class BrokenPodnet:
    def sync(self, snapshot: Snapshot) -> dict[str, Any]:
        raise RuntimeError("vxlan device gone")

    def watch(self) -> dict[str, Any] | None:
        return None


@dataclass
class WatchedPodnet:
    """A pod network whose watch reports the queued events (a BIRD restarted, a restart that failed)."""

    events: list[dict[str, Any] | None]
    syncs: int = 0

    def sync(self, snapshot: Snapshot) -> dict[str, Any]:
        self.syncs += 1
        return {}

    def watch(self) -> dict[str, Any] | None:
        return self.events.pop(0) if self.events else None


def test_agent_syncs_on_change_and_writes_status(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    now = [100.0]
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"))
    agent = Agent(FolderSource(objects), proxy, SyncRunner(1.0, 30.0), tmp_path / "status.json", clock=lambda: now[0])
    assert agent.turn() and proxy.calls == [0]
    (objects / "svc.json").write_text(json.dumps(SERVICE))
    assert not agent.turn()  # requested, but min-sync-period has not passed
    now[0] += 1.0
    assert agent.turn() and proxy.calls == [0, 1]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["ok"] and status["service_ports"] == 1 and status["rules"] == 7 and status["syncs"] == 2
    now[0] += 10
    assert not agent.turn()  # nothing changed, not yet the sync period
    now[0] += 30
    assert agent.turn()  # the periodic resync


def test_a_failing_pod_network_does_not_stop_the_proxy(tmp_path: Path) -> None:
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"))
    agent = Agent(FolderSource(tmp_path), proxy, SyncRunner(0.0, 30.0), tmp_path / "s.json", podnet=BrokenPodnet())
    assert agent.turn() and proxy.calls == [0]
    status = json.loads((tmp_path / "s.json").read_text())
    assert status["ok"] is False and status["podnet"] == {"error": "vxlan device gone"}
    assert agent.runner.failed


def test_patch_node_annotations_merges_and_reports_change(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    (nodes / "n1.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "n1", "annotations": {"keep": "me"}},
                "spec": {"podCIDR": "10.244.1.0/24"},
            }
        )
    )
    assert patch_node_annotations(tmp_path, "n1", {"flannel.alpha.coreos.com/public-ip": "192.168.50.11"})
    assert not patch_node_annotations(tmp_path, "n1", {"flannel.alpha.coreos.com/public-ip": "192.168.50.11"})
    doc = json.loads((nodes / "n1.json").read_text())
    assert doc["metadata"]["annotations"] == {"keep": "me", "flannel.alpha.coreos.com/public-ip": "192.168.50.11"}
    assert doc["spec"]["podCIDR"] == "10.244.1.0/24"


def test_the_loop_feeds_the_metrics_and_health(tmp_path: Path) -> None:
    from clew.agent.metrics import Observer

    obs = Observer(node_name="n1", sync_period=30.0)
    (tmp_path / "svc.json").write_text(json.dumps(SERVICE))
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"))
    agent = Agent(FolderSource(tmp_path), proxy, SyncRunner(0.0, 30.0), tmp_path / "s.json", obs=obs)
    assert agent.turn()
    body, _ = obs.metrics.exposition("")
    text = body.decode() if isinstance(body, bytes) else body
    last = next(
        line for line in text.splitlines() if line.startswith("kubeproxy_sync_proxy_rules_last_timestamp_seconds")
    )
    assert float(last.split()[-1]) > 0
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1.0' in text


def test_the_syncers_full_payload_is_what_clew_render_prints() -> None:
    """DESIGN: ``clew render`` prints exactly what the agent loads in a full sync."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
    from scenario import scenarios

    from clew.model.from_kube import build_snapshot
    from clew.sources.manifests import load_objects

    for sc in scenarios():
        snapshot = build_snapshot(load_objects(sc.folder / "objects.yaml"))
        syncer = ProxySyncer("unused", sc.config())
        _, ports = syncer._decide_and_render(snapshot)
        syncer._applied = ports
        assert syncer.payload() == sc.render().text(), sc.name


def test_status_names_the_rejected_objects_and_notes_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`clew lab apply` reads the agents' verdicts from status.json; notes (valid input clew
    skips or cannot check, e.g. an unknown service range) reach the log once, not every sync."""
    objects = tmp_path / "objects"
    objects.mkdir()
    bad = {**SERVICE, "metadata": {"name": "x" * 300, "namespace": "demo"}}
    (objects / "bad.json").write_text(json.dumps(bad))
    (objects / "good.json").write_text(json.dumps(SERVICE))
    now = [100.0]
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"))
    agent = Agent(FolderSource(objects), proxy, SyncRunner(1.0, 30.0), tmp_path / "status.json", clock=lambda: now[0])
    with caplog.at_level("INFO", logger="clew.agent"):
        assert agent.turn()
        now[0] += 60
        assert agent.turn()  # the periodic resync: same snapshot, nothing new to say
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["rejections"] == 1
    assert len(status["rejected"]) == 1 and "metadata.name" in status["rejected"][0]
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note: ")]
    assert len(notes) == 1 and "ServiceCIDR" in notes[0]


def test_every_turn_watches_the_pod_network_and_counts_bird_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead BIRD is the watch's business on every turn, not only on a sync turn: each restart
    (and each failed one) is logged and counted in ``clew_bird_restarts_total``."""
    from clew.agent.metrics import Observer

    obs = Observer(node_name="n1", sync_period=30.0)
    podnet = WatchedPodnet([None, {"old": 41, "pid": 42}, {"error": "bird: no such file"}])
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"))
    now = [100.0]
    agent = Agent(FolderSource(tmp_path), proxy, SyncRunner(1.0, 30.0), tmp_path / "s.json", podnet=podnet,
                  obs=obs, clock=lambda: now[0])  # fmt: skip
    with caplog.at_level("INFO", logger="clew.agent"):
        assert agent.turn()  # the first sync
        assert not agent.turn() and not agent.turn()  # no sync due: the watch still runs
    assert podnet.syncs == 1 and podnet.events == []
    messages = [r.getMessage() for r in caplog.records]
    assert "bird (pid 41) was not running; started it again (pid 42)" in messages
    assert any(m.startswith("bird is not running and did not start: bird: no such file") for m in messages)
    body, _ = obs.metrics.exposition("")
    text = body.decode() if isinstance(body, bytes) else body
    assert 'clew_bird_restarts_total{result="started"} 1.0' in text
    assert 'clew_bird_restarts_total{result="failed"} 1.0' in text


def test_a_stopping_agent_starts_no_bird(tmp_path: Path) -> None:
    podnet = WatchedPodnet([{"old": 41, "pid": 42}])
    proxy = FakeProxy("ns", ProxyConfig(node_name="n1"))
    agent = Agent(FolderSource(tmp_path), proxy, SyncRunner(1.0, 30.0), tmp_path / "s.json", podnet=podnet)
    agent.stop.set()
    agent.turn()
    assert podnet.events == [{"old": 41, "pid": 42}]  # the watch was not asked
