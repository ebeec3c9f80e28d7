"""kubectl habits: ``-h``, ``--version``, examples and defaults in help, a version in every JSON
document, ``-`` for standard input, progress only on a terminal, ``--plot`` saying how to get
matplotlib, and a bug still printing one line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer

from clew import __version__
from clew.bench.sync import SyncBench
from clew.cli import progress as progress_mod
from clew.cli.main import app, main

OBJECTS = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5]}]
ports: [{name: http, port: 8080}]
"""
RENDER = ["render", "--node-name", "n1", "--cluster-cidr", "10.244.0.0/16"]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def clew(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clew", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def _commands(group: Any = None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    group = group if group is not None else typer.main.get_command(app)
    out: list[tuple[str, ...]] = []
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        if getattr(cmd, "commands", None):
            out += _commands(cmd, (*path, name))
        else:
            out.append((*path, name))
    return out


COMMANDS = _commands()


def test_every_command_is_found() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"render", "trace", "dump", "agent", "demo", "explain service", "bench sync", "lab up"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_dash_h_is_help_and_each_help_has_an_example(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, short, _ = run([*command, "-h"], capsys)
    assert code == 0 and short.startswith(f"Usage: clew {' '.join(command)}")
    code, long, _ = run([*command, "--help"], capsys)
    assert code == 0 and long == short
    assert "\n  Example" in short, f"no example in clew {' '.join(command)} --help"


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["trace", "-h"], capsys)
    assert "[default: 80;" in out and "[default: tcp]" in out
    _, out, _ = run(["bench", "sync", "-h"], capsys)
    assert "[default: 10000]" in out and "[default: 50;" in out


def test_version_and_root_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"], capsys) == (0, f"clew {__version__}\n", "")
    code, out, _ = run(["-h"], capsys)
    assert code == 0 and "Examples:" in out and "--version" in out


@pytest.fixture
def objects_file(tmp_path: Path) -> Path:
    path = tmp_path / "objects.yaml"
    path.write_text(OBJECTS)
    return path


@pytest.fixture
def ruleset_file(tmp_path: Path, objects_file: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = run([*RENDER, "--objects", str(objects_file)], capsys)
    assert code == 0, err
    path = tmp_path / "rules.txt"
    path.write_text(out)
    return path


def test_trace_and_explain_json_carry_a_version(ruleset_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["trace", "--ruleset", str(ruleset_file), "--src", "10.244.1.9", "--dst", "10.96.0.10", "--json"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["apiVersion"], doc["kind"]) == ("clew.trace/v1", "Trace")
    assert {"packet", "outcomes"} <= set(doc)  # the fields scripts read are still there
    code, out, err = run(["explain", "service", "ns/web", "--ruleset", str(ruleset_file), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["apiVersion"], doc["kind"]) == ("clew.trace/v1", "ServiceExplanation")


SYNC = SyncBench(
    services=5, mode="iptables", first_full_sync_s=0.1, full_sync_s=0.1, raw_full_restore_s=0.08, full_ratio=1.25,
    changes=3, change_p50_s=0.01, change_p99_s=0.02, raw_partial_restore_s=0.009, change_ratio=1.11, partial_syncs=3,
    kube_proxy_full_restore_s=0.2, full_vs_kube_proxy=0.5, kube_proxy_partial_restore_s=0.04, change_vs_kube_proxy=0.25,
    rss_mb=20.0, peak_rss_mb=30.0,
)  # fmt: skip


SYNC_NFT = replace(
    SYNC, services=100000, mode="nftables", change_p50_s=0.0008, change_p99_s=0.002, raw_partial_restore_s=0.007,
    change_ratio=0.11, kube_proxy_full_restore_s=None, full_vs_kube_proxy=None, kube_proxy_partial_restore_s=None,
    change_vs_kube_proxy=None,
)  # fmt: skip


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """`bench sync` without root or namespaces: the runner returns a fixed result."""
    calls: list[tuple[int, int]] = []

    def run_isolated(services: int, changes: int, progress: Any = None, mode: str = "iptables") -> SyncBench:
        calls.append((services, changes))
        return SYNC if mode == "iptables" else SYNC_NFT

    monkeypatch.setattr("clew.bench.sync.run_isolated", run_isolated)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return calls


def test_bench_sync_prints_kube_proxy_beside_the_kernel(
    fake_bench: list[tuple[int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["bench", "sync", "--services", "5", "--changes", "3"], capsys)
    assert (code, err, fake_bench) == (0, "", [(5, 3)])
    full = next(line for line in out.splitlines() if "full resync" in line)
    change = next(line for line in out.splitlines() if "one change, p50" in line)
    assert "1.25×" in full and "0.200s" in full and "0.50×" in full  # ratio to the kernel, kube-proxy, ratio to it
    assert "1.11×" in change and "0.0400s" in change and "0.25×" in change
    assert "clew/raw" in out and "clew/kube-proxy" in out
    code, out, err = run(["bench", "sync", "--services", "5", "--changes", "3", "--json"], capsys)
    doc = json.loads(out)
    assert (doc["apiVersion"], doc["kind"]) == ("clew.bench/v1", "SyncBench")
    assert doc["kube_proxy_partial_restore_s"] == 0.04 and doc["change_vs_kube_proxy"] == 0.25
    assert doc["raw_partial_restore_s"] == 0.009  # the fields it had stay


def test_bench_sync_nftables_mode_says_where_kube_proxy_was_not_measured(
    fake_bench: list[tuple[int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["bench", "sync", "--mode", "nftables", "--services", "100000", "--changes", "3"], capsys)
    assert (code, err) == (0, ""), err
    assert "mode nftables" in out and "n/a" in out and "it loads quadratically" in out
    p99 = next(line for line in out.splitlines() if "one change, p99" in line)
    assert "2.00ms" in p99 and "meets ≤ 10 ms" in p99  # the 100k target
    code, out, err = run(["bench", "sync", "--mode", "nftables", "--services", "5", "--json"], capsys)
    doc = json.loads(out)
    assert doc["mode"] == "nftables" and doc["kube_proxy_full_restore_s"] is None
    assert set(doc) == {"apiVersion", "kind", *SYNC.to_json()}  # the same fields as iptables mode
    code, out, err = run(["bench", "sync", "--mode", "ipvs"], capsys)
    assert code == 2 and "--mode 'ipvs': expected iptables or nftables" in err and fake_bench == [(100000, 3), (5, 50)]


def test_plot_without_matplotlib_says_how_to_get_it(
    fake_bench: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, out, err = run(["bench", "sync", "--services", "5", "--plot", "x.png"], capsys)
    assert code == 2 and out == "" and fake_bench == []  # refused before any work
    assert err.count("\n") == 1 and "pip install matplotlib" in err


def test_stdin_dash_reads_objects_and_rulesets(objects_file: Path, ruleset_file: Path) -> None:
    from_file = clew([*RENDER, "--objects", str(objects_file)])
    from_stdin = clew([*RENDER, "--objects", "-"], stdin=OBJECTS)
    assert from_stdin.returncode == 0 and from_stdin.stdout == from_file.stdout
    trace = ["trace", "--src", "10.244.1.9", "--dst", "10.96.0.10"]
    assert clew([*trace, "--ruleset", "-"], stdin=ruleset_file.read_text()).stdout == (
        clew([*trace, "--ruleset", str(ruleset_file)]).stdout
    )


def test_stdin_errors_name_dash_and_leave_no_file(tmp_path: Path) -> None:
    before = {p.name for p in Path("/tmp").glob("clew-stdin-*")}
    bad = clew([*RENDER, "--objects", "-"], stdin="kind: Service\nspec: [oops\n")
    assert bad.returncode == 2 and bad.stderr.startswith("clew: error: -:3: not valid YAML"), bad.stderr
    two = clew([*RENDER, "--objects", "-", "--config", "-"], stdin=OBJECTS)
    assert two.returncode == 2 and "only one option can read standard input" in two.stderr
    assert {p.name for p in Path("/tmp").glob("clew-stdin-*")} <= before


def test_progress_draws_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    with progress_mod.progress("work") as step:
        step("one")
    assert pipe.getvalue() == ""
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(progress_mod, "DELAY_S", 0.0)
    with progress_mod.progress("work") as step:
        step("one")
    assert "work" in tty.getvalue()


def test_a_bug_is_one_line_and_clew_debug_shows_it(
    ruleset_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("clew.cli.trace.trace", boom)
    args = ["trace", "--ruleset", str(ruleset_file), "--src", "10.244.1.9", "--dst", "10.96.0.10"]
    monkeypatch.delenv("CLEW_DEBUG", raising=False)
    code, _, err = run(args, capsys)
    assert code == 1 and err == "clew: error: internal error: RuntimeError: boom (CLEW_DEBUG=1 shows the traceback)\n"
    monkeypatch.setenv("CLEW_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(args)


def test_ctrl_c_is_one_line(
    ruleset_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("clew.cli.trace.trace", interrupted)
    args = ["trace", "--ruleset", str(ruleset_file), "--src", "10.244.1.9", "--dst", "10.96.0.10"]
    assert run(args, capsys) == (130, "", "clew: error: interrupted\n")
