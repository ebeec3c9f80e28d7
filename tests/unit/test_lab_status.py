"""``clew lab status`` and ``clew lab list``: kubectl-like tables with headers, a JSON document with
its apiVersion and clew's version, and only processes that really run counted as running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from clew import __version__
from clew.lab.plan import LabConfig
from clew.lab.procs import identify
from clew.lab.state import LabState, Pod, save
from clew.lab.status import API_VERSION, lab_status, list_labs, render_list, render_status
from clew.sources.files import write_atomic


def _lab(tmp_path: Path) -> LabState:
    state = LabState(LabConfig(name="hlbu", nodes=2))
    state.pods["web-0"] = Pod("web-0", "demo", "demo/web", {"app": "web"}, "node-1", "hlbu-lab-p-web-0",
                              "10.244.1.2", {"http": 8080}, pid=os.getpid())  # fmt: skip
    state.services["demo/web"] = {"spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                                           "ports": [{"port": 80, "nodePort": 30080}]}}  # fmt: skip
    return state


def test_status_document_and_table(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = identify(proc.pid)
        assert me is not None
        # node-1's record names a live process but with another start time (a reused pid)
        reused = {"pid": proc.pid, "start": me.start + 7, "restarts": 2, "state": "running"}
        write_atomic(tmp_path / "nodes" / "node-1" / "agent.json", json.dumps(reused))
        waiting = {"pid": 0, "start": 0, "restarts": 3, "state": "waiting"}
        write_atomic(tmp_path / "nodes" / "node-2" / "agent.json", json.dumps(waiting))
        write_atomic(tmp_path / "nodes" / "node-1" / "status.json", json.dumps({"ok": True, "rules": 43}))
        doc = lab_status(state, tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert doc["apiVersion"] == API_VERSION and doc["kind"] == "LabStatus" and doc["clewVersion"] == __version__
    agents = {n["name"]: n["agent"] for n in doc["nodes"]}
    assert agents["node-1"]["phase"] == "Down" and agents["node-1"]["pid"] is None  # not believed
    assert agents["node-2"]["phase"] == "BackOff" and agents["node-2"]["restarts"] == 3
    assert doc["pods"] == [{"name": "web-0", "namespace": "demo", "node": "node-1", "ip": "10.244.1.2",
                            "ready": False}]  # this pid is not in the pod's namespace  # fmt: skip
    json.dumps(doc)
    text = render_status(doc)
    lines = text.splitlines()
    assert "supervisor NOT RUNNING" in lines[0]
    header = lines[2].split()
    assert header[:4] == ["NODE", "IP", "POD", "CIDR"] and "RESTARTS" in header
    assert lines[3].split()[:5] == ["node-1", "192.168.50.11", "10.244.1.0/24", "Down", "-"]
    assert any(line.split() == ["demo", "web", "NodePort", "10.96.0.10", "80:30080/TCP"] for line in lines)
    assert any(line.split()[:2] == ["NAMESPACE", "POD"] for line in lines)


def test_list_shows_labs_with_state(tmp_path: Path) -> None:
    state = _lab(tmp_path)
    save(state, tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lab.json").write_text("{")
    doc = list_labs(tmp_path)
    assert doc["apiVersion"] == API_VERSION and doc["kind"] == "LabList"
    mine = {lab["name"]: lab for lab in doc["items"]}
    assert mine["hlbu"]["state"] == "up" and mine["hlbu"]["pods"] == 1 and mine["hlbu"]["agentsRunning"] == 0
    assert mine["broken"]["state"] == "unreadable"
    text = render_list(doc).splitlines()
    assert text[0].split()[:3] == ["NAME", "STATUS", "NODES"]
    assert any(line.split()[:3] == ["hlbu", "Up", "2"] for line in text)
    assert render_list({"items": []}).startswith("no labs")
