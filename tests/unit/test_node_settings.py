"""Node settings come from one function: ``clew render`` and the agent (`ProxySyncer`) derive this
node's IPs and pod CIDRs from the Node object the same way, and load the same rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clew.cli.main import main
from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.model.proxy_config import DetectLocal, from_kube_proxy_config
from clew.proxy import sync as sync_module
from clew.proxy.inputs import make_config
from clew.proxy.iptables import apply
from clew.proxy.iptables.render import Rendered, render
from clew.proxy.policy import decide
from clew.proxy.sync import ProxySyncer

NODEPORT_SERVICE: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
     "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
              "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
     "metadata": {"name": "web-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
     "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "n1"}], "ports": [{"name": "http", "port": 8080}]},
]  # fmt: skip


def node(*addresses: tuple[str, str], pod_cidr: str | None = None, name: str = "n1") -> dict[str, Any]:
    spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec,
            "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]}}  # fmt: skip


NODES = {
    "external only": node(("ExternalIP", "203.0.113.7")),
    "internal and external": node(("InternalIP", "192.168.0.2"), ("ExternalIP", "203.0.113.7")),
    "two internal": node(("InternalIP", "192.168.0.2"), ("InternalIP", "192.168.1.2"), pod_cidr="10.244.1.0/24"),
    "hostname only": node(("Hostname", "n1")),
    "another node": node(("InternalIP", "192.168.0.9"), name="n2"),
}
CONFIGS = {
    "nodePortAddresses": {"nodePortAddresses": ["0.0.0.0/0"], "clusterCIDR": "10.244.0.0/16"},
    "NodeCIDR": {"detectLocalMode": "NodeCIDR", "nodePortAddresses": ["192.168.0.0/16", "203.0.113.0/24"]},
    "defaults": {},
}


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[Rendered]:
    """The agent's full syncs, recorded instead of loaded."""
    found: list[Rendered] = []
    monkeypatch.setattr(apply, "full_sync", lambda ns, rendered: found.append(rendered))
    monkeypatch.setattr(apply, "partial_sync", lambda ns, text: None)
    monkeypatch.setattr(apply, "remove_other_mode_leftovers", lambda ns: [])
    monkeypatch.setattr(sync_module.conntrack, "delete_udp", lambda *a, **k: 0)
    return found


def snapshot(*extra: dict[str, Any]) -> Snapshot:
    return build_snapshot([*NODEPORT_SERVICE, *extra])


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("node_name", NODES)
def test_render_and_agent_derive_the_same_config_and_load_the_same_rules(
    tmp_path: Path, loaded: list[Rendered], node_name: str, config_name: str
) -> None:
    doc = CONFIGS[config_name]
    config_file = tmp_path / "proxy.yaml"
    config_file.write_text(yaml.safe_dump(doc))
    snap = snapshot(NODES[node_name])
    for_render = make_config(snap, config_file=config_file, node_name="n1")
    agent = ProxySyncer("unused", from_kube_proxy_config(doc, node_name="n1"))  # as `clew agent` builds it
    assert agent.sync(snap).ok
    assert agent.config == for_render
    assert loaded[-1].text() == render(decide(snap, for_render), for_render).text()


def test_an_external_ip_only_node_gets_nodeports_from_the_agent_too(loaded: list[Rendered]) -> None:
    snap = snapshot(NODES["external only"])
    agent = ProxySyncer("unused", from_kube_proxy_config({"nodePortAddresses": ["203.0.113.0/24"]}, node_name="n1"))
    assert agent.sync(snap).ok
    assert "-d 203.0.113.7 -j KUBE-NODEPORTS" in loaded[-1].text()


def test_node_ip_adds_to_the_node_addresses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all([*NODEPORT_SERVICE, NODES["two internal"]]))
    config_file = tmp_path / "proxy.yaml"
    config_file.write_text(yaml.safe_dump({"nodePortAddresses": ["192.168.0.0/16"]}))
    args = ["render", "--objects", str(objects), "--config", str(config_file), "--node-name", "n1"]
    main([*args, "--node-ip", "192.168.0.2"])  # success returns; a failure would raise SystemExit
    out = capsys.readouterr().out
    assert "-d 192.168.0.2 -j KUBE-NODEPORTS" in out and "-d 192.168.1.2 -j KUBE-NODEPORTS" in out
    cfg = make_config(build_snapshot(yaml.safe_load_all(objects.read_text())), config_file=config_file,
                      node_name="n1", node_ips=["10.0.0.1"])  # fmt: skip
    assert cfg.node_ips == ("10.0.0.1", "192.168.0.2", "192.168.1.2")


def test_the_agent_reads_a_changed_node_again(loaded: list[Rendered]) -> None:
    agent = ProxySyncer("unused", from_kube_proxy_config({"detectLocalMode": "NodeCIDR", "nodePortAddresses":
                                                          ["192.168.0.0/16"]}, node_name="n1"))  # fmt: skip
    assert agent.sync(snapshot(node(("InternalIP", "192.168.0.2")))).ok
    assert agent.config.node_ips == ("192.168.0.2",) and agent.config.detect_local is DetectLocal.NONE
    assert agent.sync(snapshot(node(("InternalIP", "192.168.7.7"), pod_cidr="10.244.3.0/24"))).ok
    assert agent.config.node_ips == ("192.168.7.7",)
    assert agent.config.detect_local is DetectLocal.NODE_CIDR and agent.config.node_pod_cidrs == ("10.244.3.0/24",)
    assert "-d 192.168.7.7 -j KUBE-NODEPORTS" in loaded[-1].text() and "192.168.0.2" not in loaded[-1].text()
