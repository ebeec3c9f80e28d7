"""Echo prober: JSON shape, error classification, CLI (pure; no sockets, no root)."""

from __future__ import annotations

import errno
import json

import pytest

from clew.lab import echo
from clew.lab.echo import Attempt, ProbeResult


def _ok(server: str, port: int) -> Attempt:
    return Attempt(True, server, f"10.244.1.10:{port}", None, 0.001)


def _fail(error: str) -> Attempt:
    return Attempt(False, None, None, error, 0.5)


def test_json_document_shape_and_summary() -> None:
    result = ProbeResult([_ok("a", 1), _ok("b", 2), _ok("a", 3), _fail("refused"), _fail("other: boom")])
    doc = json.loads(json.dumps(result.to_json()))
    assert set(doc) == {"attempts", "summary"}
    assert doc["attempts"][0] == {
        "ok": True,
        "server": "a",
        "seen": "10.244.1.10:1",
        "error": None,
        "elapsed_s": 0.001,
        "local": None,
    }
    assert doc["attempts"][3]["server"] is None and doc["attempts"][3]["error"] == "refused"
    assert doc["summary"] == {"by_server": {"a": 2, "b": 1}, "errors": {"other": 1, "refused": 1}}
    assert ProbeResult.from_json(doc) == result
    assert result.servers == {"a", "b"} and result.seen_ips == {"10.244.1.10"}
    assert not result.all_ok and ProbeResult([_ok("a", 1)]).all_ok and not ProbeResult([]).all_ok


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (TimeoutError("timed out"), "timeout"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "other: [Errno 99] Cannot assign"),
    ],
)
def test_error_classification(exc: OSError, kind: str) -> None:
    assert echo._classify(exc) == kind


def test_reply_line_round_trip() -> None:
    line = echo.reply_line("pod-a", ("10.244.2.10", 40123))
    assert line == b"pod-a 10.244.2.10:40123\n"
    assert echo.parse_reply(line) == ("pod-a", "10.244.2.10:40123")
    with pytest.raises(ValueError, match="bad reply"):
        echo.parse_reply(b"")
    with pytest.raises(ValueError, match="bad reply"):
        echo.parse_reply(b"HTTP/1.1 200 OK\r\n")


def test_probe_cli_prints_one_json_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, int, str, float, str | None]] = []
    outcomes = iter([_ok("a", 1), _fail("timeout")])

    def fake(
        dst: str, port: int, proto: str = "tcp", timeout: float = 1.0, src: str | None = None, sport: int = 0
    ) -> Attempt:
        assert sport == 0
        calls.append((dst, port, proto, timeout, src))
        return next(outcomes)

    monkeypatch.setattr(echo, "probe_once", fake)
    argv = [
        "probe",
        "--dst",
        "10.96.0.1",
        "--port",
        "80",
        "--proto",
        "udp",
        "--count",
        "2",
        "--timeout",
        "0.2",
        "--src",
        "10.244.1.10",
    ]
    assert echo.main(argv) == 1  # not every attempt answered
    doc = json.loads(capsys.readouterr().out)
    assert calls == [("10.96.0.1", 80, "udp", 0.2, "10.244.1.10")] * 2
    assert doc["summary"] == {"by_server": {"a": 1}, "errors": {"timeout": 1}}


def test_probe_rejects_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="sctp"):
        echo.probe_once("10.0.0.1", 80, proto="sctp")


def test_batch_runs_each_job_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int, str, float, str | None, int]] = []

    def fake(
        dst: str, port: int, proto: str = "tcp", timeout: float = 1.0, src: str | None = None, sport: int = 0
    ) -> Attempt:
        calls.append((dst, port, proto, timeout, src, sport))
        return _ok("a", len(calls))

    monkeypatch.setattr(echo, "probe_once", fake)
    lines = [
        '{"dst": "10.96.0.1", "port": 80}\n',
        "\n",
        '{"dst": "10.96.0.2", "port": 53, "proto": "udp", "count": 2,'
        ' "src": "10.244.1.10", "sport": 5353, "timeout": 0.3}\n',
    ]
    docs = echo.batch(lines, 0.5)
    assert calls == [
        ("10.96.0.1", 80, "tcp", 0.5, None, 0),
        ("10.96.0.2", 53, "udp", 0.3, "10.244.1.10", 5353),
        ("10.96.0.2", 53, "udp", 0.3, "10.244.1.10", 5353),
    ]
    assert [len(ProbeResult.from_json(d).attempts) for d in docs] == [1, 2]
