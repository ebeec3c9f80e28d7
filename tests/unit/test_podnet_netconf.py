"""net-conf.json parsing: flannel's keys, defaults and validation, errors naming the key."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clew.podnet import netconf
from clew.podnet.errors import NetConfError
from clew.podnet.netconf import NetConf

NET = ipaddress.IPv4Network("10.244.0.0/16")


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    want: NetConf


GOOD = [
    Case(
        "flannel manifest",
        {"Network": "10.244.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}},
        NetConf(NET, 24, "vxlan", 1, 8472, None),
    ),
    Case("no backend is vxlan", {"Network": "10.244.0.0/16"}, NetConf(NET, 24, "vxlan")),
    Case(
        "port 0 is the kernel's 8472",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 0}},
        NetConf(NET, 24, "vxlan", 1, 8472),
    ),
    Case(
        "vni, port, mtu",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 42, "Port": 4789, "MTU": 9000}},
        NetConf(NET, 24, "vxlan", 42, 4789, 9000),
    ),
    Case("host-gw", {"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}, NetConf(NET, 24, "host-gw")),
    Case("SubnetLen given", {"Network": "10.244.0.0/16", "SubnetLen": 26}, NetConf(NET, 26)),
    Case("/22 still gets /24", {"Network": "10.8.0.0/22"}, NetConf(ipaddress.IPv4Network("10.8.0.0/22"), 24)),
    Case("/23 gets prefix+2", {"Network": "10.8.0.0/23"}, NetConf(ipaddress.IPv4Network("10.8.0.0/23"), 25)),
    Case("/28 gets /30", {"Network": "10.8.0.0/28"}, NetConf(ipaddress.IPv4Network("10.8.0.0/28"), 30)),
    Case(
        "Learning false is fine",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Learning": False}},
        NetConf(NET),
    ),
]


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_valid(case: Case) -> None:
    assert netconf.parse(json.dumps(case.doc)) == case.want
    assert netconf.parse(case.doc) == case.want


BAD = [
    ("no Network", {}, "Network", "required"),
    ("Network not a string", {"Network": 10}, "Network", "must be an IPv4 CIDR string"),
    ("Network host bits", {"Network": "10.244.1.0/16"}, "Network", "not an IPv4 network CIDR"),
    ("Network IPv6", {"Network": "fd00::/64"}, "Network", "not an IPv4 network CIDR"),
    ("Network too small", {"Network": "10.0.0.0/29"}, "Network", "too small"),
    ("SubnetLen > 30", {"Network": "10.244.0.0/16", "SubnetLen": 31}, "SubnetLen", "at most 30"),
    ("SubnetLen too big a share", {"Network": "10.244.0.0/16", "SubnetLen": 17}, "SubnetLen", "fewer than four"),
    ("SubnetLen a string", {"Network": "10.244.0.0/16", "SubnetLen": "24"}, "SubnetLen", "must be an integer"),
    (
        "unknown backend",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}},
        "Backend.Type",
        'unknown backend "udp"; choose one of: vxlan, host-gw',
    ),
    ("Backend not an object", {"Network": "10.244.0.0/16", "Backend": "vxlan"}, "Backend", "must be an object"),
    (
        "VNI 0",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 0}},
        "Backend.VNI",
        "from 1 to 16777215",
    ),
    ("VNI bool", {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": True}}, "Backend.VNI", "integer"),
    (
        "Port too big",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 70000}},
        "Backend.Port",
        "0 to 65535",
    ),
    ("MTU tiny", {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "MTU": 100}}, "Backend.MTU", "576"),
    (
        "DirectRouting",
        {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": True}},
        "Backend.DirectRouting",
        "only false",
    ),
    ("IPv6", {"Network": "10.244.0.0/16", "EnableIPv6": True}, "EnableIPv6", "not supported"),
]


@pytest.mark.parametrize(("name", "doc", "key", "why"), BAD, ids=[b[0] for b in BAD])
def test_invalid_names_the_key(name: str, doc: dict[str, Any], key: str, why: str) -> None:
    with pytest.raises(NetConfError) as info:
        netconf.parse(doc)
    assert info.value.key == key
    assert str(info.value).startswith(f"net-conf.json: {key}: ")
    assert why in str(info.value)


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(NetConfError, match="not JSON"):
        netconf.parse("{")
    with pytest.raises(NetConfError, match="must be a JSON object"):
        netconf.parse("[1]")


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "net-conf.json"
    path.write_text('{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}')
    assert netconf.load(path).backend_type == "host-gw"
    with pytest.raises(NetConfError, match="cannot read"):
        netconf.load(tmp_path / "missing.json")
