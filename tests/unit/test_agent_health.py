"""kube-proxy's proxy health on a fake clock, and the agent's HTTP servers on ephemeral ports."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from clew.agent.health import ProxyHealth, go_time
from clew.agent.metrics import Observer, ProxyMetrics
from clew.agent.servers import BindError, Servers, parse_address
from clew.model.objects import Node, Snapshot


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(raw: bytes) -> dict[str, object]:
    doc = json.loads(raw)
    assert isinstance(doc, dict)
    return doc


def test_queued_update_turns_unhealthy_after_twice_the_sync_period() -> None:
    clock = Clock()
    h = ProxyHealth(30, clock=clock)
    assert h.healthy()  # starting: healthy
    h.updated()
    h.queued_update()
    clock.now += 59.9
    assert h.healthy()
    h.queued_update()  # a later change does not restart the clock
    clock.now += 0.1
    assert not h.healthy() and not h.healthy(clock.now + 1)
    assert h.healthy(clock.now - 1)
    h.updated()
    assert h.healthy()
    clock.now += 3600  # idle is healthy
    assert h.healthy()


def test_livez_and_healthz_bodies_are_kube_proxys() -> None:
    clock = Clock(1_700_000_000.25)
    eligible = [True]
    h = ProxyHealth(30, clock=clock, node_eligible=lambda: eligible[0])
    code, raw = h.livez()
    assert (code, raw) == (
        200,
        b'{"lastUpdated":"2023-11-14T22:13:20.25Z","currentTime":"2023-11-14T22:13:20.25Z","healthy":true}',
    )
    h.updated()
    h.queued_update()
    clock.now += 10
    code, raw = h.healthz()
    doc = body(raw)
    assert code == 200
    assert list(doc) == ["lastUpdated", "currentTime", "nodeEligible", "healthy", "status"]
    assert doc["lastUpdated"] == doc["currentTime"] == "2023-11-14T22:13:30.25Z"  # healthy: now
    assert doc["status"] == {"IPv4": {"lastUpdated": "2023-11-14T22:13:20.25Z", "healthy": True}}
    clock.now += 60
    code, raw = h.livez()
    doc = body(raw)
    assert code == 503 and doc["healthy"] is False and "nodeEligible" not in doc
    assert doc["lastUpdated"] == "2023-11-14T22:13:20.25Z"  # unhealthy: the real last update
    assert doc["status"] == {"IPv4": {"lastUpdated": "2023-11-14T22:13:20.25Z", "healthy": False}}
    h.updated()
    eligible[0] = False
    assert h.livez()[0] == 200
    code, raw = h.healthz()
    doc = body(raw)
    assert code == 503 and doc["nodeEligible"] is False and doc["healthy"] is True


def test_go_time() -> None:
    assert go_time(None) == "0001-01-01T00:00:00Z"
    assert go_time(0) == "1970-01-01T00:00:00Z"
    assert go_time(1.5) == "1970-01-01T00:00:01.5Z"


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:10249", "m") == ("127.0.0.1", 10249)
    assert parse_address("[::1]:10256", "h") == ("::1", 10256)
    assert parse_address(":10256", "h") == ("0.0.0.0", 10256)
    for bad in ("127.0.0.1", "127.0.0.1:http", "1.2.3.4:70000"):
        with pytest.raises(BindError, match="is not HOST:PORT"):
            parse_address(bad, "metricsBindAddress")


@pytest.fixture
def running() -> Iterator[tuple[Servers, Observer, Clock]]:
    clock = Clock()
    obs = Observer(node_name="n1", sync_period=30, clock=clock)
    servers = Servers(obs.metrics, obs.health, mode="iptables")
    servers.start("127.0.0.1:0", "127.0.0.1:0")
    try:
        yield servers, obs, clock
    finally:
        servers.stop()


def get(servers: Servers, setting: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = servers.bound(setting)
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_metrics_server(running: tuple[Servers, Observer, Clock]) -> None:
    servers, _, _ = running
    assert servers.bound("metricsBindAddress")[0] == "127.0.0.1"
    code, headers, raw = get(servers, "metricsBindAddress", "/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain; version=")
    assert b"# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram" in raw
    assert get(servers, "metricsBindAddress", "/healthz")[::2] == (200, b"ok")
    code, headers, raw = get(servers, "metricsBindAddress", "/proxyMode")
    assert (code, raw) == (200, b"iptables")
    assert headers["content-type"] == "text/plain; charset=utf-8" and headers["x-content-type-options"] == "nosniff"
    assert get(servers, "metricsBindAddress", "/livez")[0] == 404


def test_health_server(running: tuple[Servers, Observer, Clock]) -> None:
    servers, obs, clock = running
    code, headers, raw = get(servers, "healthzBindAddress", "/livez")
    assert code == 200
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    assert body(raw)["healthy"] is True
    assert get(servers, "healthzBindAddress", "/healthz")[0] == 503  # no Node object yet: not eligible
    obs.source_changed(Snapshot(nodes=(Node("n1"),)))
    code, _, raw = get(servers, "healthzBindAddress", "/healthz?verbose")
    assert code == 200 and body(raw)["nodeEligible"] is True
    clock.now += 61  # the queued change has waited longer than 2 × syncPeriod
    assert get(servers, "healthzBindAddress", "/healthz")[0] == 503
    assert get(servers, "healthzBindAddress", "/livez")[0] == 503
    assert get(servers, "healthzBindAddress", "/metrics")[0] == 404
    _, _, metrics = get(servers, "metricsBindAddress", "/metrics")
    assert b'kubeproxy_proxy_healthz_total{code="200"} 1.0' in metrics
    assert b'kubeproxy_proxy_healthz_total{code="503"} 2.0' in metrics
    assert b'kubeproxy_proxy_livez_total{code="200"} 1.0' in metrics
    assert b'kubeproxy_proxy_livez_total{code="503"} 1.0' in metrics


def test_bind_error_names_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        servers = Servers(ProxyMetrics(), ProxyHealth(30))
        with pytest.raises(BindError) as err:
            servers.start("127.0.0.1:0", f"127.0.0.1:{port}")
    message = str(err.value)
    assert message.startswith(f"healthzBindAddress: cannot listen on 127.0.0.1:{port}: ")
    assert "\n" not in message
    assert servers.running == {}  # the metrics server that did start was stopped again


def test_an_empty_address_disables_a_server() -> None:
    servers = Servers(ProxyMetrics(), ProxyHealth(30))
    servers.start("", "127.0.0.1:0")
    try:
        assert list(servers.running) == ["healthzBindAddress"]
    finally:
        servers.stop()
