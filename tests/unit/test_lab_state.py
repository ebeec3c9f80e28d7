"""The lab's state survives each ``clew lab`` process: saved and loaded whole, the pods apart (their
save after each pod must not cost more with 5,000 Services), and an older single-file state loads."""

from __future__ import annotations

import json
import time
from pathlib import Path

from clew.lab.plan import LabConfig
from clew.lab.state import PODS_FILE, LabState, Pod, load, save, save_pods


def _state() -> LabState:
    state = LabState(LabConfig(name="hlbs", nodes=2), placed=1)
    state.pods["web-0"] = Pod("web-0", "demo", "demo/web", {"app": "web"}, "node-1", "hlbs-lab-p-web-0",
                              "10.244.1.2", {"http": 8080}, pid=42, container_id="web-0-abc", start=7)  # fmt: skip
    state.services = {f"demo/s{i}": {"spec": {"clusterIP": f"10.96.{i // 250}.{i % 250}"}} for i in range(5000)}
    return state


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = _state()
    save(state, tmp_path)
    again = load("hlbs", tmp_path)
    assert again is not None and again.to_json() == state.to_json()


def test_saving_the_pods_does_not_rewrite_the_services(tmp_path: Path) -> None:
    state = _state()
    save(state, tmp_path)
    lab_json = (tmp_path / "hlbs" / "lab.json").stat()
    state.pods["web-0"].ip = "10.244.1.9"
    started = time.perf_counter()
    save_pods(state, tmp_path)
    assert time.perf_counter() - started < 0.5  # ~1 ms; writing 5,000 Services took 1.4 s
    assert (tmp_path / "hlbs" / "lab.json").stat().st_ino == lab_json.st_ino
    again = load("hlbs", tmp_path)
    assert again is not None and again.pods["web-0"].ip == "10.244.1.9" and len(again.services) == 5000


def test_an_older_single_file_state_loads(tmp_path: Path) -> None:
    state = _state()
    doc = state.to_json()
    doc["agents"] = {"node-1": 1234}  # older clews kept agent pids here
    (tmp_path / "hlbs").mkdir()
    (tmp_path / "hlbs" / "lab.json").write_text(json.dumps(doc))
    assert not (tmp_path / "hlbs" / PODS_FILE).exists()
    again = load("hlbs", tmp_path)
    assert again is not None and again.to_json() == state.to_json()
