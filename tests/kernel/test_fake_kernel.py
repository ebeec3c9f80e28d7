"""The fake iptables kernel (`clew.fakes.iptables`) against the real one: the same syncs end in
the same rules, and the same commands are refused with the same exit status — so what the
non-root sync tests (tests/unit/test_sync_fake.py) prove about the fake holds for the kernel."""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clew.fakes.iptables import FakeIptables
from clew.kernel import netns
from clew.kernel.iptables import IptablesKernel, NodeIptables
from clew.kernel.namespace import Namespace
from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import canonical
from clew.proxy.sync import ProxySyncer

pytestmark = pytest.mark.kernel
FOREIGN = Path(__file__).resolve().parents[1] / "golden" / "foreign"
CONFIG = ProxyConfig(node_name="n1", node_ips=("192.168.50.2",), detect_local=DetectLocal.CLUSTER_CIDR,
                     cluster_cidrs=("10.244.0.0/16",))  # fmt: skip


@pytest.fixture
def node() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace, iptables)")
    name = f"clewk-{secrets.token_hex(3)}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def snapshot(state: dict[int, list[str]]) -> Snapshot:
    objs: list[dict[str, Any]] = []
    for i, eps in sorted(state.items()):
        proto = "UDP" if i % 3 == 0 else "TCP"
        port: dict[str, Any] = {"name": "p", "port": 80, "protocol": proto}
        if i % 4 == 0:
            port["nodePort"] = 30000 + i
        objs += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "ns"},
             "spec": {"type": "NodePort" if i % 4 == 0 else "ClusterIP", "clusterIP": f"10.96.0.{i + 1}",
                      "ports": [port]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
             "metadata": {"name": f"s{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"s{i}"}},
             "endpoints": [{"addresses": [ip], "nodeName": "n1" if ip.endswith("1") else "n2"} for ip in eps],
             "ports": [{"name": "p", "port": 8080, "protocol": proto}]},
        ]  # fmt: skip
    return build_snapshot(objs)


def rules(kernel: IptablesKernel) -> dict[tuple[str, str], tuple[str | None, list[object]]]:
    """Every chain of filter, nat and mangle with its policy and canonical rules, in order."""
    out: dict[tuple[str, str], tuple[str | None, list[object]]] = {}
    for table in ("filter", "nat", "mangle"):
        for t in parse(kernel.save(table)).tables.values():
            for c in t.chains.values():
                out[t.name, c.name] = (c.policy, [canonical(r) for r in c.rules])
    return out


def test_the_same_syncs_leave_the_same_rules_in_the_fake_and_the_kernel(node: str) -> None:
    start = (FOREIGN / "docker_kube_proxy.iptables").read_text()
    real = NodeIptables(Namespace(node))
    real.restore(start, noflush=False)
    fake = FakeIptables.from_save(start, node)
    assert rules(fake) == rules(real)
    syncers = [ProxySyncer(node, CONFIG, kernel=real), ProxySyncer(node, CONFIG, kernel=fake)]
    rng = random.Random(3)
    state = {i: [f"10.244.{i}.{j + 1}" for j in range(rng.randint(0, 2))] for i in range(12)}
    for step in range(25):
        results = [s.sync(snapshot(state)) for s in syncers]
        assert [r.ok for r in results] == [True, True], [r.error for r in results]
        assert results[0].full == results[1].full
        assert rules(fake) == rules(real), f"step {step}"
        i = rng.randrange(15)
        if i in state and rng.random() < 0.3:
            del state[i]
        else:
            state[i] = [f"10.244.{i}.{j + 1}" for j in range(rng.randint(0, 3))]


REFUSALS = [
    ["-t", "filter", "-D", "FORWARD", "-o", "docker9", "-j", "DOCKER"],  # no such rule
    ["-t", "filter", "-X", "DOCKER"],  # referenced
    ["-t", "filter", "-X", "DOCKER-CT"],  # referenced and not empty
    ["-t", "filter", "-X", "INPUT"],  # built-in
    ["-t", "filter", "-A", "NOPE", "-j", "ACCEPT"],  # missing chain
    ["-t", "filter", "-A", "INPUT", "-j", "NOPE"],  # jump to a missing chain
    ["-t", "filter", "-N", "DOCKER"],  # exists
    ["-t", "filter", "-C", "FORWARD", "-o", "docker9", "-j", "DOCKER"],  # check: absent
    ["-t", "nat", "-S", "NOPE", "1"],
]


def test_the_fake_refuses_what_the_kernel_refuses_with_the_same_status(node: str) -> None:
    start = (FOREIGN / "docker_kube_proxy.iptables").read_text()
    real = NodeIptables(Namespace(node))
    real.restore(start, noflush=False)
    fake = FakeIptables.from_save(start, node)
    for args in REFUSALS:
        want, got = real.iptables(args), fake.iptables(args)
        assert (got.returncode != 0, got.returncode) == (want.returncode != 0, want.returncode), (args, want, got)
    bad = "*filter\n:KUBE-NEW - [0:0]\n-A KUBE-NEW -j ACCEPT\n-D FORWARD -o docker9 -j DOCKER\nCOMMIT\n"
    for kernel in (real, fake):
        with pytest.raises(Exception, match="line 4 failed"):
            kernel.restore(bad)
    assert rules(fake) == rules(real)
