"""Every command, given bad input, says so in one line on stderr and exits non-zero — no traceback.

Each case runs ``python -m clew`` in a subprocess, as a user would. Cases are chosen to fail
before any work starts (nothing here creates a namespace or touches a kernel table): the
agent is always pointed at a namespace that does not exist, benches get invalid options, labs
a name that is not up. "Unreadable" inputs are read as user nobody when the tests run as root
(root reads any file).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MISSING_NS = "hcl-sweep-none"  # never created
OBJECTS = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
"""
RULESET = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
GOOD_CONFIG = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"


@pytest.fixture(scope="module")
def files() -> Iterator[dict[str, str]]:
    # not pytest's tmp_path: its parent is private to root, and user nobody must reach this one
    d = Path(tempfile.mkdtemp(prefix="hcl-sweep-"))
    d.chmod(0o755)
    try:
        yield _make_files(d)
    finally:
        (d / "locked").chmod(0o700)
        shutil.rmtree(d)


def _make_files(d: Path) -> dict[str, str]:
    paths = {
        "missing": d / "missing.yaml",
        "dir": d / "adir",
        "garbage": d / "garbage.yaml",
        "binary": d / "binary.bin",
        "objects": d / "objects.yaml",
        "ruleset": d / "ruleset.txt",
        "config": d / "config.yaml",
        "ipvs": d / "ipvs.yaml",
        "nftables": d / "nftables.yaml",
        "unreadable": d / "unreadable.yaml",
        "netconf_bad_cidr": d / "net-conf-cidr.json",
        "netconf_not_object": d / "net-conf-list.json",
        "dump_garbage": d / "dump-garbage",
        "empty_dir": d / "empty",
        "out": d / "out",
        "kubeconfig_garbage": d / "kubeconfig",
        "locked": d / "locked" / "objects.yaml",  # in a folder nobody may enter
    }
    paths["locked"].parent.mkdir()
    paths["locked"].write_text(OBJECTS)
    paths["locked"].parent.chmod(0o000)
    paths["dir"].mkdir()
    paths["empty_dir"].mkdir()
    paths["garbage"].write_text("{{{: ][ : :\n\t- - x: [\n")
    paths["binary"].write_bytes(bytes(range(256)) * 4)
    paths["objects"].write_text(OBJECTS)
    paths["ruleset"].write_text(RULESET)
    paths["config"].write_text(GOOD_CONFIG)
    paths["ipvs"].write_text(GOOD_CONFIG + "mode: ipvs\n")
    paths["nftables"].write_text(GOOD_CONFIG + "mode: nftables\n")
    paths["unreadable"].write_text(OBJECTS)
    paths["unreadable"].chmod(0o000)
    paths["netconf_bad_cidr"].write_text('{"Network": "10.244.0.0/99", "Backend": {"Type": "vxlan"}}')
    paths["netconf_not_object"].write_text('["Network"]')
    paths["dump_garbage"].mkdir()
    (paths["dump_garbage"] / "iptables-save.txt").write_bytes(bytes(range(256)))
    (paths["dump_garbage"] / "meta.json").write_text("{not json")
    paths["kubeconfig_garbage"].write_text("clusters: 7\n")
    return {k: str(v) for k, v in paths.items()}


F = dict[str, str]
Case = Callable[[F], list[str]]
TRACE = ["trace", "--src", "10.0.0.1", "--dst", "10.96.0.10"]
AGENT = ["agent", "--netns", MISSING_NS, "--once"]
EXPLAIN = ["explain", "service", "ns/web"]


def agent_ok(f: F) -> list[str]:
    """An agent command line that is fine up to the option under test."""
    return [*AGENT, "--config", f["config"], "--objects", f["dir"]]


CASES: dict[str, Case] = {
    # the command line itself
    "unknown command": lambda f: ["bogus"],
    "unknown option": lambda f: ["render", "--objects", f["objects"], "--bogus"],
    "missing required option": lambda f: ["trace", "--src", "10.0.0.1"],
    # render
    "render objects missing": lambda f: ["render", "--objects", f["missing"]],
    "render objects garbage": lambda f: ["render", "--objects", f["garbage"]],
    "render objects binary": lambda f: ["render", "--objects", f["binary"]],
    "render objects unreadable": lambda f: ["render", "--objects", f["unreadable"]],
    "render objects unreachable (locked)": lambda f: ["render", "--objects", f["locked"]],
    "render objects folder unreachable (locked)": lambda f: ["render", "--objects", str(Path(f["locked"]).parent)],
    "render config missing": lambda f: ["render", "--objects", f["objects"], "--config", f["missing"]],
    "render config is a folder": lambda f: ["render", "--objects", f["objects"], "--config", f["dir"]],
    "render config garbage": lambda f: ["render", "--objects", f["objects"], "--config", f["garbage"]],
    "render config binary": lambda f: ["render", "--objects", f["objects"], "--config", f["binary"]],
    "render config ipvs": lambda f: ["render", "--objects", f["objects"], "--config", f["ipvs"]],
    "render mode bogus": lambda f: ["render", "--objects", f["objects"], "--mode", "bogus"],
    "render bad node ip": lambda f: ["render", "--objects", f["objects"], "--node-ip", "300.1.1.1"],
    "render bad cluster cidr": lambda f: ["render", "--objects", f["objects"], "--cluster-cidr", "10.0.0.0/99"],
    # trace
    "trace bad src": lambda f: ["trace", "--src", "10.0.0", "--dst", "10.96.0.10", "--ruleset", f["ruleset"]],
    "trace bad dst": lambda f: ["trace", "--src", "10.0.0.1", "--dst", "::g", "--ruleset", f["ruleset"]],
    "trace port out of range": lambda f: [*TRACE, "--dport", "70000", "--ruleset", f["ruleset"]],
    "trace port not a number": lambda f: [*TRACE, "--sport", "http", "--ruleset", f["ruleset"]],
    "trace bad proto": lambda f: [*TRACE, "--proto", "icmp", "--ruleset", f["ruleset"]],
    "trace bad local ip": lambda f: [*TRACE, "--ruleset", f["ruleset"], "--local-ip", "x"],
    "trace netns relative path": lambda f: [*TRACE, "--netns", "relative/x"],
    "trace netns missing file": lambda f: [*TRACE, "--netns", "/proc/999999999/ns/net"],
    "trace two sources": lambda f: [*TRACE, "--ruleset", f["ruleset"], "--netns", MISSING_NS],
    "trace ruleset missing": lambda f: [*TRACE, "--ruleset", f["missing"]],
    "trace ruleset is a folder": lambda f: [*TRACE, "--ruleset", f["dir"]],
    "trace ruleset garbage": lambda f: [*TRACE, "--ruleset", f["garbage"]],
    "trace ruleset binary": lambda f: [*TRACE, "--ruleset", f["binary"]],
    "trace ruleset unreadable": lambda f: [*TRACE, "--ruleset", f["unreadable"]],
    "trace ruleset unreachable (locked)": lambda f: [*TRACE, "--ruleset", f["locked"]],
    "trace netns missing": lambda f: [*TRACE, "--netns", MISSING_NS],
    "trace netns path missing": lambda f: [*TRACE, "--netns", f"/run/netns/{MISSING_NS}"],
    "trace netns path not a namespace": lambda f: [*TRACE, "--netns", f["objects"]],
    "trace netns path is a folder": lambda f: [*TRACE, "--netns", f["dir"]],
    "trace netns bad name": lambda f: [*TRACE, "--netns", "a b/../c"],
    "trace dump missing": lambda f: [*TRACE, "--from-dump", f["missing"]],
    "trace dump is a file": lambda f: [*TRACE, "--from-dump", f["objects"]],
    "trace dump empty folder": lambda f: [*TRACE, "--from-dump", f["empty_dir"]],
    "trace dump garbage": lambda f: [*TRACE, "--from-dump", f["dump_garbage"]],
    # explain
    "explain bad name": lambda f: ["explain", "service", "Not A Name", "--ruleset", f["ruleset"]],
    "explain ruleset missing": lambda f: ["explain", "service", "ns/web", "--ruleset", f["missing"]],
    "explain ruleset is a folder": lambda f: ["explain", "service", "ns/web", "--ruleset", f["dir"]],
    "explain ruleset garbage": lambda f: ["explain", "service", "ns/web", "--ruleset", f["garbage"]],
    "explain netns path missing": lambda f: ["explain", "service", "ns/web", "--netns", f"/run/netns/{MISSING_NS}"],
    "explain netns not a namespace": lambda f: ["explain", "service", "ns/web", "--netns", f["objects"]],
    "explain objects missing": lambda f: [*EXPLAIN, "--ruleset", f["ruleset"], "--objects", f["missing"]],
    "explain objects garbage": lambda f: [*EXPLAIN, "--ruleset", f["ruleset"], "--objects", f["garbage"]],
    # dump
    "dump netns missing": lambda f: ["dump", "--netns", MISSING_NS, f["out"]],
    "dump netns path missing": lambda f: ["dump", "--netns", f"/run/netns/{MISSING_NS}", f["out"]],
    "dump netns not a namespace": lambda f: ["dump", "--netns", f["objects"], f["out"]],
    "dump netns is a folder": lambda f: ["dump", "--netns", f["dir"], f["out"]],
    "dump no folder": lambda f: ["dump", "--netns", MISSING_NS],
    # agent: always a namespace that does not exist, so nothing is ever programmed
    "agent config missing": lambda f: [*AGENT, "--config", f["missing"], "--objects", f["dir"]],
    "agent config is a folder": lambda f: [*AGENT, "--config", f["dir"], "--objects", f["dir"]],
    "agent config garbage": lambda f: [*AGENT, "--config", f["garbage"], "--objects", f["dir"]],
    "agent config binary": lambda f: [*AGENT, "--config", f["binary"], "--objects", f["dir"]],
    "agent config ipvs": lambda f: [*AGENT, "--config", f["ipvs"], "--objects", f["dir"]],
    "agent config unreadable": lambda f: [*AGENT, "--config", f["unreadable"], "--objects", f["dir"]],
    "agent net-conf missing": lambda f: [*agent_ok(f), "--net-conf", f["missing"]],
    "agent net-conf is a folder": lambda f: [*agent_ok(f), "--net-conf", f["dir"]],
    "agent net-conf garbage": lambda f: [*agent_ok(f), "--net-conf", f["garbage"]],
    "agent net-conf bad cidr": lambda f: [*agent_ok(f), "--net-conf", f["netconf_bad_cidr"]],
    "agent net-conf not an object": lambda f: [*agent_ok(f), "--net-conf", f["netconf_not_object"]],
    "agent kubeconfig missing": lambda f: [*AGENT, "--config", f["config"], "--kubeconfig", f["missing"]],
    "agent kubeconfig garbage": lambda f: [*AGENT, "--config", f["config"], "--kubeconfig", f["kubeconfig_garbage"]],
    "agent objects and kubeconfig": lambda f: [*agent_ok(f), "--kubeconfig", f["kubeconfig_garbage"]],
    # demo
    "demo extra argument": lambda f: ["demo", "extra"],
    # benches: invalid options, refused before any namespace is made
    "bench sync zero services": lambda f: ["bench", "sync", "--services", "0"],
    "bench sync mode ipvs": lambda f: ["bench", "sync", "--mode", "ipvs"],
    "bench sync services not a number": lambda f: ["bench", "sync", "--services", "many"],
    "bench render zero services": lambda f: ["bench", "render", "--services", "0"],
    "bench trace bad traces": lambda f: ["bench", "trace", "--traces", "-1"],
    "bench cni too many pods": lambda f: ["bench", "cni", "--pods", "500"],
    "bench podnet bad seconds": lambda f: ["bench", "podnet", "--seconds", "0"],
    # lab (owned by the lab's helper): only cheap inputs refused before anything is built
    "lab up zero nodes": lambda f: ["lab", "up", "--name", "hcl-sw", "--nodes", "0"],
    "lab up bad backend": lambda f: ["lab", "up", "--name", "hcl-sw", "--backend", "bogus"],
    "lab apply no lab": lambda f: ["lab", "apply", "--name", "hcl-sw", "-f", f["objects"]],
    "lab status no lab": lambda f: ["lab", "status", "--name", "hcl-sw"],
}


def _nobody() -> dict[str, int]:
    """Read "unreadable" files as user nobody when running as root (root reads everything)."""
    return {"user": 65534, "group": 65534} if os.geteuid() == 0 else {}


def run_clew(args: list[str], *, as_nobody: bool = False, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CLEW_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "clew", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        input=stdin,
        cwd="/",
        **(_nobody() if as_nobody else {}),
    )


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_a_non_zero_exit(name: str, files: F) -> None:
    args = CASES[name](files)
    proc = run_clew(args, as_nobody="unreadable" in name or "locked" in name)
    err = proc.stderr
    assert "Traceback" not in err, err
    assert proc.returncode != 0, f"exit 0 for {args}: {proc.stdout[-500:]}"
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("clew: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"want one 'clew: error:' line last, got: {err!r}"
    assert "internal error" not in err, f"an unexpected exception, not a handled error: {err!r}"
    others = [line for line in lines if not line.startswith(("clew: error: ", "clew: warning: ", "clew: note: "))]
    assert not others, f"stderr has more than the error: {err!r}"


@pytest.mark.parametrize("config", ["ipvs"])
def test_render_refuses_a_mode_the_agent_refuses_with_the_same_line(config: str, files: F) -> None:
    """`clew render` used to print iptables rules for ``mode: ipvs``: its --mode default won."""
    render = run_clew(["render", "--objects", files["objects"], "--config", files[config]])
    agent = run_clew([*AGENT, "--config", files[config], "--objects", files["dir"]])
    assert render.returncode == agent.returncode == 2
    assert render.stdout == ""
    assert render.stderr == agent.stderr
    assert f"mode: {config!r}" in render.stderr or f"mode {config!r}" in render.stderr


def test_render_mode_flag_and_config_agree(files: F) -> None:
    ok = run_clew(["render", "--objects", files["objects"], "--config", files["config"], "--mode", "iptables"])
    assert ok.returncode == 0 and ok.stdout.startswith("*filter"), ok.stderr
    nft = run_clew(["render", "--objects", files["objects"], "--mode", "nftables"])
    assert nft.returncode == 0 and nft.stdout.startswith("add table ip clew\n"), nft.stderr
    from_config = run_clew(["render", "--objects", files["objects"], "--config", files["nftables"]])
    assert from_config.returncode == 0 and from_config.stdout.startswith("add table ip clew\n"), from_config.stderr
