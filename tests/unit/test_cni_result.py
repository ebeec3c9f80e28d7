"""The ADD result in each spec version's shape, and prevResult read back from each."""

from __future__ import annotations

import pytest

from clew.cni import errors, result
from clew.cni.config import SUPPORTED_VERSIONS
from clew.cni.errors import CniError
from clew.cni.result import Interface, IpConfig, Result, Route

ADD = Result(
    interfaces=(
        Interface("cni0", "0a:00:00:00:00:01", 1450),
        Interface("veth1a2b3c4d", "0a:00:00:00:00:02", 1450),
        Interface("eth0", "0a:00:00:00:00:03", 1450, "/run/netns/pod"),
    ),
    ips=(IpConfig("10.244.1.5/24", "10.244.1.1", 2),),
    routes=(Route("0.0.0.0/0", "10.244.1.1"),),
)

INTERFACES_1_0 = [
    {"name": "cni0", "mac": "0a:00:00:00:00:01"},
    {"name": "veth1a2b3c4d", "mac": "0a:00:00:00:00:02"},
    {"name": "eth0", "mac": "0a:00:00:00:00:03", "sandbox": "/run/netns/pod"},
]
ROUTES = [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]

EXPECTED = {
    # 0.3.x and 0.4.0: ips[].version; no interface mtu
    "0.3.1": {
        "cniVersion": "0.3.1",
        "interfaces": INTERFACES_1_0,
        "ips": [{"version": "4", "address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}],
        "routes": ROUTES,
    },
    "0.4.0": {
        "cniVersion": "0.4.0",
        "interfaces": INTERFACES_1_0,
        "ips": [{"version": "4", "address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}],
        "routes": ROUTES,
    },
    # 1.0.0 dropped ips[].version
    "1.0.0": {
        "cniVersion": "1.0.0",
        "interfaces": INTERFACES_1_0,
        "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}],
        "routes": ROUTES,
    },
    # 1.1.0 added interfaces[].mtu
    "1.1.0": {
        "cniVersion": "1.1.0",
        "interfaces": [{**i, "mtu": 1450} for i in INTERFACES_1_0],
        "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}],
        "routes": ROUTES,
    },
}


@pytest.mark.parametrize("version", list(EXPECTED))
def test_result_shape_per_version(version: str) -> None:
    assert ADD.to_json(version) == EXPECTED[version]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_result_reads_back_from_every_version(version: str) -> None:
    back = result.parse(ADD.to_json(version))
    assert back.ips == ADD.ips
    assert back.routes == ADD.routes
    assert [(i.name, i.mac, i.sandbox) for i in back.interfaces] == [(i.name, i.mac, i.sandbox) for i in ADD.interfaces]


def test_empty_fields_are_omitted() -> None:
    bare = Result(interfaces=(Interface("eth0"),), ips=(IpConfig("10.0.0.2/24", interface=0),))
    assert bare.to_json("1.1.0") == {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.0.0.2/24", "interface": 0}],  # index 0 is kept
    }
    assert Result().to_json("1.0.0") == {"cniVersion": "1.0.0"}
    assert Result(routes=(Route("10.0.0.0/8"),)).to_json("1.0.0")["routes"] == [{"dst": "10.0.0.0/8"}]


def test_sandbox_interface_lookup() -> None:
    assert ADD.sandbox_interface("eth0") == (2, ADD.interfaces[2])
    assert ADD.sandbox_interface("cni0") is None  # not in a sandbox
    assert ADD.sandbox_interface("eth1") is None


@pytest.mark.parametrize(
    "prev",
    [
        {"interfaces": "eth0"},
        {"interfaces": [{"mac": "x"}]},
        {"ips": [{"gateway": "10.0.0.1"}]},
        {"ips": [{"address": "10.0.0.2/24", "interface": 3}], "interfaces": [{"name": "eth0"}]},
        {"ips": [{"address": "10.0.0.2/24", "interface": "0"}], "interfaces": [{"name": "eth0"}]},
        {"routes": [{"gw": "10.0.0.1"}]},
    ],
    ids=[
        "interfaces-not-list",
        "interface-no-name",
        "ip-no-address",
        "index-out-of-range",
        "index-string",
        "route-no-dst",
    ],
)
def test_malformed_prev_result_is_invalid_config(prev: dict[str, object]) -> None:
    with pytest.raises(CniError) as err:
        result.parse(prev)
    assert err.value.code == errors.INVALID_CONFIG
