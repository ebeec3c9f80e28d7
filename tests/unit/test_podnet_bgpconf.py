"""The bgp backend's net-conf.json options: defaults, the three peerings, errors naming the key."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from clew.podnet import netconf
from clew.podnet.bgpconf import MESH, PEERS, REFLECTORS, BgpConf, BgpPeer
from clew.podnet.errors import NetConfError


def conf(**backend: Any) -> netconf.NetConf:
    return netconf.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "bgp", **backend}})


def test_defaults_are_a_mesh_in_64512_with_graceful_restart() -> None:
    got = conf()
    assert got.backend_type == "bgp"
    assert got.bgp == BgpConf(asn=64512, peering=MESH, graceful_restart=True, bfd=False, hold_time=6)
    assert got.bgp.graceful_restart_time == 5  # + connect retry 3 s: a dead BIRD's routes go within 10 s


def test_graceful_restart_time_is_configurable() -> None:
    got = conf(GracefulRestartTime=120)
    assert got.bgp is not None and got.bgp.graceful_restart_time == 120


def test_other_backends_carry_no_bgp_options() -> None:
    assert netconf.parse({"Network": "10.244.0.0/16"}).bgp is None


def test_route_reflectors_and_peers() -> None:
    rr = conf(ASN=65000, Peering={"RouteReflectors": ["node-1", "node-2"]}, Password="s3cret", BFD=True)
    assert rr.bgp == BgpConf(65000, REFLECTORS, ("node-1", "node-2"), (), "s3cret", True)
    peers = conf(Peering={"Peers": [{"Address": "192.168.51.1", "ASN": 64513, "Nodes": ["node-1"]},
                                    {"Address": "192.168.52.1", "ASN": 4200000000}]},
                 GracefulRestart=False, HoldTime=30)  # fmt: skip
    assert peers.bgp is not None
    assert peers.bgp.peering == PEERS and not peers.bgp.graceful_restart and peers.bgp.hold_time == 30
    assert peers.bgp.peers == (
        BgpPeer(ipaddress.IPv4Address("192.168.51.1"), 64513, ("node-1",)),
        BgpPeer(ipaddress.IPv4Address("192.168.52.1"), 4200000000),
    )
    assert peers.bgp.peers[0].serves("node-1") and not peers.bgp.peers[0].serves("node-2")
    assert peers.bgp.peers[1].serves("node-2")


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ({"ASN": 0}, "Backend.ASN"),
        ({"ASN": "64512"}, "Backend.ASN"),
        ({"ASN": 1 << 32}, "Backend.ASN"),
        ({"Peering": "full"}, "Backend.Peering"),
        ({"Peering": {"RouteReflectors": ["a"], "Peers": []}}, "Backend.Peering"),
        ({"Peering": {"RouteReflectors": []}}, "Backend.Peering.RouteReflectors"),
        ({"Peering": {"RouteReflectors": ["Node_1"]}}, "Backend.Peering.RouteReflectors"),
        ({"Peering": {"RouteReflectors": ["a", "a"]}}, "Backend.Peering.RouteReflectors"),
        ({"Peering": {"Peers": []}}, "Backend.Peering.Peers"),
        ({"Peering": {"Peers": ["10.0.0.1"]}}, "Backend.Peering.Peers[0]"),
        ({"Peering": {"Peers": [{"Address": "10.0.0.300", "ASN": 1}]}}, "Backend.Peering.Peers[0].Address"),
        ({"Peering": {"Peers": [{"Address": "0.0.0.0", "ASN": 1}]}}, "Backend.Peering.Peers[0].Address"),
        ({"Peering": {"Peers": [{"Address": "10.0.0.1"}]}}, "Backend.Peering.Peers[0].ASN"),
        ({"Peering": {"Peers": [{"Address": "10.0.0.1", "ASN": 1, "Port": 1}]}}, "Backend.Peering.Peers[0].Port"),
        ({"Peering": {"Peers": [{"Address": "10.0.0.1", "ASN": 1, "Nodes": "n"}]}}, "Backend.Peering.Peers[0].Nodes"),
        ({"Password": 'a"b'}, "Backend.Password"),
        ({"Password": "two words"}, "Backend.Password"),
        ({"Password": ""}, "Backend.Password"),
        ({"BFD": "yes"}, "Backend.BFD"),
        ({"GracefulRestart": 1}, "Backend.GracefulRestart"),
        ({"HoldTime": 2}, "Backend.HoldTime"),
        ({"GracefulRestartTime": 0}, "Backend.GracefulRestartTime"),
        ({"GracefulRestartTime": 4096}, "Backend.GracefulRestartTime"),
        ({"GracefulRestartTime": "9"}, "Backend.GracefulRestartTime"),
        ({"GracefulRestartTime": True}, "Backend.GracefulRestartTime"),
        ({"Hold": 9}, "Backend.Hold"),
    ],
)
def test_invalid_options_are_refused_naming_the_key(backend: dict[str, Any], key: str) -> None:
    with pytest.raises(NetConfError) as caught:
        conf(**backend)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"net-conf.json: {key}: ")
    assert "\n" not in str(caught.value)
