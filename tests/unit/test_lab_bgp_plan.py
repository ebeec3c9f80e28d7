"""The routed lab's segments and the bgp lab's configurations (net-conf and the router's BIRD),
pure: 4 nodes over 2 segments by default for bgp, one node per segment for the others, the
router as reflector or external peer, BFD on both ends."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clew.lab.bgp import ROUTER_EBGP_ASN, node_backend, router_config
from clew.lab.plan import LabConfig, plan
from clew.podnet import netconf


def test_bgp_routed_lab_puts_two_nodes_on_each_segment() -> None:
    p = plan(LabConfig(name="x", nodes=4, underlay="routed", backend="bgp"))
    assert [n.ip for n in p.nodes] == ["192.168.51.2", "192.168.51.3", "192.168.52.2", "192.168.52.3"]
    assert [n.gateway for n in p.nodes] == ["192.168.51.1"] * 2 + ["192.168.52.1"] * 2
    assert p.segments == (("br1", ("x-lab-n1", "x-lab-n2")), ("br2", ("x-lab-n3", "x-lab-n4")))
    assert p.router_addresses == (("s1", "192.168.51.1/24"), ("s2", "192.168.52.1/24"), ("ext", "192.168.100.1/24"))
    assert p.segment_of("node-4") == "192.168.52.0/24"


def test_other_backends_keep_one_node_per_segment_and_per_segment_is_configurable() -> None:
    p = plan(LabConfig(name="x", nodes=3, underlay="routed", backend="vxlan"))
    assert [n.ip for n in p.nodes] == ["192.168.51.2", "192.168.52.2", "192.168.53.2"] and p.segments == ()
    assert p.router_addresses[0] == ("n1", "192.168.51.1/24")  # the node's link ends on the router
    p = plan(LabConfig(name="x", nodes=3, underlay="routed", backend="bgp", per_segment=1))
    assert p.segments == ()
    p = plan(LabConfig(name="x", nodes=5, underlay="routed", backend="vxlan", per_segment=3))
    assert [n.ip for n in p.nodes][2:4] == ["192.168.51.4", "192.168.52.2"]
    with pytest.raises(ValueError, match="per_segment"):
        plan(LabConfig(name="x", per_segment=10))
    with pytest.raises(ValueError, match="bgp_router"):
        plan(LabConfig(name="x", bgp_router="confed"))


def test_net_conf_names_one_peer_per_segment_and_parses() -> None:
    p = plan(LabConfig(name="x", nodes=4, underlay="routed", backend="bgp", bgp_router="ebgp", bfd=True))
    backend = node_backend(p)
    assert backend["Peering"] == {"Peers": [
        {"Address": "192.168.51.1", "ASN": ROUTER_EBGP_ASN, "Nodes": ["node-1", "node-2"]},
        {"Address": "192.168.52.1", "ASN": ROUTER_EBGP_ASN, "Nodes": ["node-3", "node-4"]},
    ]}  # fmt: skip
    conf = netconf.parse({"Network": "10.244.0.0/16", "Backend": backend})
    assert conf.bgp is not None and conf.bgp.bfd


@pytest.mark.parametrize("mode", ["reflector", "ebgp"])
@pytest.mark.parametrize("bfd", [False, True])
def test_router_config(mode: str, bfd: bool, tmp_path: Path) -> None:
    p = plan(LabConfig(name="x", nodes=4, underlay="routed", backend="bgp", bgp_router=mode, bfd=bfd))
    text = router_config(p)
    asn = ROUTER_EBGP_ASN if mode == "ebgp" else 64512
    assert text.count(f"as {asn};\n  neighbor") == 4
    assert text.count("rr client;") == (4 if mode == "reflector" else 0)
    assert text.count("bfd on;") == (4 if bfd else 0) and ("protocol bfd" in text) == bfd
    assert "neighbor 192.168.52.3 as 64512;" in text and "local 192.168.52.1 as" in text
    if shutil.which("bird"):
        (tmp_path / "bird.conf").write_text(text)
        done = subprocess.run(["bird", "-p", "-c", str(tmp_path / "bird.conf")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
