"""The agent's CNI socket server, without root: requests that never reach the kernel (VERSION).

A client that goes away before the answer is a log line, not socketserver's traceback on stderr;
the client's network namespace is read from the socket's peer credentials.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clew.agent.cni_server import CniServer, peer_netns
from clew.cni import netns_guard
from clew.cni.client import request, via_agent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CniServer]:
    srv = CniServer(tmp_path / "cni.sock").start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_request_is_answered(server: CniServer) -> None:
    status, out = via_agent(str(server.path), {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.1.0"}')
    assert status == 0 and b"supportedVersions" in out


def test_a_client_gone_before_the_answer_is_one_log_line(
    server: CniServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Before: socketserver printed a BrokenPipeError traceback on stderr."""
    caplog.set_level(logging.INFO, logger="clew.cni")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(server.path))
    client.sendall(request({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.1.0"}'))
    client.close()  # the server reads to EOF, so its answer is always written after this

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "went away" in r.getMessage()]

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the log with a deadline: the server answers in its own thread
    (record,) = logged()
    assert record.levelno == logging.WARNING and "CNI_COMMAND=VERSION" in record.getMessage()
    assert "\n" not in record.getMessage() and record.exc_info is None
    assert "Traceback" not in capfd.readouterr().err
    # and the server still serves
    assert via_agent(str(server.path), {"CNI_COMMAND": "VERSION"}, b"{}")[0] == 0


def test_peer_netns_is_the_clients() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer_netns(a) == [netns_guard.own()]  # the peer is this very process
