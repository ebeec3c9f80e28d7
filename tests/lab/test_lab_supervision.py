"""The lab runs its agents as a DaemonSet would: a killed agent comes back on its own, ``clew lab
restart`` restarts one, ``status`` tells the truth about the processes, a dead supervisor is
replaced without a second agent per node, bad input is one line that changes nothing, and
``lab down`` cleans up even after SIGKILL of every process of the lab."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from labkit import NAMESPACE, Lab, app, assert_gone, clew, pids_alive, poll_until, reap, root_links, running_lab, sweep

from clew.kernel import netns
from clew.lab import supervisor
from clew.lab.procs import running
from clew.lab.state import load

pytestmark = pytest.mark.lab


def status(lab: Lab) -> dict[str, object]:
    proc = clew("lab", "status", "--name", lab.name, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def agent_of(doc: dict[str, object], node: str) -> dict[str, object]:
    nodes: list[dict[str, object]] = doc["nodes"]  # type: ignore[assignment]
    agent: dict[str, object] = next(n for n in nodes if n["name"] == node)["agent"]  # type: ignore[assignment]
    return agent


def agents_in(ns: str) -> list[int]:
    """clew agent processes (not zombies) in namespace ``ns``. A child the agent forked to run a
    command looks like an agent until it execs: processes whose parent is an agent are left out."""
    found: dict[int, int] = {}  # pid → parent pid
    for pid in netns.pids(ns):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if pids_alive({pid}) and b"\0agent\0" in cmdline:
            found[pid] = int(stat.rsplit(")", 1)[1].split()[1])
    return sorted(pid for pid, parent in found.items() if parent not in found)


def test_a_killed_agent_is_restarted_and_status_stays_true(tmp_path: Path) -> None:
    with running_lab(nodes=2) as lab:
        lab.apply(app("web", 2))
        node = lab.state.plan.nodes[0]
        old = lab.agents()[node.name]
        os.kill(old, signal.SIGKILL)
        reap({old})

        def restarted() -> dict[str, object] | None:
            agent = agent_of(status(lab), node.name)
            return agent if agent["phase"] == "Running" and agent["pid"] != old else None

        agent = poll_until(restarted, 20.0, "the supervisor started the killed agent again")
        assert agent["restarts"] == 1 and agent["last_exit"] == "killed by SIGKILL"
        assert agents_in(node.netns) == [agent["pid"]]  # one agent a node
        lab.apply(app("web", 3))  # the new agent syncs changes
        client = lab.pods("web")[0]
        (result,) = sweep(client.netns, [f"{lab.cluster_ip('web')}:80"], count=6)
        assert all(a["ok"] for a in result["attempts"]), result["summary"]

        # `lab restart` with the supervisor killed: a new one adopts the running agents, no duplicates
        sup = supervisor.supervisor_proc(lab.root)
        assert sup is not None and running(sup, lab.state.plan.switch_netns)
        os.kill(sup.pid, signal.SIGKILL)
        reap({sup.pid})
        poll_until(lambda: "supervisor NOT RUNNING" in clew("lab", "status", "--name", lab.name).stdout, 10.0,
                   "status shows the supervisor down")  # fmt: skip
        other = lab.state.plan.nodes[1]
        before = lab.agents()[other.name]
        proc = clew("lab", "restart", other.name, "--name", lab.name)
        assert proc.returncode == 0, proc.stderr
        after = lab.agents()[other.name]
        assert after != before and f"pid {before} → {after}" in proc.stdout
        assert supervisor.supervisor_running(lab.root, lab.state.plan)
        for n in lab.state.plan.nodes:
            assert agents_in(n.netns) == [lab.agents()[n.name]], n.name
        bad = clew("lab", "restart", "node-9", "--name", lab.name)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no node 'node-9'" in bad.stderr, bad.stderr


def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    with running_lab(nodes=1) as lab:
        manifest = tmp_path / "app.yaml"
        manifest.write_text(yaml.safe_dump_all(app("web", 1)))
        good = clew("lab", "apply", "--name", lab.name, "-f", str(manifest))
        assert good.returncode == 0, good.stderr
        before = (lab.root / "lab.json").read_text(), sorted(p.name for p in (lab.root / "objects").rglob("*.json"))
        long = "a" * 300
        garbage = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": long}, "spec": {"ports": [{"port": 80}]}},
            app(long, 1)[0],
            app("neg", -1)[0],
            app("huge", 10**9)[0],
            app("Upper/Case", 1)[0],
            {**app("lbl", 1)[1], "metadata": {"name": "lbl", "labels": {"a": "x" * 1000}}},
        ]
        for obj in garbage:
            proc = clew("lab", "apply", "--name", lab.name, "-f", "-", input=json.dumps(obj))
            assert proc.returncode == 2, proc.stdout
            assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
            assert proc.stderr.startswith("clew: error: "), proc.stderr
        assert ((lab.root / "lab.json").read_text(), sorted(p.name for p in (lab.root / "objects").rglob("*.json"))) \
            == before  # fmt: skip

        # an object the agents reject (here: put into their folder by hand) is reported, exit 1
        extra = lab.root / "objects" / "extra" / "bad.json"
        extra.parent.mkdir()
        extra.write_text(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
                                     "spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 99999}]}}))  # fmt: skip
        proc = clew("lab", "apply", "--name", lab.name, "-f", "-", input=manifest.read_text())
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "clew: error: rejected: Service bad: spec.ports[0].port: 99999" in proc.stderr, proc.stderr
        assert "rejected by node-1" in proc.stderr
        extra.unlink()
        state = load(lab.name)
        assert state is not None and f"{NAMESPACE}/web" in state.services


def test_down_after_sigkill_of_every_process_leaves_nothing() -> None:
    links = root_links()
    with running_lab(nodes=2) as lab:
        lab.apply(app("web", 2))
        pids = lab.all_pids()
        sup = supervisor.supervisor_proc(lab.root)
        assert sup is not None and sup.pid in pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        reap(pids)
        poll_until(lambda: not pids_alive(pids), 5.0, "every lab process killed")
        down = clew("lab", "down", "--name", lab.name)
        assert down.returncode == 0, down.stderr
        assert_gone(lab.name, pids, links)


def test_up_over_a_dead_labs_state_starts_clean() -> None:
    """State left without namespaces (a crash between ``down``'s steps, a reboot of /run's tmpfs
    aside) is a dead lab's: its agent records and IPAM stores must not be believed or reused."""
    from labkit import unique_name

    from clew.lab.procs import identify
    from clew.lab.state import state_dir

    name = unique_name()
    links = root_links()
    stale = state_dir(name) / "nodes" / "node-1"
    stale.mkdir(parents=True)
    me = identify(os.getpid())
    assert me is not None
    (stale / "agent.json").write_text(json.dumps({"pid": me.pid, "start": me.start, "state": "running"}))
    (stale / "ipam").mkdir()
    (stale / "ipam" / "10.244.1.2").write_text("a container of the dead lab")
    pids: set[int] = set()
    try:
        up = clew("lab", "up", "--name", name, "--nodes", "1")
        assert up.returncode == 0, up.stderr
        state = load(name)
        assert state is not None
        pids = set(Lab(state).agents().values())
        assert pids and me.pid not in pids
        assert not (stale / "ipam" / "10.244.1.2").exists()
    finally:
        clew("lab", "down", "--name", name)
    assert_gone(name, pids, links)
