"""The plugin's own reader of flannel's subnet.env (kept apart from podnet to stay light)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from clew.cni import subnet_file
from clew.cni.subnet_file import SubnetFileError

GOOD = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


def test_reads_flannels_file() -> None:
    s = subnet_file.parse(GOOD)
    assert s.network == IPv4Network("10.244.0.0/16")
    assert s.subnet == IPv4Network("10.244.1.0/24")
    assert s.gateway == IPv4Address("10.244.1.1")
    assert (s.mtu, s.ipmasq) == (1450, True)


def test_comments_blank_lines_order_and_quotes() -> None:
    text = '# written by flanneld\n\nFLANNEL_IPMASQ=false\nFLANNEL_MTU="8950"\nFLANNEL_SUBNET=10.244.7.0/24\n'
    s = subnet_file.parse(text + "FLANNEL_NETWORK=10.244.0.0/16\n")
    assert s.gateway == IPv4Address("10.244.7.1")  # network + 1 even if written as the network
    assert (s.mtu, s.ipmasq) == (8950, False)


def test_missing_keys_are_all_named() -> None:
    with pytest.raises(SubnetFileError, match=r"/x/subnet\.env: missing FLANNEL_MTU, FLANNEL_IPMASQ$"):
        subnet_file.parse("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n", "/x/subnet.env")


@pytest.mark.parametrize(
    ("replace", "says"),
    [
        ("FLANNEL_SUBNET=10.244.1.1/31", "too small"),
        ("FLANNEL_SUBNET=10.244.1.300/24", "bad address"),
        ("FLANNEL_MTU=huge", "FLANNEL_MTU"),
        ("FLANNEL_MTU=40", "FLANNEL_MTU"),
        ("FLANNEL_IPMASQ=maybe", "FLANNEL_IPMASQ"),
    ],
)
def test_bad_values(replace: str, says: str) -> None:
    key = replace.split("=")[0]
    text = "\n".join(replace if line.startswith(key + "=") else line for line in GOOD.splitlines())
    with pytest.raises(SubnetFileError, match=says):
        subnet_file.parse(text)


def test_not_key_value() -> None:
    with pytest.raises(SubnetFileError, match="not KEY=VALUE"):
        subnet_file.parse(GOOD + "garbage\n")


def test_missing_file_is_marked(tmp_path: Path) -> None:
    with pytest.raises(SubnetFileError) as err:
        subnet_file.read(str(tmp_path / "nope.env"))
    assert err.value.missing
    (tmp_path / "ok.env").write_text(GOOD)
    assert subnet_file.read(str(tmp_path / "ok.env")).mtu == 1450


def test_agrees_with_the_pod_networks_writer(tmp_path: Path) -> None:
    """What the agent writes (podnet.subnet_env) is what the plugin reads."""
    subnet_env = pytest.importorskip("clew.podnet.subnet_env")
    written = subnet_env.SubnetEnv.for_subnet(
        IPv4Network("10.244.0.0/16"), IPv4Network("10.244.3.0/24"), 1450, ipmasq=True
    )
    path = tmp_path / "subnet.env"
    written.write(path)
    read = subnet_file.read(str(path))
    assert (read.network, read.subnet, read.gateway, read.mtu, read.ipmasq) == (
        IPv4Network("10.244.0.0/16"),
        IPv4Network("10.244.3.0/24"),
        IPv4Address("10.244.3.1"),
        1450,
        True,
    )
