"""BIRD run by the bgp backend's applier in throwaway namespaces: a mesh across two routed
segments (with a TCP MD5 password and BFD) learns each other's subnet as ``proto bird`` routes
(recursive next hop through the router), a changed configuration is applied by ``birdc configure`` (same process, the
unchanged session is not restarted), and BIRD outlives the code that started it."""

from __future__ import annotations

import ipaddress
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from poll import poll_until
from topology import unique_prefix

from clew.kernel import bird, netns
from clew.podnet import netconf
from clew.podnet.bgp_apply import BirdFiles, ensure_bird
from clew.podnet.bird import BirdInput, bgp_nodes

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(shutil.which("bird") is None, reason="bird (Debian bird2) is not installed"),
]
NODES = bgp_nodes([("node-a", "192.168.71.2", "10.244.1.0/24"), ("node-b", "192.168.72.2", "10.244.2.0/24")])
EXTRA = bgp_nodes([("node-c", "192.168.73.2", "10.244.3.0/24")])


@pytest.fixture
def segments() -> Iterator[dict[str, str]]:
    """node-a and node-b on two subnets behind a router namespace (no BIRD on the router)."""
    prefix = unique_prefix("bg")
    names = {"rt": f"{prefix}-rt", "node-a": f"{prefix}-a", "node-b": f"{prefix}-b"}
    try:
        for ns in names.values():
            netns.create(ns)
        rt = ["link set lo up"]
        for i, node in ((1, "node-a"), (2, "node-b")):
            rt += [f"link add s{i} type veth peer name eth0 netns {names[node]}",
                   f"addr add 192.168.7{i}.1/24 dev s{i}", f"link set s{i} up"]  # fmt: skip
        netns.run_batch(names["rt"], rt)
        netns.set_sysctls(names["rt"], {"net.ipv4.ip_forward": 1})
        for i, node in ((1, "node-a"), (2, "node-b")):
            netns.run_batch(names[node], ["link set lo up", f"addr add 192.168.7{i}.2/24 dev eth0",
                                          "link set eth0 up", f"route add default via 192.168.7{i}.1"])  # fmt: skip
        yield names
    finally:
        for ns in names.values():
            netns.delete(ns)  # ends BIRD too


def bird_routes(ns: str) -> dict[str, dict[str, str]]:
    out = netns.run(ns, ["ip", "-j", "-4", "route", "show", "proto", "bird"]).stdout
    return {r["dst"]: r for r in json.loads(out or "[]")}


def inp(me: int, extra: bool = False) -> BirdInput:
    conf = netconf.parse(
        {"Network": "10.244.0.0/16", "Backend": {"Type": "bgp", "HoldTime": 6, "Password": "s3cret", "BFD": True}}
    )
    assert conf.bgp is not None
    others = tuple(n for n in NODES if n != NODES[me]) + (EXTRA if extra else ())
    onlink = (ipaddress.IPv4Network(f"192.168.7{me + 1}.0/24"),)
    return BirdInput(NODES[me], others, conf.network, conf.bgp, onlink)


def since(ns: str, files: BirdFiles, proto: str) -> str:
    for line in bird.show(ns, files.socket, "protocols").splitlines():
        cols = line.split()
        if cols and cols[0] == proto:
            return f"{cols[3]} {cols[4]} {' '.join(cols[5:])}"
    return ""


def test_mesh_across_segments_and_configure_without_restart(segments: dict[str, str], tmp_path: Path) -> None:
    files = {name: BirdFiles(tmp_path / name) for name in ("node-a", "node-b")}
    first = [ensure_bird(segments[name], files[name], inp(i)) for i, name in enumerate(("node-a", "node-b"))]
    assert [r["action"] for r in first] == ["started", "started"]
    got = poll_until(
        lambda: bird_routes(segments["node-a"]).get("10.244.2.0/24"), 30, 0.2, "node-a learns node-b's subnet"
    )
    assert got["gateway"] == "192.168.71.1" and got["dev"] == "eth0"  # resolved through the router
    poll_until(lambda: "10.244.1.0/24" in bird_routes(segments["node-b"]), 30, 0.2, "node-b learns node-a's subnet")
    assert set(bird_routes(segments["node-a"])) == {"10.244.2.0/24"}  # never its own subnet

    a = segments["node-a"]
    bfd = poll_until(lambda: "Up" in bird.show(a, files["node-a"].socket, "bfd", "sessions"), 10, 0.2, "BFD up")
    assert bfd
    assert ensure_bird(a, files["node-a"], inp(0)) == {**first[0], "action": "unchanged"}
    before = since(a, files["node-a"], "n_node_b")
    assert "Established" in before
    again = ensure_bird(a, files["node-a"], inp(0, extra=True))  # a third node joins
    assert again["action"] == "reconfigured" and again["pid"] == first[0]["pid"] and again["sessions"] == 2
    assert "n_node_c" in bird.show(a, files["node-a"].socket, "protocols")
    assert since(a, files["node-a"], "n_node_b") == before  # the unchanged session kept running


def test_a_config_bird_refuses_never_replaces_the_running_one(segments: dict[str, str], tmp_path: Path) -> None:
    files = BirdFiles(tmp_path / "a")
    started = ensure_bird(segments["node-a"], files, inp(0))
    good = files.config.read_text()
    broken = inp(0)
    broken = BirdInput(broken.node, broken.nodes, broken.network, broken.conf, broken.onlink, 'x" garbage')
    with pytest.raises(Exception, match=re.escape("bird.conf.new")):
        ensure_bird(segments["node-a"], files, broken)
    assert files.config.read_text() == good
    assert bird.running_pid(files.pidfile, segments["node-a"]) == started["pid"]


def test_bird_outlives_its_starter(segments: dict[str, str], tmp_path: Path) -> None:
    """The agent's process ends; BIRD (its own session, daemonized) keeps running."""
    files = BirdFiles(tmp_path / "a")
    code = ("import sys, pathlib; from clew.podnet.bgp_apply import *; from clew.podnet.bird import *; "
            "import pickle; ns, folder, data = sys.argv[1], sys.argv[2], pickle.loads(bytes.fromhex(sys.argv[3])); "
            "print(ensure_bird(ns, BirdFiles(pathlib.Path(folder)), data)['pid'])")  # fmt: skip
    argv = [sys.executable, "-c", code, segments["node-a"], str(files.folder), pickle.dumps(inp(0)).hex()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    pid = int(done.stdout.strip())
    assert bird.running_pid(files.pidfile, segments["node-a"]) == pid
    assert not bird.running_pid(files.pidfile, segments["node-b"])  # the namespace is checked


def test_a_dead_bird_is_started_again(segments: dict[str, str], tmp_path: Path) -> None:
    """The agent supervises BIRD: the next sync after it died starts a new one."""
    files = BirdFiles(tmp_path / "a")
    first = ensure_bird(segments["node-a"], files, inp(0))
    os.kill(first["pid"], signal.SIGKILL)
    poll_until(lambda: bird.running_pid(files.pidfile, segments["node-a"]) is None, 10, 0.02, "BIRD gone")
    again = ensure_bird(segments["node-a"], files, inp(0))
    assert again["action"] == "started" and again["pid"] != first["pid"]


def test_the_agents_watch_starts_a_dead_bird_between_syncs(segments: dict[str, str], tmp_path: Path) -> None:
    """`PodNetAgent.watch` (every turn of the agent's loop): nothing while BIRD runs; after it
    died, a new BIRD from the file in place (same config, no sync needed)."""
    from clew.agent.podnet import PodNetAgent

    ns, files = segments["node-a"], BirdFiles(tmp_path / "a")
    conf = netconf.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "bgp"}})
    agent = PodNetAgent(conf, ns, "node-a", tmp_path, publish=lambda node, ann: False)
    assert agent.watch() is None  # no sync yet: nothing to watch
    agent.bird_files = files
    assert agent.watch() is None  # never configured: nothing to start
    first = ensure_bird(ns, files, inp(0))
    assert agent.watch() is None
    os.kill(first["pid"], signal.SIGKILL)
    poll_until(lambda: bird.running_pid(files.pidfile, ns) is None, 10, 0.02, "BIRD gone")
    event = agent.watch()
    assert event is not None and event["old"] == first["pid"] and event["pid"] != first["pid"]
    assert bird.running_pid(files.pidfile, ns) == event["pid"]
    assert agent.watch() is None
