"""The agent against a kube-apiserver (the test server speaking the real list/watch wire format):
rules follow the API; when the API goes away they stay as they were; when it returns the agent
resyncs."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the test API server lives there
from kube_fake_server import FakeApiServer
from test_kube_source import eps, fast_backoff, node, svc

from clew.agent.loop import Agent
from clew.kernel import iptables, netns
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.runner import SyncRunner
from clew.proxy.sync import ProxySyncer
from clew.sources.kube import KubeSource
from clew.sources.kubeconfig import ClusterConfig

pytestmark = pytest.mark.kernel


@pytest.fixture
def node_ns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace, iptables)")
    name = f"clewk-{secrets.token_hex(2)}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def turn_until(agent: Agent, check: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(what)
        agent.turn()
        time.sleep(0.01)


def test_rules_follow_the_api_stay_while_it_is_gone_and_resync_when_it_returns(node_ns: str, tmp_path: Path) -> None:
    api = FakeApiServer()
    api.put(svc("web", "10.96.0.10"))
    api.put(eps("web-abc", "web", "10.244.1.5"))
    api.put(node("n1", "192.168.0.11"))
    api.start()
    config = ProxyConfig(node_name="n1", detect_local=DetectLocal.CLUSTER_CIDR, cluster_cidrs=("10.244.0.0/16",))
    source = KubeSource(ClusterConfig(server=api.url, token="t"), backoff=fast_backoff)
    agent = Agent(source, ProxySyncer(node_ns, config), SyncRunner(0.0, 30.0), tmp_path / "status.json")

    def nat() -> str:
        return iptables.save(node_ns, "nat")

    try:
        turn_until(agent, lambda: "demo/web" in nat() and "10.244.1.5:80" in nat(), "web's rules from the API")
        api.put(eps("web-abc", "web", "10.244.1.6"))  # a watch event
        turn_until(agent, lambda: "10.244.1.6" in nat() and "10.244.1.5:80" not in nat(), "the new endpoint")
        api.stop()
        before = nat()
        for _ in range(20):  # the source is gone: nothing changes
            agent.turn()
        assert "10.244.1.6" in nat() and nat().count("-A ") == before.count("-A ")
        api.put(svc("db", "10.96.0.20"))
        api.put(eps("db-1", "db", "10.244.2.9"))
        api.start()  # same port: the source relists and the agent resyncs
        turn_until(agent, lambda: "demo/db" in nat() and "10.244.2.9" in nat(), "db after the API returned")
        assert "10.244.1.6" in nat()
    finally:
        source.close()
        api.stop()
