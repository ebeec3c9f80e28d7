"""BIRD 2 configurations of the bgp backend: byte for byte against reviewed files (refreshed only
with ``--update-golden``), each accepted by ``bird -p`` (parse only) where bird is installed,
and the import filters' promises checked on the text."""

from __future__ import annotations

import difflib
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clew.podnet import netconf
from clew.podnet.bird import BirdInput, bgp_nodes, render, sessions

GOLDEN = Path(__file__).parent / "bird"
NODES = bgp_nodes(
    [
        ("node-1", "192.168.51.2", "10.244.1.0/24"),
        ("node-2", "192.168.52.2", "10.244.2.0/24"),
        ("node-3", "192.168.51.3", "10.244.3.0/24"),
        ("node-4", "192.168.52.3", "10.244.4.0/24"),
    ]
)
ONLINK = {"192.168.51": "192.168.51.0/24", "192.168.52": "192.168.52.0/24"}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "mesh-node-1": ("node-1", {}),
    "mesh-node-4-bfd-password": ("node-4", {"BFD": True, "Password": "s3cret", "HoldTime": 3}),
    "reflector-node-1": ("node-1", {"Peering": {"RouteReflectors": ["node-1", "node-2"]}, "GracefulRestartTime": 120}),
    "reflector-client-node-3": ("node-3", {"Peering": {"RouteReflectors": ["node-1", "node-2"]}}),
    "peers-node-2": (
        "node-2",
        {
            "ASN": 64512,
            "GracefulRestart": False,
            "Peering": {
                "Peers": [
                    {"Address": "192.168.51.1", "ASN": 64513, "Nodes": ["node-1", "node-3"]},
                    {"Address": "192.168.52.1", "ASN": 64513, "Nodes": ["node-2", "node-4"]},
                    {"Address": "10.9.9.9", "ASN": 64512},
                ]
            },
        },
    ),
}


def bird_input(case: str) -> BirdInput:
    name, backend = CASES[case]
    conf = netconf.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "bgp", **backend}})
    assert conf.bgp is not None
    me = next(n for n in NODES if n.name == name)
    onlink = (ipaddress.IPv4Network(ONLINK[str(me.ip).rsplit(".", 1)[0]]),)
    others = tuple(n for n in NODES if n != me)
    return BirdInput(me, others, conf.network, conf.bgp, onlink, f"/var/lib/clew/{name}/bird.log")


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_matches_golden_file(case: str, request: pytest.FixtureRequest) -> None:
    text = render(bird_input(case))
    golden = GOLDEN / f"{case}.conf"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}; run pytest tests/golden --update-golden and review it"
    want = golden.read_text()
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), "golden", "render"))
        pytest.fail(f"{case} differs (review, then --update-golden):\n{diff}")


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird (Debian bird2) is not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_bird_parses_the_golden_config(case: str) -> None:
    done = subprocess.run(["bird", "-p", "-c", str(GOLDEN / f"{case}.conf")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_mesh_opens_one_session_per_pair() -> None:
    """Of every pair, exactly one side is passive (the higher IP), as in Calico."""
    base = bird_input("mesh-node-1")
    for me in NODES:
        others = tuple(n for n in NODES if n != me)
        for s in sessions(BirdInput(me, others, base.network, base.conf)):
            assert s.passive == (me.ip > s.address)


def test_import_filters_accept_only_the_announcing_nodes_subnet() -> None:
    text = render(bird_input("mesh-node-1"))
    assert "import where !foreign_prefix() && net = 10.244.2.0/24 && bgp_next_hop = 192.168.52.2;" in text
    assert "return net !~ CLUSTER || net = OWN;" in text
    assert "export where source = RTS_BGP && !foreign_prefix();" in text  # the kernel gets only BGP routes
    assert text.count('export where proto = "own_subnet";') == 3  # announce only our own subnet
    assert "route 10.244.1.0/24 blackhole;" in text


def test_reflector_clients_peer_only_with_reflectors() -> None:
    client = sessions(bird_input("reflector-client-node-3"))
    assert [str(s.address) for s in client] == ["192.168.51.2", "192.168.52.2"]
    assert all(not s.rr_client and s.accept == "node_route()" for s in client)
    reflector = {str(s.address): s for s in sessions(bird_input("reflector-node-1"))}
    assert set(reflector) == {"192.168.52.2", "192.168.51.3", "192.168.52.3"}
    assert not reflector["192.168.52.2"].rr_client and reflector["192.168.51.3"].rr_client


def test_external_peers_serve_only_their_nodes() -> None:
    got = sessions(bird_input("peers-node-2"))
    assert [(str(s.address), s.asn) for s in got] == [("192.168.52.1", 64513), ("10.9.9.9", 64512)]
    text = render(bird_input("peers-node-2"))
    assert "persist;" not in text and "graceful restart on;" not in text
