"""``clew agent`` in nftables mode, end to end in a throwaway namespace: ``--mode nftables`` and
``mode: nftables`` load clew's table (and remove iptables mode's rules), ``--once`` fails with one
line when the namespace is missing, and a running agent says ``nftables`` on /proxyMode and
exports kube-proxy's nftables metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from poll import poll_until
from topology import unique_prefix

from clew.kernel import netns

pytestmark = pytest.mark.kernel

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}  # fmt: skip
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
PROBE = (
    "import sys, urllib.request\n"
    "r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
    "print(r.status, r.read().decode())\n"
)


@pytest.fixture
def node() -> Iterator[str]:
    name = unique_prefix("sy") + "-agent"
    netns.create(name)
    try:
        netns.run_batch(name, ["link set lo up"])
        yield name
    finally:
        netns.delete(name)


def files(tmp_path: Path, config: str = "") -> tuple[Path, Path]:
    cfg = tmp_path / "kube-proxy.yaml"
    cfg.write_text("kind: KubeProxyConfiguration\nhostnameOverride: n1\n" + config)
    objects = tmp_path / "objects"
    objects.mkdir(exist_ok=True)
    (objects / "web.json").write_text(json.dumps(SERVICE))
    (objects / "n1.json").write_text(json.dumps(NODE))
    return cfg, objects


def agent(*args: str) -> list[str]:
    return [sys.executable, "-m", "clew", "agent", *args]


def clew_table(ns: str) -> str:
    done = netns.run(ns, ["nft", "list", "set", "ip", "clew", "no-endpoint-reject"], check=False)
    return done.stdout


@pytest.mark.parametrize("how", ["flag", "config"])
def test_once_in_nftables_mode_loads_clews_table(node: str, tmp_path: Path, how: str) -> None:
    netns.run(node, ["iptables", "-t", "nat", "-N", "KUBE-SERVICES"])  # iptables mode's leftovers
    netns.run(node, ["iptables", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES"])
    cfg, objects = files(tmp_path, "mode: nftables\n" if how == "config" else "")
    extra = ["--mode", "nftables"] if how == "flag" else []
    done = subprocess.run(agent("--once", "--config", str(cfg), "--objects", str(objects), "--netns", node, *extra),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "10.96.0.10 . tcp . 80" in clew_table(node)
    assert "KUBE-" not in netns.run(node, ["iptables-save"]).stdout


def test_once_fails_in_one_line_without_the_namespace(tmp_path: Path) -> None:
    cfg, objects = files(tmp_path)
    missing = unique_prefix("sy") + "-gone"
    argv = agent("--once", "--mode", "nftables", "--config", str(cfg), "--objects", str(objects), "--netns", missing)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("clew: error: sync failed: ") and missing in done.stderr


def test_a_running_agent_says_nftables_and_exports_its_metrics(node: str, tmp_path: Path) -> None:
    cfg, objects = files(tmp_path, "metricsBindAddress: 127.0.0.1:10249\nhealthzBindAddress: 127.0.0.1:10256\n")
    proc = subprocess.Popen(agent("--mode", "nftables", "--config", str(cfg), "--objects", str(objects), "--netns",
                                  node, "--state-dir", str(tmp_path / "state")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:

        def get(path: str) -> str:
            done = netns.run(node, [sys.executable, "-c", PROBE, f"http://127.0.0.1:10249{path}"], check=False)
            return done.stdout if done.returncode == 0 else ""

        assert poll_until(lambda: get("/proxyMode"), 30, what="/proxyMode") == "200 nftables\n"
        poll_until(lambda: "10.96.0.10" in clew_table(node), 30, what="clew's table loaded")
        metrics = poll_until(lambda: get("/metrics"), 10, what="/metrics")
        assert "kubeproxy_sync_proxy_rules_nftables_sync_failures_total" in metrics
        assert "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total" in metrics
        assert "iptables_restore_failures" not in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
