"""clew-cni's network config: defaults, overrides, version negotiation and the spec's error codes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from clew.cni import config, errors
from clew.cni.config import Attachment
from clew.cni.errors import CniError


def conf(**over: object) -> str:
    base: dict[str, object] = {"cniVersion": "1.1.0", "name": "cbr0", "type": "clew"}
    base.update(over)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def test_defaults_are_flannels_and_host_locals() -> None:
    c = config.parse(conf())
    assert (c.cni_version, c.name, c.type) == ("1.1.0", "cbr0", "clew")
    assert c.subnet_file == "/run/flannel/subnet.env"
    assert c.data_dir == "/var/lib/cni/networks"
    assert c.bridge == "cni0"
    assert c.hairpin_mode is True
    assert c.mtu is None
    assert c.prev_result is None
    assert c.valid_attachments is None


def test_every_key_is_read() -> None:
    c = config.parse(
        conf(
            subnetFile="/tmp/s.env",
            dataDir="/tmp/d",
            bridge="br-pods",
            hairpinMode=False,
            mtu=1400,
            prevResult={"cniVersion": "1.1.0"},
            runtimeConfig={"portMappings": []},
            args={"cni": {}},
            unknownKey="ignored like the reference plugins do",
            **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]},
        )
    )
    assert (c.subnet_file, c.data_dir, c.bridge, c.hairpin_mode, c.mtu) == (
        "/tmp/s.env",
        "/tmp/d",
        "br-pods",
        False,
        1400,
    )
    assert c.prev_result == {"cniVersion": "1.1.0"}
    assert c.valid_attachments == (Attachment("c1", "eth0"),)


@dataclass(frozen=True)
class Case:
    id: str
    stdin: str | bytes
    code: int
    says: str


CASES = [
    Case("not-json", '{"cniVersion": "1.1.0",', errors.DECODING_FAILURE, "not JSON"),
    Case("not-an-object", "[1, 2]", errors.DECODING_FAILURE, "not a JSON object"),
    Case("binary", b"\xff\xfe{", errors.DECODING_FAILURE, "not JSON"),
    Case("no-name", conf(name=None), errors.INVALID_CONFIG, "name"),
    Case("no-type", conf(type=None), errors.INVALID_CONFIG, "type"),
    Case("name-traversal", conf(name="../etc"), errors.INVALID_CONFIG, "name"),
    Case("name-slash", conf(name="a/b"), errors.INVALID_CONFIG, "name"),
    Case("mtu-string", conf(mtu="1450"), errors.INVALID_CONFIG, "mtu"),
    Case("mtu-bool", conf(mtu=True), errors.INVALID_CONFIG, "mtu"),
    Case("mtu-small", conf(mtu=40), errors.INVALID_CONFIG, "mtu"),
    Case("hairpin-string", conf(hairpinMode="yes"), errors.INVALID_CONFIG, "hairpinMode"),
    Case("bridge-too-long", conf(bridge="a" * 16), errors.INVALID_CONFIG, "bridge"),
    Case("bridge-empty", conf(bridge=""), errors.INVALID_CONFIG, "bridge"),
    Case("data-dir-number", conf(dataDir=5), errors.INVALID_CONFIG, "dataDir"),
    Case("prev-result-list", conf(prevResult=[]), errors.INVALID_CONFIG, "prevResult"),
    Case("runtime-config-list", conf(runtimeConfig=[]), errors.INVALID_CONFIG, "runtimeConfig"),
    Case(
        "attachments-not-list",
        conf(**{"cni.dev/valid-attachments": {"containerID": "c"}}),
        errors.INVALID_CONFIG,
        "valid-attachments",
    ),
    Case(
        "attachment-without-ifname",
        conf(**{"cni.dev/valid-attachments": [{"containerID": "c"}]}),
        errors.INVALID_CONFIG,
        "valid-attachments",
    ),
    Case("version-unsupported", conf(cniVersion="0.2.0"), errors.INCOMPATIBLE_VERSION, "0.2.0"),
    Case("version-missing-means-0.1.0", conf(cniVersion=None), errors.INCOMPATIBLE_VERSION, "0.1.0"),
    Case("version-future", conf(cniVersion="2.0.0"), errors.INCOMPATIBLE_VERSION, "supports"),
    Case("version-not-string", conf(cniVersion=1), errors.INVALID_CONFIG, "cniVersion"),
    Case("versions-not-list", conf(cniVersion="9.9.9", cniVersions="1.0.0"), errors.INVALID_CONFIG, "cniVersions"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_gets_the_spec_code(case: Case) -> None:
    with pytest.raises(CniError) as err:
        config.parse(case.stdin)
    assert err.value.code == case.code
    assert case.says in f"{err.value.msg} {err.value.details}"


@pytest.mark.parametrize("version", config.SUPPORTED_VERSIONS)
def test_every_supported_version_is_accepted(version: str) -> None:
    assert config.parse(conf(cniVersion=version)).cni_version == version


def test_cni_versions_pick_the_highest_supported() -> None:
    assert config.parse(conf(cniVersion=None, cniVersions=["0.4.0", "1.0.0", "9.0.0"])).cni_version == "1.0.0"
    assert config.parse(conf(cniVersion="3.0.0", cniVersions=["0.3.1", "3.0.0"])).cni_version == "0.3.1"
    # an explicit supported cniVersion is what the runtime negotiated: keep it
    assert config.parse(conf(cniVersion="0.4.0", cniVersions=["1.1.0"])).cni_version == "0.4.0"
    with pytest.raises(CniError) as err:
        config.parse(conf(cniVersion=None, cniVersions=["2.0.0"]))
    assert err.value.code == errors.INCOMPATIBLE_VERSION


def test_old_attachments_key_is_read_when_the_new_one_is_absent() -> None:
    old = [{"containerID": "c1", "ifname": "eth0"}]
    assert config.parse(conf(**{"cni.dev/attachments": old})).valid_attachments == (Attachment("c1", "eth0"),)
    both = {"cni.dev/attachments": old, "cni.dev/valid-attachments": []}
    assert config.parse(conf(**both)).valid_attachments == ()


def test_bytes_stdin_is_accepted() -> None:
    assert config.parse(conf().encode()).name == "cbr0"


@pytest.mark.parametrize(
    ("name", "ok"),
    [("eth0", True), ("a" * 15, True), ("a" * 16, False), ("", False), (".", False), ("..", False),
     ("e/th", False), ("e:0", False), ("e 0", False), ("e\t0", False), ("veth-1.2", True),
     # what ip -batch reads specially (# comment, quotes, backslash), control characters, bytes not chars
     ("e#0", False), ("#e", False), ('e"0', False), ("e'0", False), ("e\\0", False), ("e\x010", False),
     ("e\n0", False), ("é" * 7, True), ("é" * 8, False),
     # ip keywords are kernel-legal names: cni_net always writes them after ``dev``/``name``
     ("help", True), ("up", True), ("-x", True)],
)  # fmt: skip
def test_ifname_rule(name: str, ok: bool) -> None:
    assert config.valid_ifname(name) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [("c1", True), ("0abc_d.e-f", True), ("", False), ("-x", False), ("_x", False), (".x", False),
     ("a/b", False), ("a b", False), ("ä", False), ("a..b", True)],
)  # fmt: skip
def test_id_rule(text: str, ok: bool) -> None:
    assert config.valid_id(text) is ok


def test_version_hint_falls_back_to_latest() -> None:
    assert config.version_hint(conf(cniVersion="0.4.0")) == "0.4.0"
    assert config.version_hint("not json") == config.LATEST
    assert config.version_hint(conf(cniVersion="0.1.0")) == config.LATEST
