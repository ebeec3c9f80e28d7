"""Whole clusters on this machine (``clew lab``): the pod network, Services, scaling, teardown,
MTU and the routed underlay, with real agents, real clew-cni pods and real packets.

One 3-node lab per backend (vxlan, host-gw) on the l2 underlay serves most tests; the routed
underlay, the CLI and teardown after SIGKILL build their own. Every lab is named ``t<4 hex>``
and taken down afterwards, checked to leave no namespace, process, file or link behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from labkit import (
    NAMESPACE,
    NODE_PORT,
    PORT,
    Lab,
    app,
    assert_gone,
    assert_matrix,
    clew,
    df_ping,
    pod_mtu,
    root_links,
    running_lab,
    sweep,
    unique_name,
)

from clew.kernel import netns
from clew.lab.plan import prefix
from clew.lab.state import load, state_dir

pytestmark = pytest.mark.lab

WEB = "web"
WEB_REPLICAS = 6
MTU = {"vxlan": 1450, "host-gw": 1500}


@pytest.fixture(scope="module", params=["vxlan", "host-gw"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """3 nodes on the l2 underlay, ``web``: 6 pods (2 a node), a ClusterIP and a NodePort Service."""
    with running_lab(nodes=3, backend=request.param, underlay="l2") as lab:
        lab.apply(app(WEB, WEB_REPLICAS, node_port=NODE_PORT))
        yield lab


def test_pod_matrix_across_nodes_without_nat(cluster: Lab) -> None:
    pods = cluster.pods(WEB)
    assert len(pods) == WEB_REPLICAS
    assert {p.node for p in pods} == {n.name for n in cluster.state.plan.nodes}
    assert_matrix(pods)


def test_pods_reach_cluster_ip_endpoints_on_every_node(cluster: Lab) -> None:
    pods = cluster.pods(WEB)
    node_of = {p.name: p.node for p in pods}
    ip_of = {p.name: p.ip for p in pods}
    vip = f"{cluster.cluster_ip(WEB)}:80"
    for src in pods:
        (result,) = sweep(src.netns, [vip], count=40)
        attempts = result["attempts"]
        assert all(a["ok"] for a in attempts), f"{src.name} → {vip}: {result['summary']}"
        servers = {a["server"] for a in attempts}
        assert {node_of[s] for s in servers} == set(node_of.values()), f"{src.name} reached only {servers}"
        # no masquerade from a pod to another pod behind a ClusterIP (only hairpin is NATed)
        for a in attempts:
            if a["server"] != src.name:
                assert a["seen"].rsplit(":", 1)[0] == src.ip, f"{src.name} → {a['server']} seen as {a['seen']}"
        assert set(ip_of) >= servers


def test_external_client_reaches_node_port_on_every_node(cluster: Lab) -> None:
    plan = cluster.state.plan
    results = sweep(plan.ext_netns, [f"{n.ip}:{NODE_PORT}" for n in plan.nodes], count=6)
    web = {p.name for p in cluster.pods(WEB)}
    for node, result in zip(plan.nodes, results, strict=True):
        attempts = result["attempts"]
        assert all(a["ok"] for a in attempts), f"ext → {node.name} {node.ip}:{NODE_PORT}: {result['summary']}"
        assert {a["server"] for a in attempts} <= web


def test_pod_mtu_and_dont_fragment_pings_across_nodes(cluster: Lab) -> None:
    backend = cluster.state.config.backend
    pods = cluster.pods(WEB)
    src = pods[0]
    dst = next(p for p in pods if p.node != src.node)
    for p in pods:
        assert pod_mtu(p.netns) == MTU[backend], f"{p.name} eth0 under {backend}"
    mtu = pod_mtu(src.netns)
    fits = df_ping(src.netns, dst.ip, mtu - 28)  # 20 IP + 8 ICMP: exactly one full packet
    assert fits.returncode == 0, f"DF ping of {mtu - 28} bytes {src.node} → {dst.node}: {fits.stdout}{fits.stderr}"
    too_big = df_ping(src.netns, dst.ip, mtu - 27)
    assert too_big.returncode != 0
    assert "message too long" in (too_big.stdout + too_big.stderr).lower(), too_big.stdout + too_big.stderr


def test_scaling_down_updates_slices_frees_pods_and_steers_traffic(cluster: Lab) -> None:
    name = "scale"
    cluster.apply(app(name, 6))
    before = cluster.pods(name)
    assert len(before) == 6 and len({p.node for p in before}) == 3
    cluster.apply(app(name, 2))
    kept, removed = cluster.pods(name), before[2:]
    assert [p.name for p in kept] == [f"{name}-0", f"{name}-1"]

    slice_doc = json.loads((cluster.root / "objects" / "slices" / f"{NAMESPACE}-{name}.json").read_text())
    assert sorted(a for e in slice_doc["endpoints"] for a in e["addresses"]) == sorted(p.ip for p in kept)
    assert all(e["conditions"]["ready"] for e in slice_doc["endpoints"])

    for p in removed:
        assert not netns.exists(p.netns), f"{p.name}'s namespace is still there"
    held = {f.name for f in (cluster.root / "nodes").glob("*/ipam/*/*") if f.name[0].isdigit()}
    assert held.isdisjoint(p.ip for p in removed), f"IPAM still holds {held & {p.ip for p in removed}}"
    assert {p.ip for p in kept} <= held

    prober = next(p for p in cluster.pods(WEB) if p.node not in {k.node for k in kept})
    (result,) = sweep(prober.netns, [f"{cluster.cluster_ip(name)}:80"], count=40)
    assert all(a["ok"] for a in result["attempts"]), result["summary"]
    assert {a["server"] for a in result["attempts"]} == {p.name for p in kept}


def test_vxlan_works_on_the_routed_underlay() -> None:
    with running_lab(nodes=3, backend="vxlan", underlay="routed") as lab:
        lab.apply(app(WEB, 3))
        pods = lab.pods(WEB)
        assert len({p.node for p in pods}) == 3
        assert {n.ip for n in lab.state.plan.nodes} == {"192.168.51.2", "192.168.52.2", "192.168.53.2"}
        assert_matrix(pods)


def test_host_gw_on_the_routed_underlay_fails_in_one_clear_line() -> None:
    name = unique_name()
    links = root_links()
    try:
        proc = clew("lab", "up", "--name", name, "--nodes", "2", "--underlay", "routed", "--backend", "host-gw")
    finally:
        leftovers = netns.list_names(prefix(name))
        clew("lab", "down", "--name", name)
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    (line,) = lines
    assert line.startswith("clew: error: "), line
    # whichever node's agent fails first is named, with the peer it cannot reach
    found = re.search(r'(node-\d): pod network: host-gw cannot reach node "(node-\d)" at 192\.168\.5\d\.2', line)
    assert found and found[1] != found[2], line
    assert line.endswith("use the vxlan backend") or "use the vxlan backend (also failing" in line, line
    assert not leftovers, f"a failed lab up left {leftovers}"
    assert_gone(name, set(), links)


def test_cli_up_apply_status_exec_down(tmp_path: Path) -> None:
    name = unique_name()
    links = root_links()
    manifest = tmp_path / "app.yaml"
    manifest.write_text(yaml.safe_dump_all(app(WEB, 2, node_port=NODE_PORT)))
    pids: set[int] = set()
    try:
        up = clew("lab", "up", "--name", name, "--nodes", "2", "--backend", "vxlan")
        assert up.returncode == 0, up.stderr
        assert f"lab {name} is up" in up.stdout
        applied = clew("lab", "apply", "--name", name, "-f", str(manifest))
        assert applied.returncode == 0, applied.stderr
        assert "every node's agent has synced" in applied.stdout

        status = clew("lab", "status", "--name", name, "-o", "json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["apiVersion"] == "clew.lab/v1alpha1" and doc["kind"] == "LabStatus" and doc["clewVersion"]
        assert [n["name"] for n in doc["nodes"]] == ["node-1", "node-2"]
        assert all(n["agent_alive"] and n["last_sync"]["ok"] for n in doc["nodes"])
        pods = {p["name"]: p for p in doc["pods"]}
        assert sorted(pods) == [f"{WEB}-0", f"{WEB}-1"] and all(p["ready"] for p in pods.values())
        assert {s["name"] for s in doc["services"]} == {f"{NAMESPACE}/{WEB}", f"{NAMESPACE}/{WEB}-np"}

        table = clew("lab", "status", "--name", name).stdout.splitlines()
        assert table[2].split()[:2] == ["NODE", "IP"] and table[3].split()[3] == "Running", table
        listed = json.loads(clew("lab", "list", "-o", "json").stdout)
        assert {"name": name, "state": "up", "nodes": 2, "agentsRunning": 2}.items() <= next(
            lab for lab in listed["items"] if lab["name"] == name
        ).items()
        assert any(line.split()[:2] == [name, "Up"] for line in clew("lab", "list").stdout.splitlines())

        state = load(name)
        assert state is not None
        pids = set(Lab(state).agents().values()) | {p.pid for p in state.pods.values()}
        shown = clew("lab", "exec", "--name", name, f"{WEB}-0", "--", "ip", "-4", "addr", "show", "dev", "eth0")
        assert shown.returncode == 0, shown.stderr
        assert f"inet {pods[f'{WEB}-0']['ip']}/24" in shown.stdout, shown.stdout
        (result,) = sweep(state.pods[f"{WEB}-0"].netns, [f"{pods[f'{WEB}-1']['ip']}:{PORT}"])
        assert result["attempts"][0]["seen"].rsplit(":", 1)[0] == pods[f"{WEB}-0"]["ip"]

        gone = clew("lab", "down", "--name", name)
        assert gone.returncode == 0, gone.stderr
        assert f"lab {name}: removed" in gone.stdout
        assert_gone(name, pids, links)
    finally:
        clew("lab", "down", "--name", name)


def test_down_after_agents_were_killed_leaves_nothing() -> None:
    name = ""
    with running_lab(nodes=2, backend="vxlan") as lab:
        name = lab.name
        lab.apply(app(WEB, 2))
        pids = lab.all_pids()
        assert len(pids) >= 4  # 2 agents, 2 echo servers
        lab.kill_agents()
        assert state_dir(name).exists()
        down = clew("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert_gone(name, pids, lab.links_before)
    assert not netns.list_names(prefix(name))
