"""``clew doctor``'s podnet.bgp against a real bgp lab (4 nodes over 2 segments, the router as
route reflector): clean, every node passes; a fault injected on node-1 fails podnet.bgp there
and nothing else anywhere; ``clew doctor --from-dump`` answers as the live run does.

Faults: node-1's BGP session disabled (``birdc disable``) — a session has two ends: the router
withdraws node-1's subnet, so the other nodes' podnet.bgp fails too, naming exactly node-1's
subnet (their sessions are fine); the router withholding node-3's subnet from node-1 only (a
broken export filter) — only node-1 fails, naming node-3.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import Lab, app, clew, poll_until

from clew.doctor import collect, facts, objects
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding
from clew.kernel import bird, netns
from clew.lab import build
from clew.lab.bgp import bird_routes, reconfigure_router, wait_routes
from clew.lab.plan import LabConfig, prefix
from clew.lab.state import LabState, state_dir

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("bird") is None, reason="bird (Debian bird2) is not installed"),
]
# not applicable on a bgp node (no vxlan device; podnet.routes defers to podnet.bgp), or unsampled
SKIPS = {"podnet.vxlan_port", "podnet.offload", "podnet.routes", "node.steal", "conntrack.errors"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    name = next(n for n in (f"bg{secrets.token_hex(2)}" for _ in range(100))
                if not netns.list_names(prefix(n)) and not state_dir(n).exists())  # fmt: skip
    lab = Lab(LabState(LabConfig(name=name, nodes=4, underlay="routed", backend="bgp")))
    try:
        build.up(lab.state, lab.root)
        lab.apply(app("web", 4))
        wait_routes(lab.state.plan)
        yield lab
    finally:
        lab.close()


def doctor(lab: Lab, node: str) -> dict[str, Finding]:
    """The checks that did not pass on ``node``, read live (no sample), the expected skips aside."""
    ns = lab.state.plan.node(node).netns
    found = run_all(
        facts.from_files(collect.capture(ns, sample_s=0), name=ns, objects=objects.load(lab.root / "objects"))
    )
    return {f.id: f for f in found if f.status != "ok" and not (f.status == "skip" and f.id in SKIPS)}


def statuses(found: dict[str, Finding]) -> dict[str, str]:
    return {i: f.status for i, f in found.items()}


def node_socket(lab: Lab, node: str) -> Path:
    return lab.root / "nodes" / node / "bird.ctl"


def birdc(lab: Lab, node: str, *argv: str) -> None:
    netns.run(lab.state.plan.node(node).netns, ["birdc", "-s", str(node_socket(lab, node)), *argv])


def converged(lab: Lab) -> bool:
    plan = lab.state.plan
    return all({o.pod_cidr for o in plan.nodes if o != n} <= bird_routes(n.netns) for n in plan.nodes)


def test_a_clean_bgp_lab_passes_on_every_node(lab: Lab) -> None:
    for n in lab.state.plan.nodes:
        assert statuses(doctor(lab, n.name)) == {}, n.name


def test_a_disabled_session_fails_podnet_bgp_on_its_node_and_names_its_subnet_elsewhere(lab: Lab) -> None:
    plan = lab.state.plan
    n1 = plan.node("node-1")
    session = "n_peer_" + n1.gateway.replace(".", "_")
    try:
        birdc(lab, "node-1", "disable", session)
        others = [n for n in plan.nodes if n != n1]
        poll_until(lambda: all(n1.pod_cidr not in bird_routes(n.netns) for n in others), 10, "node-1 withdrawn")
        found = doctor(lab, "node-1")
        assert statuses(found) == {"podnet.bgp": "fail"}
        problems = found["podnet.bgp"].evidence["problems"]
        assert problems[0] == f"session {session} is down, not Established", problems
        assert len(problems) == 4  # and the 3 other subnets BIRD no longer has
        for n in others:
            found = doctor(lab, n.name)
            assert statuses(found) == {"podnet.bgp": "fail"}, n.name
            assert found["podnet.bgp"].evidence["problems"] == [
                f"node-1: BIRD did not learn it and the kernel has no proto bird route to {n1.pod_cidr}"
            ]
    finally:
        birdc(lab, "node-1", "enable", session)
    poll_until(lambda: converged(lab), 30, "routes learned again")
    assert statuses(doctor(lab, "node-1")) == {}


def test_a_subnet_withheld_from_one_node_fails_exactly_there_and_from_dump_equals_live(
    lab: Lab, tmp_path: Path
) -> None:
    plan = lab.state.plan
    n1, n3 = plan.node("node-1"), plan.node("node-3")
    try:
        reconfigure_router(plan, lab.root, withhold={"node-1": [n3.pod_cidr]})
        poll_until(lambda: n3.pod_cidr not in bird_routes(n1.netns), 10, "node-1 loses node-3's subnet")
        found = doctor(lab, "node-1")
        assert statuses(found) == {"podnet.bgp": "fail"}
        assert found["podnet.bgp"].evidence["problems"] == [
            f"node-3: BIRD did not learn it and the kernel has no proto bird route to {n3.pod_cidr}"
        ]
        for n in plan.nodes[1:]:
            assert statuses(doctor(lab, n.name)) == {}, n.name
        objs = str(lab.root / "objects")
        live = clew("doctor", "--netns", n1.netns, "--objects", objs, "--sample", "0", "--json")
        dumped = clew("dump", "--netns", n1.netns, "--sample", "0", str(tmp_path / "dump"))
        offline = clew("doctor", "--from-dump", str(tmp_path / "dump"), "--objects", objs, "--json")
        assert live.returncode == offline.returncode == 1 and dumped.returncode == 0, (live.stderr, offline.stderr)
        assert "show protocols" in (tmp_path / "dump" / facts.BIRD_FILE).read_text()

        def answers(text: str) -> list[tuple[str, str, str]]:
            moving = ("conntrack.usage", "proxy.sync")  # read at two moments: statuses agree
            return [
                (c["id"], c["status"], "" if c["id"] in moving else c["summary"]) for c in json.loads(text)["checks"]
            ]

        assert answers(offline.stdout) == answers(live.stdout)
        assert ("podnet.bgp", "fail") in [(i, s) for i, s, _ in answers(live.stdout)]
    finally:
        reconfigure_router(plan, lab.root)
    poll_until(lambda: converged(lab), 30, "node-1 learns node-3's subnet again")
    assert statuses(doctor(lab, "node-1")) == {}


def test_lab_status_shows_every_nodes_session(lab: Lab) -> None:
    out = clew("lab", "status", "--name", lab.name, "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for node in doc["nodes"]:
        assert [s["info"] for s in node["bgp"]] == ["Established"], node
    assert bird.daemons(lab.state.plan.node("node-1").netns)  # the doctor finds BIRD by process


def test_a_clean_bgp_lab_in_nftables_mode_passes_on_every_node() -> None:
    """The other proxy mode on the bgp backend: the same expected skips, nothing else."""
    name = next(n for n in (f"dk{secrets.token_hex(2)}" for _ in range(100))
                if not netns.list_names(prefix(n)) and not state_dir(n).exists())  # fmt: skip
    nft = Lab(LabState(LabConfig(name=name, nodes=2, underlay="routed", backend="bgp", proxy_mode="nftables")))
    try:
        build.up(nft.state, nft.root)
        nft.apply(app("web", 2))
        wait_routes(nft.state.plan)
        for n in nft.state.plan.nodes:
            assert statuses(doctor(nft, n.name)) == {}, n.name
    finally:
        nft.close()
