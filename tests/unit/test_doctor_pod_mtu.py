"""podnet.mtu reads the pod side of each bridge port too: the pod's eth0, in the namespace the
node names by nsid (``pod-links.json``). A pod whose eth0 kept an old MTU while its host veth was
changed fails; a peer namespace it cannot name is listed as not read, never guessed."""

from __future__ import annotations

import json
from pathlib import Path

from clew.doctor import dump_files, facts, objects
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding

NODE = Path(__file__).parent / "doctor_node"  # veth4a96cc7d (MTU 1450): peer nsid 1, ifindex 2


def run(files: dict[str, str]) -> dict[str, Finding]:
    cluster = objects.load(NODE / "objects")
    return {f.id: f for f in run_all(facts.from_files(files, name="node-1", objects=cluster))}


def with_pod_links(doc: dict[str, object]) -> dict[str, str]:
    files = dump_files.read(NODE)[1]
    files["pod-links.json"] = json.dumps(doc)
    return files


def test_the_clean_node_reads_its_pods_eth0() -> None:
    found = run(dump_files.read(NODE)[1])["podnet.mtu"]
    assert found.status == "ok" and found.evidence["pod_side_read"] == 1 and found.evidence["pod_side_off"] == {}


def test_a_pods_eth0_with_an_old_mtu_fails_while_its_host_veth_is_right() -> None:
    pod = {"1": {"netns": "web-0", "links": [{"ifindex": 1, "ifname": "lo", "mtu": 65536},
                                             {"ifindex": 2, "ifname": "eth0", "mtu": 1400}]}}  # fmt: skip
    every = run(with_pod_links(pod))
    assert {i: f.status for i, f in every.items() if f.status != "ok"} == {"podnet.mtu": "fail"}
    found = every["podnet.mtu"]
    assert found.evidence["pod_side_off"] == {"web-0/eth0": 1400} and found.evidence["veths_off"] == {}
    assert "web-0/eth0: 1400" in found.summary
    assert "ip -n web-0 link set eth0 mtu 1450" in found.fix


def test_an_unnamed_peer_namespace_is_listed_as_not_read() -> None:
    found = run(with_pod_links({"1": {"netns": None, "links": None}}))["podnet.mtu"]
    assert found.status == "ok"
    assert found.evidence["pod_side_read"] == 0
    assert found.evidence["pod_side_not_read"] == {"veth4a96cc7d": "nsid 1 has no name here (not entered)"}


def test_an_older_dump_without_pod_links_says_so() -> None:
    files = dump_files.read(NODE)[1]
    del files["pod-links.json"]
    found = run(files)["podnet.mtu"]
    assert found.status == "ok" and found.evidence["pod_side"].startswith("not read")
