"""The lab's control plane merges each agent's lease file (``<node dir>/node-lease.json``, the
agent's state dir) into that node's Node object: agents never write the objects folder."""

from __future__ import annotations

import json
from pathlib import Path

from clew.agent.podnet import LEASE_FILE, LeaseFile
from clew.lab.controlplane import publish_leases
from clew.sources.files import write_atomic

ANNOTATIONS = {"flannel.alpha.coreos.com/public-ip": "192.168.50.11", "flannel.alpha.coreos.com/backend-type": "vxlan"}


def test_lease_file_says_whether_it_changed(tmp_path: Path) -> None:
    publish = LeaseFile(tmp_path / LEASE_FILE)
    assert publish("n1", ANNOTATIONS) and not publish("n1", ANNOTATIONS)
    assert json.loads((tmp_path / LEASE_FILE).read_text()) == {"node": "n1", "annotations": ANNOTATIONS}
    assert publish("n1", {**ANNOTATIONS, "flannel.alpha.coreos.com/public-ip": "192.168.50.12"})


def test_leases_are_merged_into_the_node_objects(tmp_path: Path) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": {"keep": "me"}},
            "spec": {"podCIDR": "10.244.1.0/24"}}  # fmt: skip
    write_atomic(tmp_path / "objects" / "nodes" / "n1.json", json.dumps(node))
    assert not publish_leases(tmp_path, ["n1", "n2"])  # nobody published yet
    LeaseFile(tmp_path / "nodes" / "n1" / LEASE_FILE)("n1", ANNOTATIONS)
    write_atomic(tmp_path / "nodes" / "n2" / LEASE_FILE, "{broken")
    assert publish_leases(tmp_path, ["n1", "n2"]) and not publish_leases(tmp_path, ["n1", "n2"])
    doc = json.loads((tmp_path / "objects" / "nodes" / "n1.json").read_text())
    assert doc["metadata"]["annotations"] == {"keep": "me", **ANNOTATIONS}
    assert doc["spec"] == {"podCIDR": "10.244.1.0/24"}
    assert not (tmp_path / "objects" / "nodes" / "n2.json").exists()
