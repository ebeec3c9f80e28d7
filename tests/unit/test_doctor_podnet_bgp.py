"""``podnet.bgp`` on a bgp lab node's dump (tests/unit/doctor_bgp_node: ``clew dump`` of node-1
of a 4-node routed bgp lab, its router as route reflector): clean it passes; each fault written
into its files fails exactly podnet.bgp, naming what is wrong; podnet.routes leaves bgp nodes
to it."""

from __future__ import annotations

import json
from pathlib import Path

from clew.doctor import dump_files, facts, objects
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding

NODE = Path(__file__).parent / "doctor_bgp_node"
SESSION = "n_peer_192_168_51_1"  # node-1's one session: to its segment's router
SKIPPED = {"podnet.vxlan_port", "podnet.offload", "podnet.routes", "conntrack.errors", "node.steal"}


def files() -> dict[str, str]:
    return dump_files.read(NODE)[1]


def run(found_files: dict[str, str], *, with_objects: bool = True) -> dict[str, Finding]:
    cluster = objects.load(NODE / "objects") if with_objects else None
    return {f.id: f for f in run_all(facts.from_files(found_files, name="node-1", objects=cluster))}


def not_ok(found: dict[str, Finding]) -> dict[str, str]:
    return {i: f.status for i, f in found.items() if f.status != "ok" and i not in SKIPPED}


def test_a_clean_bgp_node_passes_and_podnet_routes_defers_to_podnet_bgp() -> None:
    found = run(files())
    assert not_ok(found) == {}
    bgp = found["podnet.bgp"]
    assert bgp.summary == "1 BGP session(s) Established, routes to all 3 other nodes' subnets"
    assert found["podnet.routes"].status == "skip" and "podnet.bgp" in found["podnet.routes"].summary
    without = run(files(), with_objects=False)["podnet.bgp"]
    assert without.status == "ok" and "no --objects" in without.summary


def test_a_session_not_established_fails() -> None:
    f = files()
    f[facts.BIRD_FILE] = f[facts.BIRD_FILE].replace("Established", "Active     Socket: Connection refused")
    f[facts.BIRD_FILE] = f[facts.BIRD_FILE].replace(
        f"{SESSION} BGP        ---        up  ", f"{SESSION} BGP        ---        start"
    )
    found = run(f)
    assert not_ok(found) == {"podnet.bgp": "fail"}
    assert found["podnet.bgp"].summary.startswith(f"1 problem(s): session {SESSION} is Active")


def route_missing(f: dict[str, str], dst: str) -> None:
    doc = json.loads(f["ip-route.json"])
    f["ip-route.json"] = json.dumps([r for r in doc if r.get("dst") != dst])


def test_a_nodes_subnet_missing_from_the_kernel_fails_naming_the_node() -> None:
    f = files()
    route_missing(f, "10.244.3.0/24")
    found = run(f)
    assert not_ok(found) == {"podnet.bgp": "fail"}
    assert "node-3: BIRD has it but the kernel has no proto bird route to 10.244.3.0/24" in found["podnet.bgp"].summary
    f = files()
    route_missing(f, "10.244.3.0/24")
    text = f[facts.BIRD_FILE].splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("10.244.3.0/24"))
    f[facts.BIRD_FILE] = "\n".join(text[:at] + text[at + 2 :]) + "\n"  # the route and its "via" line
    assert "node-3: BIRD did not learn it and" in run(f)["podnet.bgp"].summary


def test_bird_gone_with_its_routes_left_fails_and_no_bird_no_routes_is_not_a_bgp_node() -> None:
    f = files()
    f[facts.BIRD_FILE] = facts.bird_to_text(None, None, {}, None)
    found = run(f)
    assert not_ok(found) == {"podnet.bgp": "fail"}
    assert "no BIRD runs here, yet 3 routes it installed are left" in found["podnet.bgp"].summary
    for dst in ("10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"):
        route_missing(f, dst)
    found = run(f)
    assert found["podnet.bgp"].status == "ok" and "not a bgp node" in found["podnet.bgp"].summary


def test_a_bird_that_does_not_answer_fails_and_an_old_dump_skips() -> None:
    f = files()
    f[facts.BIRD_FILE] = facts.bird_to_text(42, "/run/x/bird.ctl", {"protocols": None, "route": None}, "timed out")
    found = run(f)
    assert found["podnet.bgp"].status == "fail"
    assert found["podnet.bgp"].summary == "BIRD (pid 42) does not answer on /run/x/bird.ctl: timed out"
    del f[facts.BIRD_FILE]
    assert run(f)["podnet.bgp"].status == "skip"


def test_bird_txt_round_trips() -> None:
    bird = facts.bird_from_text(files()[facts.BIRD_FILE])
    assert bird.pid is not None and bird.socket is not None and bird.error is None
    text = facts.bird_to_text(bird.pid, bird.socket, {"protocols": bird.protocols, "route": bird.routes}, None)
    assert facts.bird_from_text(text) == bird
    assert bird.route_prefixes()["10.244.3.0/24"] == SESSION
    assert bird.route_prefixes()["10.244.1.0/24"] == "own_subnet"
