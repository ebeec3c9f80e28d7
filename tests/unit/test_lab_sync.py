"""``wait_synced``: the lab waits for the objects folder *as it is now* to be in every node's
kernel, by the folder version each agent reports; and the version itself."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from clew.lab.build import LabError, wait_synced
from clew.lab.plan import LabConfig
from clew.lab.state import LabState
from clew.sources.files import FolderSource, folder_version, write_atomic

SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
       "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}  # fmt: skip


def test_folder_version_matches_what_a_poll_saw(tmp_path: Path) -> None:
    src = FolderSource(tmp_path)
    write_atomic(tmp_path / "services" / "a.json", json.dumps(SVC))
    assert src.poll() is not None
    assert src.version == folder_version(tmp_path)
    write_atomic(tmp_path / "services" / "b.json", json.dumps(SVC))
    assert src.version != folder_version(tmp_path)
    assert src.poll() is not None and src.version == folder_version(tmp_path)


def test_a_same_size_rewrite_is_a_change(tmp_path: Path) -> None:
    src = FolderSource(tmp_path)
    write_atomic(tmp_path / "a.json", json.dumps(SVC))
    src.poll()
    write_atomic(tmp_path / "a.json", json.dumps(SVC).replace("10.96.0.10", "10.96.0.11"))  # same size
    assert src.poll() is not None  # a new inode, even within one mtime tick


def _status(root: Path, node: str, **doc: Any) -> None:
    base = {"ok": True, "sync_started": time.time(), "source_version": folder_version(root / "objects"),
            "podnet": {"peers": 1}}  # fmt: skip
    write_atomic(root / "nodes" / node / "status.json", json.dumps({**base, **doc}))


def _lab(tmp_path: Path) -> LabState:
    write_atomic(tmp_path / "objects" / "services" / "web.json", json.dumps(SVC))
    return LabState(LabConfig(name="u", nodes=2))


def test_synced_when_every_agent_reports_the_current_version(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    _status(tmp_path, "node-1")
    _status(tmp_path, "node-2")
    wait_synced(state, tmp_path, deadline_s=1, converged=True)


def test_an_agent_that_synced_an_older_folder_is_waited_for(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    _status(tmp_path, "node-1")
    _status(tmp_path, "node-2", source_version="older")
    with pytest.raises(LabError, match=r"did not sync within 0.2s: node-2: no sync of the current objects"):
        wait_synced(state, tmp_path, deadline_s=0.2)


def test_converged_waits_for_every_peer(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    _status(tmp_path, "node-1", podnet={"peers": 0})
    _status(tmp_path, "node-2")
    wait_synced(state, tmp_path, deadline_s=1)  # synced...
    with pytest.raises(LabError, match="node-1"):  # ...but node-1 has not seen node-2's lease yet
        wait_synced(state, tmp_path, deadline_s=0.2, converged=True)


def test_a_failed_sync_ends_the_wait_at_once_naming_node_and_error(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    _status(tmp_path, "node-1", ok=False, podnet={"error": 'host-gw cannot reach node "node-2"; use the vxlan backend'})
    _status(tmp_path, "node-2", ok=False, error="iptables-restore: exit 1")
    start = time.monotonic()
    with pytest.raises(LabError) as info:
        wait_synced(state, tmp_path, deadline_s=30)
    assert time.monotonic() - start < 5
    assert str(info.value) == (
        'node-1: pod network: host-gw cannot reach node "node-2"; use the vxlan backend (also failing: node-2)'
    )


def test_an_old_failure_is_waited_out_but_a_fresh_one_is_not(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    _status(tmp_path, "node-1", ok=False, error="boom", source_version="older", sync_started=100.0)
    _status(tmp_path, "node-2")
    with pytest.raises(LabError, match="did not sync within"):  # may recover on the agent's retry
        wait_synced(state, tmp_path, deadline_s=0.2)
    with pytest.raises(LabError, match=r"^node-1: service proxy: boom$"):
        wait_synced(state, tmp_path, since=50.0, deadline_s=30)


def test_a_change_after_a_failed_sync_is_synced_after_min_interval() -> None:
    from clew.proxy.runner import SyncRunner

    r = SyncRunner(min_interval=1.0, max_interval=30.0, retry_interval=30.0)
    r.done(10.0, ok=False)  # e.g. a transient pod network failure
    r.request()  # then the user applies a change
    assert r.due(11.0)


def test_the_wait_merges_lease_files_into_node_objects(tmp_path: Path) -> None:
    """An agent that publishes its lease only in its state folder (``node-lease.json``) is seen by
    its peers: the lab merges it into the Node object while it waits (and the supervisor does)."""
    state = _lab(tmp_path)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
    write_atomic(tmp_path / "objects" / "nodes" / "node-1.json", json.dumps(node))
    lease = {"flannel.alpha.coreos.com/public-ip": "192.168.50.11"}
    write_atomic(
        tmp_path / "nodes" / "node-1" / "node-lease.json", json.dumps({"node": "node-1", "annotations": lease})
    )
    _status(tmp_path, "node-1")
    _status(tmp_path, "node-2")
    with pytest.raises(LabError):  # the merge changed the folder: the agents have not synced that yet
        wait_synced(state, tmp_path, deadline_s=0.2)
    doc = json.loads((tmp_path / "objects" / "nodes" / "node-1.json").read_text())
    assert doc["metadata"]["annotations"] == lease
