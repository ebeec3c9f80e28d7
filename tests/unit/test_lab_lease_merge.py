"""The agents' lease files reach the lab's Node objects (what a PATCH of nodes/status does), so
the backends find each other although no agent writes into the objects folder."""

from __future__ import annotations

import json
from pathlib import Path

from clew.lab.leases import LEASE_FILE, LeaseMerger, read_lease
from clew.sources.files import write_atomic

LEASE = {"flannel.alpha.coreos.com/public-ip": "192.168.50.11", "flannel.alpha.coreos.com/backend-type": "vxlan"}


def node_object(root: Path, name: str) -> dict[str, object]:
    doc = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    write_atomic(root / "objects" / "nodes" / f"{name}.json", json.dumps(doc))
    return doc


def lease(root: Path, name: str, annotations: dict[str, str]) -> None:
    write_atomic(root / "nodes" / name / LEASE_FILE, json.dumps({"node": name, "annotations": annotations}))


def annotations_of(root: Path, name: str) -> dict[str, str]:
    doc = json.loads((root / "objects" / "nodes" / f"{name}.json").read_text())
    found: dict[str, str] = doc["metadata"].get("annotations", {})
    return found


def test_a_lease_file_is_merged_into_the_node_object(tmp_path: Path) -> None:
    node_object(tmp_path, "node-1")
    node_object(tmp_path, "node-2")
    merger = LeaseMerger(tmp_path, ("node-1", "node-2"))
    assert merger.merge() == []  # no lease yet
    lease(tmp_path, "node-1", LEASE)
    assert merger.merge() == ["node-1"]
    assert annotations_of(tmp_path, "node-1") == LEASE
    assert annotations_of(tmp_path, "node-2") == {}
    doc = json.loads((tmp_path / "objects" / "nodes" / "node-1.json").read_text())
    assert doc["metadata"]["labels"] == {"kubernetes.io/hostname": "node-1"}  # the rest is kept
    assert merger.merge() == []  # unchanged file: not read again
    lease(tmp_path, "node-1", {**LEASE, "flannel.alpha.coreos.com/public-ip": "192.168.50.99"})
    assert merger.merge() == ["node-1"]
    assert annotations_of(tmp_path, "node-1")["flannel.alpha.coreos.com/public-ip"] == "192.168.50.99"


def test_an_agent_that_already_patched_the_folder_changes_nothing(tmp_path: Path) -> None:
    doc = node_object(tmp_path, "node-1")
    doc["metadata"]["annotations"] = LEASE  # type: ignore[index]
    write_atomic(tmp_path / "objects" / "nodes" / "node-1.json", json.dumps(doc))
    lease(tmp_path, "node-1", LEASE)
    assert LeaseMerger(tmp_path, ("node-1",)).merge() == []


def test_a_broken_or_foreign_lease_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "nodes" / "node-1" / LEASE_FILE
    path.parent.mkdir(parents=True)
    path.write_text('{"node": "node-1", "annot')
    assert read_lease(path, "node-1") is None
    path.write_text(json.dumps({"node": "node-2", "annotations": LEASE}))
    assert read_lease(path, "node-1") is None
    path.write_text(json.dumps({"node": "node-1", "annotations": {"a": 1}}))
    assert read_lease(path, "node-1") is None
    node_object(tmp_path, "node-1")
    assert LeaseMerger(tmp_path, ("node-1",)).merge() == []


def test_publish_leases_merges_every_file_now(tmp_path: Path) -> None:
    from clew.lab.controlplane import publish_leases

    node_object(tmp_path, "node-1")
    assert not publish_leases(tmp_path, ["node-1", "node-2"])
    lease(tmp_path, "node-1", LEASE)
    assert publish_leases(tmp_path, ["node-1", "node-2"]) and not publish_leases(tmp_path, ["node-1", "node-2"])
    assert annotations_of(tmp_path, "node-1") == LEASE
