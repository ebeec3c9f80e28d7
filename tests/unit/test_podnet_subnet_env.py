"""subnet.env: flannel's fixed order, atomic writes, round trip, errors naming missing keys."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from clew.podnet import subnet_env
from clew.podnet.errors import SubnetEnvError
from clew.podnet.subnet_env import SubnetEnv

NET = ipaddress.IPv4Network("10.244.0.0/16")
SUBNET = ipaddress.IPv4Network("10.244.1.0/24")
FLANNEL_TEXT = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


def test_render_is_flannels_file() -> None:
    env = SubnetEnv.for_subnet(NET, SUBNET, 1450, True)
    assert env.subnet == ipaddress.IPv4Interface("10.244.1.1/24")
    assert env.gateway == ipaddress.IPv4Address("10.244.1.1") and env.node_subnet == SUBNET
    assert env.render() == FLANNEL_TEXT
    assert "FLANNEL_IPMASQ=false" in SubnetEnv.for_subnet(NET, SUBNET, 1500, False).render()


def test_write_read_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run" / "flannel" / "subnet.env"
    env = SubnetEnv.for_subnet(NET, SUBNET, 1450, True)
    env.write(path)
    assert path.read_text() == FLANNEL_TEXT
    assert subnet_env.read(path) == env
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    before = path.stat().st_ino
    SubnetEnv.for_subnet(NET, SUBNET, 1500, False).write(path)
    assert path.stat().st_ino != before  # replaced by rename, never rewritten in place
    assert subnet_env.read(path).mtu == 1500
    assert os.listdir(path.parent) == ["subnet.env"]  # no temporary file left behind


def test_parse_tolerates_order_blanks_and_comments() -> None:
    text = (
        "# written by flanneld\n\nFLANNEL_IPMASQ=false\nFLANNEL_MTU=1500\n"
        "FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_NETWORK=10.244.0.0/16\n"
    )
    env = subnet_env.parse(text)
    assert (env.mtu, env.ipmasq, env.node_subnet) == (1500, False, SUBNET)


def test_missing_keys_are_named_together(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    path.write_text("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=true\n")
    with pytest.raises(SubnetEnvError) as info:
        subnet_env.read(path)
    assert str(info.value) == f"{path} is missing FLANNEL_NETWORK, FLANNEL_MTU"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("FLANNEL_MTU=big", "FLANNEL_MTU=big"),
        ("FLANNEL_MTU=20", "from 68 to 65535"),
        ("FLANNEL_IPMASQ=yes", "true or false"),
        ("FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16", "several cluster networks"),
        ("garbage", "is not KEY=value"),
    ],
)
def test_bad_values_are_named(line: str, fragment: str) -> None:
    lines = dict(item.split("=", 1) for item in FLANNEL_TEXT.split())
    key = line.split("=", 1)[0]
    lines.pop(key, None)
    text = "\n".join(f"{k}={v}" for k, v in lines.items()) + "\n" + line + "\n"
    with pytest.raises(SubnetEnvError, match=fragment):
        subnet_env.parse(text, origin="x.env")


def test_unreadable_file() -> None:
    with pytest.raises(SubnetEnvError, match=re.escape("cannot read /nonexistent/subnet.env")):
        subnet_env.read("/nonexistent/subnet.env")
