"""clew-cni's entry point without root: run(env, stdin, stdout) as a runtime calls it.

Only paths that never reach the kernel are exercised here (errors before any kernel call, VERSION,
STATUS, DEL and GC of attachments whose namespace is already gone); tests/kernel/test_cni.py
does the rest in throwaway namespaces.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clew.cni import errors, netns_guard, plugin

SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
ATTACH = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/nope", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def conf(tmp: Path, **over: object) -> str:
    base: dict[str, object] = {
        "cniVersion": "1.1.0",
        "name": "cbr0",
        "type": "clew",
        "subnetFile": str(tmp / "subnet.env"),
        "dataDir": str(tmp / "data"),
    }
    base.update(over)
    return json.dumps(base)


def call(command: str, stdin: str | bytes, **env: str) -> tuple[int, dict[str, object] | None]:
    out = io.StringIO()
    rc = plugin.run({"CNI_COMMAND": command, **env}, stdin, out)
    text = out.getvalue()
    return rc, (json.loads(text) if text else None)


def assert_error(got: tuple[int, dict[str, object] | None], code: int, *says: str) -> dict[str, object]:
    rc, obj = got
    assert rc == 1 and obj is not None, got
    assert obj["code"] == code, obj
    assert set(obj) <= {"cniVersion", "code", "msg", "details"}
    text = f"{obj['msg']} {obj.get('details', '')}"
    for word in says:
        assert word in text, obj
    assert "Traceback" not in text
    return obj


def test_version() -> None:
    assert call("VERSION", '{"cniVersion": "1.1.0"}') == (
        0,
        {"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]},
    )
    assert call("VERSION", "")[0] == 0  # no config needed


def test_missing_command() -> None:
    out = io.StringIO()
    assert plugin.run({}, "{}", out) == 1
    assert json.loads(out.getvalue())["code"] == errors.INVALID_ENVIRONMENT
    assert "CNI_COMMAND" in out.getvalue()


def test_unknown_command(tmp_path: Path) -> None:
    assert_error(call("FROB", conf(tmp_path)), errors.INVALID_ENVIRONMENT, "FROB")


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        ("ADD", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
        ("CHECK", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
        ("DEL", ["CNI_CONTAINERID", "CNI_IFNAME"]),  # DEL works without a netns
    ],
)
def test_missing_env_vars_are_named(tmp_path: Path, command: str, missing: list[str]) -> None:
    obj = assert_error(call(command, conf(tmp_path)), errors.INVALID_ENVIRONMENT, *missing)
    assert obj["cniVersion"] == "1.1.0"
    one_missing = {k: v for k, v in ATTACH.items() if k != missing[-1]}
    assert_error(call(command, conf(tmp_path), **one_missing), errors.INVALID_ENVIRONMENT, missing[-1])


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CNI_CONTAINERID", "../../etc"),
        ("CNI_CONTAINERID", "-leading-dash"),
        ("CNI_CONTAINERID", "has space"),
        ("CNI_CONTAINERID", "a/b"),
        ("CNI_IFNAME", "eth0/../x"),
        ("CNI_IFNAME", "a" * 16),
        ("CNI_IFNAME", ".."),
        ("CNI_IFNAME", "eth:0"),
        ("CNI_IFNAME", "eth 0"),
        ("CNI_IFNAME", "e#th0"),  # ip -batch would read the rest of the line as a comment
        ("CNI_IFNAME", 'eth"0'),
        ("CNI_IFNAME", "eth'0"),
        ("CNI_IFNAME", "eth\\0"),
        ("CNI_IFNAME", "é" * 8),  # 8 characters, 16 bytes: the kernel counts bytes
        ("CNI_NETNS", "run/netns/relative"),
        ("CNI_NETNS", "/run/netns/x up"),
        ("CNI_NETNS", "/run/netns/x\nlink del cni0"),
        ("CNI_NETNS", "/run/netns/x#y"),
        ("CNI_NETNS", '/run/netns/"x"'),
    ],
)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_bad_container_id_or_ifname(tmp_path: Path, command: str, var: str, value: str) -> None:
    assert_error(call(command, conf(tmp_path), **{**ATTACH, var: value}), errors.INVALID_ENVIRONMENT, var)
    assert not (tmp_path / "data").exists()  # nothing written


def test_cni_args(tmp_path: Path) -> None:
    k8s = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c1;FOO=bar"
    assert call("DEL", conf(tmp_path), **ATTACH, CNI_ARGS=k8s)[0] == 0
    assert call("DEL", conf(tmp_path), **ATTACH, CNI_ARGS="K8S_POD_NAME=web")[0] == 0
    assert_error(call("DEL", conf(tmp_path), **ATTACH, CNI_ARGS="FOO=bar"), errors.INVALID_ENVIRONMENT, "FOO")
    assert_error(call("DEL", conf(tmp_path), **ATTACH, CNI_ARGS="novalue"), errors.INVALID_ENVIRONMENT, "CNI_ARGS")


def test_malformed_config_is_code_6(tmp_path: Path) -> None:
    obj = assert_error(call("ADD", '{"cniVersion": "0.4.0", ', **ATTACH), errors.DECODING_FAILURE)
    assert obj["cniVersion"] == "1.1.0"


def test_unsupported_version_is_code_1(tmp_path: Path) -> None:
    obj = assert_error(call("ADD", conf(tmp_path, cniVersion="0.2.0"), **ATTACH), errors.INCOMPATIBLE_VERSION, "0.2.0")
    assert obj["cniVersion"] == "1.1.0"


def test_errors_speak_the_requests_version(tmp_path: Path) -> None:
    obj = assert_error(call("ADD", conf(tmp_path, cniVersion="0.4.0", mtu="x"), **ATTACH), errors.INVALID_CONFIG)
    assert obj["cniVersion"] == "0.4.0"


@pytest.mark.parametrize(("command", "version"), [("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "0.4.0")])
def test_commands_newer_than_the_config_version(tmp_path: Path, command: str, version: str) -> None:
    assert_error(call(command, conf(tmp_path, cniVersion=version), **ATTACH), errors.INCOMPATIBLE_VERSION, command)


def test_status_without_subnet_file_is_50(tmp_path: Path) -> None:
    assert_error(call("STATUS", conf(tmp_path)), errors.NOT_AVAILABLE, "subnet.env", "no such file")


def test_status_with_incomplete_subnet_file_is_50(tmp_path: Path) -> None:
    (tmp_path / "subnet.env").write_text("FLANNEL_NETWORK=10.244.0.0/16\n")
    assert_error(call("STATUS", conf(tmp_path)), errors.NOT_AVAILABLE, "FLANNEL_SUBNET", "FLANNEL_MTU")


def test_status_ready(tmp_path: Path) -> None:
    (tmp_path / "subnet.env").write_text(SUBNET_ENV)
    assert call("STATUS", conf(tmp_path)) == (0, None)


def test_add_before_flannel_wrote_the_subnet_file_is_try_again(tmp_path: Path) -> None:
    assert_error(call("ADD", conf(tmp_path), **ATTACH), errors.TRY_AGAIN_LATER, "subnet.env")


def test_add_with_incomplete_subnet_file_names_the_keys(tmp_path: Path) -> None:
    (tmp_path / "subnet.env").write_text("FLANNEL_SUBNET=10.244.1.1/24\n")
    assert_error(call("ADD", conf(tmp_path), **ATTACH), errors.INVALID_CONFIG, "FLANNEL_NETWORK", "FLANNEL_MTU")


def test_add_into_missing_netns_is_code_8_and_takes_nothing(tmp_path: Path) -> None:
    (tmp_path / "subnet.env").write_text(SUBNET_ENV)
    assert_error(call("ADD", conf(tmp_path), **ATTACH), errors.INVALID_NETNS, "/run/netns/nope")
    assert not (tmp_path / "data").exists()


def test_store_io_failure_is_code_5(tmp_path: Path) -> None:
    (tmp_path / "subnet.env").write_text(SUBNET_ENV)
    (tmp_path / "data").write_text("a file where the store folder should be")
    env = {**ATTACH, "CNI_NETNS": str(tmp_path)}  # exists; the store fails before any kernel call
    assert_error(call("ADD", conf(tmp_path), **env), errors.IO_FAILURE)


def seed_store(tmp: Path, owners: dict[str, str]) -> Path:
    folder = tmp / "data" / "cbr0"
    folder.mkdir(parents=True)
    for ip, owner in owners.items():
        (folder / ip).write_bytes(owner.encode())
    return folder


def test_del_unknown_container_and_twice_is_success(tmp_path: Path) -> None:
    assert call("DEL", conf(tmp_path), **ATTACH) == (0, None)  # no store at all
    folder = seed_store(tmp_path, {"10.244.1.2": "c1\r\neth0", "10.244.1.3": "c2\r\neth0"})
    env = {k: v for k, v in ATTACH.items() if k != "CNI_NETNS"}  # the runtime lost the netns
    assert call("DEL", conf(tmp_path), **env) == (0, None)
    assert call("DEL", conf(tmp_path), **env) == (0, None)
    assert sorted(p.name for p in folder.iterdir()) == ["10.244.1.3", "lock"]
    assert call("DEL", conf(tmp_path), **{**env, "CNI_CONTAINERID": "unknown"}) == (0, None)


def test_del_does_not_need_the_subnet_file(tmp_path: Path) -> None:
    seed_store(tmp_path, {"10.244.1.2": "c1\r\neth0"})
    assert call("DEL", conf(tmp_path, subnetFile="/nonexistent"), **ATTACH) == (0, None)
    assert not (tmp_path / "data" / "cbr0" / "10.244.1.2").exists()


def test_check_needs_prev_result(tmp_path: Path) -> None:
    assert_error(call("CHECK", conf(tmp_path), **ATTACH), errors.INVALID_CONFIG, "prevResult")


def test_check_unknown_container_is_code_3(tmp_path: Path) -> None:
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/nope"}]}
    assert_error(call("CHECK", conf(tmp_path, prevResult=prev), **ATTACH), errors.UNKNOWN_CONTAINER, "c1")


def test_gc_releases_attachments_not_listed(tmp_path: Path) -> None:
    folder = seed_store(tmp_path, {"10.244.1.2": "c1\r\neth0", "10.244.1.3": "c2\r\neth0", "10.244.1.4": "c3\r\neth1"})
    valid = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c3", "ifname": "eth0"}]
    assert call("GC", conf(tmp_path, **{"cni.dev/valid-attachments": valid})) == (0, None)
    assert sorted(p.name for p in folder.iterdir()) == ["10.244.1.2", "lock"]


def test_gc_needs_the_valid_attachments(tmp_path: Path) -> None:
    assert_error(call("GC", conf(tmp_path)), errors.INVALID_CONFIG, "cni.dev/valid-attachments")


def test_executable_prints_error_json_on_stdout(tmp_path: Path) -> None:
    """``main`` as the runtime sees it: exit 1, the error object on stdout, nothing on stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", "from clew.cni.plugin import main; main()"],
        input=b"{broken",
        env={"CNI_COMMAND": "ADD", **ATTACH},
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == errors.DECODING_FAILURE
    assert proc.stderr == b""


def test_plugin_import_stays_light() -> None:
    """No pyroute2, typer, yaml or clew.podnet in the plugin's import path."""
    code = "import sys, clew.cni.plugin; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    heavy = {m for m in loaded if m.split(".")[0] in {"pyroute2", "typer", "click", "rich", "yaml", "subprocess"}}
    heavy |= {m for m in loaded if m.startswith(("clew.podnet", "clew.cli", "clew.kernel.netns", "dataclasses"))}
    assert heavy == set()


# -- CNI_NETNS that is the node's own namespace ----------------------------------------------------


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test instead of touching this process's namespace (the one under test here)."""

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("the plugin reached the kernel with the node's own namespace as CNI_NETNS")

    for name in ("attach", "detach", "check"):
        monkeypatch.setattr(plugin.bridge, name, refuse)


@pytest.mark.parametrize("path", ["/proc/self/ns/net", "/proc/thread-self/ns/net", f"/proc/{os.getpid()}/ns/net"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_the_nodes_own_netns_is_refused(tmp_path: Path, no_kernel: None, command: str, path: str) -> None:
    """Before: DEL deleted CNI_IFNAME (the node's eth0, cni0) in the node's namespace and returned 0."""
    folder = seed_store(tmp_path, {"10.244.1.2": "c1\r\neth0"})
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": path}]}
    err = assert_error(
        call(command, conf(tmp_path, prevResult=prev), **{**ATTACH, "CNI_NETNS": path}),
        errors.INVALID_ENVIRONMENT,
        f"CNI_NETNS {path} is the node's own network namespace",
    )
    assert "the namespace the plugin runs in" in str(err["details"])
    assert sorted(p.name for p in folder.iterdir()) == ["10.244.1.2"]  # nothing released, not even locked


def test_a_namespace_the_agent_was_told_is_the_nodes_is_refused(tmp_path: Path, no_kernel: None) -> None:
    """The agent passes its client's namespace; here a stand-in file plays it (same device and inode)."""
    stand_in = tmp_path / "client-netns"
    stand_in.write_text("")
    client = netns_guard.identity(str(stand_in))
    assert client is not None
    out = io.StringIO()
    env = {"CNI_COMMAND": "DEL", **ATTACH, "CNI_NETNS": str(stand_in)}
    assert plugin.run(env, conf(tmp_path), out, node_netns=[client]) == 1
    err = json.loads(out.getvalue())
    assert err["code"] == errors.INVALID_ENVIRONMENT
    assert "the namespace the runtime called the plugin from" in err["details"]


def test_other_and_missing_namespaces_pass_the_guard() -> None:
    netns_guard.refuse_node_netns("/run/netns/does-not-exist", "DEL")
    netns_guard.refuse_node_netns("", "DEL")
    netns_guard.refuse_node_netns("/proc/1/ns/mnt", "DEL")  # some other nsfs file: not this namespace


# -- GC and the result cache's leftover temp files -------------------------------------------------


def test_gc_removes_leftover_temp_files_but_not_a_fresh_one(tmp_path: Path) -> None:
    """A plugin killed between writing a cached result and its rename leaves ``….json.PID.tmp``."""
    results = tmp_path / "data" / "cbr0" / "results"
    results.mkdir(parents=True)
    old, fresh = results / "c9-eth0.json.4242.tmp", results / "c8-eth0.json.4243.tmp"
    old.write_text("{")
    fresh.write_text("{")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert call("GC", conf(tmp_path, **{"cni.dev/valid-attachments": []})) == (0, None)
    assert sorted(p.name for p in results.iterdir()) == [fresh.name]  # may be a concurrent ADD's, mid-save
