"""``clew bench dataplane`` without root: its options are checked before any work, its JSON
carries every figure per mode and count, and the connect timer's target syntax is strict."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from clew.bench import dataplane
from clew.bench.connect import parse_target, summary
from clew.bench.dataplane import DataplaneBench, Timing, from_json, meets
from clew.cli.main import main


def _timing(name: str, p50: float) -> Timing:
    return Timing(name, "10.96.0.1:80", "bench/svc-0", 2000, p50, p50 * 1.2, p50 * 2, p50, p50 / 2)


def _result(mode: str, services: int, last: float = 31.0) -> DataplaneBench:
    return DataplaneBench(
        mode=mode, services=services, connects=2000, load_s=1.5, first=_timing("first", 30.0),
        last=_timing("last", last), direct=_timing("direct", 29.0), no_rules=_timing("no_rules", 20.0),
        last_vs_first=round(last / 30.0, 3), last_vs_direct=round(last / 29.0, 3), first_vs_direct=1.034,
    )  # fmt: skip


def clew(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    calls: list[tuple[str, int, int]] = []

    def run(mode: str, services: int, connects: int = 2000, **_: Any) -> DataplaneBench:
        calls.append((mode, services, connects))
        return _result(mode, services)

    monkeypatch.setattr(dataplane, "run", run)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return calls


def test_every_mode_and_count_is_run_and_printed_as_json(
    fake_run: list[tuple[str, int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "dataplane", "--mode", "iptables", "--mode", "nftables", "--services", "10", "--services", "20"]
    code, out, err = clew([*args, "--connects", "50", "--json"], capsys)
    assert code == 0, err
    assert fake_run == [("iptables", 10, 50), ("iptables", 20, 50), ("nftables", 10, 50), ("nftables", 20, 50)]
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(d["kind"], d["mode"], d["services"]) for d in docs] == [
        ("DataplaneBench", "iptables", 10), ("DataplaneBench", "iptables", 20),
        ("DataplaneBench", "nftables", 10), ("DataplaneBench", "nftables", 20),
    ]  # fmt: skip
    doc = docs[0]
    assert doc["apiVersion"] == "clew.bench/v1"
    for target in ("first", "last", "direct", "no_rules"):
        assert {"address", "count", "p50_us", "p99_us", "mean_us"} <= set(doc[target]), target
    assert {"last_vs_first", "last_vs_direct", "load_s", "connects"} <= set(doc)
    del doc["apiVersion"], doc["kind"]
    assert from_json(doc) == _result("iptables", 10)


def test_defaults_are_both_modes_at_1k_and_10k(
    fake_run: list[tuple[str, int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = clew(["bench", "dataplane"], capsys)
    assert code == 0, err
    assert fake_run == [(m, n, 2000) for m in ("iptables", "nftables") for n in (1000, 10000)]
    assert "last/first" in out and "meets" in out  # nftables rows carry the verdict


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mode", "ipvs"], "--mode 'ipvs'"),
        (["--services", "0"], "--services 0"),
        (["--services", "20000"], "--services 20000"),
        (["--connects", "0"], "--connects 0"),
    ],
)
def test_bad_options_are_one_line_before_any_work(
    fake_run: list[tuple[str, int, int]], args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = clew(["bench", "dataplane", *args], capsys)
    assert (code, out, fake_run) == (2, "", [])
    assert needle in err and err.count("\n") == 1, err


def test_the_target_is_nftables_only() -> None:
    assert meets(_result("iptables", 10000, last=300.0)) is None
    assert meets(_result("nftables", 10000, last=32.0)) is True
    assert meets(_result("nftables", 10000, last=34.0)) is False  # 13% over the first


def test_connect_targets_and_summary() -> None:
    assert parse_target("last=10.96.39.16:80") == ("last", "10.96.39.16", 80)
    for bad in ("10.96.0.1:80", "x=10.96.0.1", "x=:80", "x=1.2.3.4:http"):
        with pytest.raises(ValueError, match="NAME=IP:PORT"):
            parse_target(bad)
    s = summary([float(v) for v in range(1, 101)])
    assert (s["count"], s["p50_us"], s["min_us"]) == (100, 51.0, 1.0)
