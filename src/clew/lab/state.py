"""What a running lab holds, on disk, so that every ``clew lab`` command (a new process each
time) sees the same cluster: the config, the pods, the Services with their allocations.

Layout of ``<state>/`` (default ``/run/clew/lab/<name>``)::

    lab.json, pods.json      this module's LabState (the pods apart: they are saved after each one)
    objects/                 the API objects every node's agent watches (nodes/, services/, slices/)
    supervisor.json, .log    the agents' supervisor process (clew.lab.supervisor)
    nodes/<node>/            subnet.env, ipam store, CNI config, agent config, status.json, agent.log,
                             agent.json (the agent process, from the supervisor), node-lease.json
    pods/<pod>.log           each echo server's output
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clew.lab.plan import LabConfig, LabPlan, plan
from clew.sources.files import write_atomic

STATE_ROOT = Path("/run/clew/lab")
PODS_FILE = "pods.json"


@dataclass
class Pod:
    name: str
    namespace: str
    deployment: str
    labels: dict[str, str]
    node: str
    netns: str
    ip: str
    ports: dict[str, int]  # container port name (or the number as text) → port
    pid: int = 0
    container_id: str = ""
    start: int = 0  # the echo server's start time (clew.lab.procs.ProcId): a reused pid is not it


@dataclass
class LabState:
    config: LabConfig
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)  # ns/name → manifest
    services: dict[str, dict[str, Any]] = field(default_factory=dict)  # ns/name → manifest (allocated)
    pods: dict[str, Pod] = field(default_factory=dict)
    placed: int = 0  # pods placed so far: round robin over nodes

    @property
    def plan(self) -> LabPlan:
        return plan(self.config)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "deployments": self.deployments,
            "services": self.services,
            "pods": {k: asdict(v) for k, v in self.pods.items()},
            "placed": self.placed,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LabState:
        return cls(
            config=LabConfig(**doc["config"]),
            deployments=doc.get("deployments", {}),
            services=doc.get("services", {}),
            pods={k: Pod(**v) for k, v in doc.get("pods", {}).items()},
            placed=int(doc.get("placed", 0)),
        )


def state_dir(name: str, root: Path = STATE_ROOT) -> Path:
    return root / name


def load(name: str, root: Path = STATE_ROOT) -> LabState | None:
    path = state_dir(name, root) / "lab.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    pods = path.with_name(PODS_FILE)
    if pods.exists():  # (a lab.json of an older clew holds the pods itself)
        doc.update(json.loads(pods.read_text()))
    return LabState.from_json(doc)


def save(state: LabState, root: Path = STATE_ROOT) -> None:
    """Write the whole state: ``lab.json`` and, apart, the pods (`save_pods`)."""
    doc = state.to_json()
    del doc["pods"], doc["placed"]
    save_pods(state, root)
    write_atomic(state_dir(state.config.name, root) / "lab.json", json.dumps(doc, indent=2) + "\n")


def save_pods(state: LabState, root: Path = STATE_ROOT) -> None:
    """Write only the pods (``pods.json``): done after every pod created, so its cost must not
    grow with the number of Services (5,000 of them made each pod's save take over a second)."""
    doc = {"pods": {k: asdict(v) for k, v in state.pods.items()}, "placed": state.placed}
    write_atomic(state_dir(state.config.name, root) / PODS_FILE, json.dumps(doc, indent=2) + "\n")
