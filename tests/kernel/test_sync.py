"""The sync engine against a real kernel: partial syncs reach exactly the state a full sync
gives, a failed partial falls back to a full one, and a flush is repaired.

"Exactly": every chain holds the same rules in the same order, except the shared dispatch
chains (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES, KUBE-PROXY-FIREWALL), whose rules
a partial sync inserts at the top: there each rule matches its own Service IP, port and
protocol, so order carries no meaning — they are compared as multisets, and the final
KUBE-SERVICES → KUBE-NODEPORTS rule must be last in both.
"""

from __future__ import annotations

import os
import random
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from clew.kernel import iptables, netns
from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import canonical
from clew.proxy.sync import ProxySyncer

pytestmark = pytest.mark.kernel
UNORDERED = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL"}
CONFIG = ProxyConfig(
    node_name="node-a",
    node_ips=("192.168.50.2",),
    detect_local=DetectLocal.CLUSTER_CIDR,
    cluster_cidrs=("10.244.0.0/16",),
)


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    prefix = f"clews-{secrets.token_hex(2)}"
    names = [f"{prefix}-a", f"{prefix}-b"]
    for n in names:
        netns.create(n)
    try:
        yield names
    finally:
        for n in names:
            netns.delete(n)


class Cluster:
    """A random but reproducible set of Services and EndpointSlices, changed step by step."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.services: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, list[tuple[str, str, bool]]] = {}  # name → (ip, node, ready)
        self.next_ip = 10

    def add(self) -> None:
        name = f"svc{self.next_ip}"
        kind = self.rng.choice(["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer"])
        port: dict[str, Any] = {"name": "p", "port": 80, "protocol": self.rng.choice(["TCP", "TCP", "UDP"])}
        spec: dict[str, Any] = {"type": kind, "clusterIP": f"10.96.0.{self.next_ip}", "ports": [port]}
        if kind != "ClusterIP":
            port["nodePort"] = 30000 + self.next_ip
            spec["externalTrafficPolicy"] = self.rng.choice(["Cluster", "Local"])
        if kind == "LoadBalancer" and self.rng.random() < 0.5:
            spec["loadBalancerSourceRanges"] = ["203.0.113.0/24"]
        status = {"loadBalancer": {"ingress": [{"ip": f"198.51.100.{self.next_ip}"}]}} if kind == "LoadBalancer" else {}
        if self.rng.random() < 0.2:
            spec["sessionAffinity"] = "ClientIP"
        self.services[name] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "t"},
            "spec": spec,
            "status": status,
        }
        self.endpoints[name] = [self._endpoint() for _ in range(self.rng.randint(0, 3))]
        self.next_ip += 1

    def _endpoint(self) -> tuple[str, str, bool]:
        return (
            f"10.244.{self.rng.randint(1, 3)}.{self.rng.randint(2, 250)}",
            self.rng.choice(["node-a", "node-b"]),
            self.rng.random() < 0.85,
        )

    def change(self) -> str:
        if not self.services or self.rng.random() < 0.25:
            self.add()
            return "add"
        name = self.rng.choice(sorted(self.services))
        what = self.rng.choice(["remove", "endpoints", "endpoints", "readiness", "port"])
        if what == "remove":
            del self.services[name], self.endpoints[name]
        elif what == "endpoints":
            eps = self.endpoints[name]
            if eps and self.rng.random() < 0.5:
                eps.pop(self.rng.randrange(len(eps)))
            else:
                eps.append(self._endpoint())
        elif what == "readiness" and self.endpoints[name]:
            i = self.rng.randrange(len(self.endpoints[name]))
            ip, node, ready = self.endpoints[name][i]
            self.endpoints[name][i] = (ip, node, not ready)
        else:
            self.services[name]["spec"]["ports"][0]["port"] = self.rng.choice([80, 443, 8080])
        return what

    def snapshot(self) -> Snapshot:
        objects: list[dict[str, Any]] = list(self.services.values())
        for name, eps in self.endpoints.items():
            unique = {ip: (ip, node, ready) for ip, node, ready in eps}
            objects.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": f"{name}-1", "namespace": "t", "labels": {"kubernetes.io/service-name": name}},
                "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}
                              for ip, node, ready in unique.values()],
                "ports": [{"name": "p", "port": 8080, "protocol": self.services[name]["spec"]["ports"][0]["protocol"]}],
            })  # fmt: skip
        snap = build_snapshot(objects)
        assert snap.rejections == ()
        return snap


def kernel_state(ns: str) -> dict[str, dict[str, Any]]:
    rs = parse(iptables.save(ns))
    out: dict[str, dict[str, Any]] = {}
    for tname in ("filter", "nat"):
        table = rs.tables[tname]
        for cname, chain in table.chains.items():
            if not cname.startswith("KUBE-"):
                continue
            rules = [canonical(r) for r in chain.rules]
            out.setdefault(tname, {})[cname] = Counter(rules) if cname in UNORDERED else rules
            if cname == "KUBE-SERVICES" and tname == "nat":
                assert chain.rules[-1].target is not None and chain.rules[-1].target.name == "KUBE-NODEPORTS"
    return out


def diff(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for table in sorted(set(a) | set(b)):
        ca, cb = a.get(table, {}), b.get(table, {})
        for chain in sorted(set(ca) | set(cb)):
            if ca.get(chain) != cb.get(chain):
                problems.append(f"{table}/{chain}: partial {ca.get(chain)!r:.300} != full {cb.get(chain)!r:.300}")
    return problems


def test_partial_syncs_reach_the_state_of_a_full_sync(namespaces: list[str]) -> None:
    seed = int(os.environ.get("CLEW_SYNC_SEED", "7"))
    cluster = Cluster(seed)
    for _ in range(25):
        cluster.add()
    a, b = namespaces
    syncer = ProxySyncer(a, CONFIG)
    first = syncer.sync(cluster.snapshot())
    assert first.ok and first.full
    kinds: Counter[str] = Counter()
    for step in range(120):
        kinds[cluster.change()] += 1
        result = syncer.sync(cluster.snapshot())
        assert result.ok, f"step {step} (seed {seed}): {result.error}"
        kinds["full" if result.full else "partial"] += 1
        if step % 40 == 39:
            reference = ProxySyncer(b, CONFIG)
            assert reference.sync(cluster.snapshot()).ok
            problems = diff(kernel_state(a), kernel_state(b))
            assert not problems, f"after {step + 1} changes (seed {seed}):\n" + "\n".join(problems[:10])
    assert kinds["partial"] >= 100, kinds  # the changes really went the partial way


def test_a_failed_partial_sync_falls_back_to_a_full_one(namespaces: list[str]) -> None:
    cluster = Cluster(3)
    for _ in range(5):
        cluster.add()
    a, b = namespaces
    syncer = ProxySyncer(a, CONFIG)
    assert syncer.sync(cluster.snapshot()).full
    # someone deletes a rule clew will want to delete itself: the partial restore fails (-D)
    victim = next(iter(sorted(cluster.services)))
    line = next(
        x for x in iptables.save(a, "nat").splitlines() if x.startswith("-A KUBE-SERVICES") and f"t/{victim}:" in x
    )
    iptables.iptables(a, ["-t", "nat", "-D", *line.split()[1:2], *parse_args(line)])
    del cluster.services[victim], cluster.endpoints[victim]
    failed = syncer.sync(cluster.snapshot())
    assert not failed.ok and not failed.full and syncer.needs_full
    repaired = syncer.sync(cluster.snapshot())
    assert repaired.ok and repaired.full
    ProxySyncer(b, CONFIG).sync(cluster.snapshot())
    assert diff(kernel_state(a), kernel_state(b)) == []


def parse_args(line: str) -> list[str]:
    import shlex

    return shlex.split(line)[2:]


def test_a_flush_is_noticed_and_repaired(namespaces: list[str]) -> None:
    cluster = Cluster(5)
    for _ in range(5):
        cluster.add()
    a, _ = namespaces
    syncer = ProxySyncer(a, CONFIG)
    assert syncer.sync(cluster.snapshot()).ok
    assert syncer.intact()
    iptables.iptables(a, ["-t", "nat", "-F"])
    assert not syncer.intact()
    syncer.request_full()
    assert syncer.sync(cluster.snapshot()).full
    assert syncer.intact()


def test_the_first_sync_removes_the_nftables_modes_leftovers(namespaces: list[str]) -> None:
    a, _ = namespaces
    netns.run(a, ["nft", "add", "table", "ip", "kube-proxy"])
    netns.run(a, ["nft", "add", "table", "ip", "someone-else"])
    syncer = ProxySyncer(a, CONFIG)
    assert syncer.sync(Cluster(1).snapshot()).ok
    tables = netns.run(a, ["nft", "list", "tables"]).stdout.splitlines()
    assert "table ip kube-proxy" not in tables
    assert "table ip someone-else" in tables  # not ours: left alone


FOREIGN = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:FLANNEL-FWD - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A DOCKER-USER -s 192.0.2.0/24 -j DROP
-A DOCKER-USER -j RETURN
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully
COMMIT
"""


def foreign_state(ns: str) -> dict[str, object]:
    rs = parse(iptables.save(ns))
    out: dict[str, object] = {}
    for tname in ("filter", "nat"):
        for cname, chain in rs.tables[tname].chains.items():
            if cname.startswith("KUBE-") and cname != "KUBE-KUBELET-CANARY":
                continue
            rules = [canonical(r) for r in chain.rules if not (r.target and r.target.name.startswith("KUBE-"))]
            out[f"{tname}/{cname}"] = (chain.policy, rules)
    return out


def test_full_syncs_keep_everything_that_is_not_clews(namespaces: list[str]) -> None:
    """The table replace writes other components' chains, rules and policies back verbatim."""
    a, _ = namespaces
    iptables.restore(a, FOREIGN, noflush=False)
    before = foreign_state(a)
    cluster = Cluster(11)
    for _ in range(5):
        cluster.add()
    syncer = ProxySyncer(a, CONFIG)
    assert syncer.sync(cluster.snapshot()).full
    assert foreign_state(a) == before
    # clew's jumps went first in FORWARD (EnsureRule prepends); Docker's stays where it was after them
    forward = [
        r.target.name for r in parse(iptables.save(a, "filter")).tables["filter"].chains["FORWARD"].rules if r.target
    ]
    assert forward[-2:] == ["DOCKER-USER", "FLANNEL-FWD"] and forward[0].startswith("KUBE-")
    # someone moves Docker's jump to the top: a second full sync keeps it there
    iptables.iptables(a, ["-t", "filter", "-D", "FORWARD", "-j", "DOCKER-USER"])
    iptables.iptables(a, ["-t", "filter", "-I", "FORWARD", "1", "-j", "DOCKER-USER"])
    syncer.request_full()
    assert syncer.sync(cluster.snapshot()).full
    forward = [
        r.target.name for r in parse(iptables.save(a, "filter")).tables["filter"].chains["FORWARD"].rules if r.target
    ]
    assert forward[0] == "DOCKER-USER"
    assert foreign_state(a) == before
