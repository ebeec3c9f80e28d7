"""An agent given ``--netns`` keeps to that namespace: its HTTP listeners are there (two agents and
a host kube-proxy never clash on 10249/10256), its flannel lease goes to its state dir (never
into the user's objects folder), and ``--once`` exits 0 only when the sync worked."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clew.agent.metrics import Observer
from clew.agent.servers import BindError, Servers
from clew.kernel import netns

pytestmark = pytest.mark.kernel

PROBE = (
    "import sys, urllib.request\n"
    "r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
    "print(r.status, r.read().decode())\n"
)


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    tag = secrets.token_hex(2)
    names = [f"has-{tag}-a", f"has-{tag}-b"]
    try:
        for name in names:
            netns.create(name)
            netns.run_batch(name, ["link set lo up"])
        yield names
    finally:
        for name in names:
            netns.delete(name)


def get(ns: str, url: str) -> str:
    return netns.run(ns, [sys.executable, "-c", PROBE, url]).stdout


def listening_here(port: int) -> str:
    """``ss`` lines of sockets listening on ``port`` in this process's namespace that are ours."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    return "\n".join(line for line in out.splitlines() if f"pid={os.getpid()}," in line)


def test_listeners_are_in_the_agents_namespace_and_never_clash(namespaces: list[str]) -> None:
    running = []
    try:
        for ns in namespaces:  # kube-proxy's very ports, in two namespaces at once: no clash
            obs = Observer(node_name="n1", sync_period=30.0)
            servers = Servers(obs.metrics, obs.health, netns=ns)
            servers.start("127.0.0.1:10249", "0.0.0.0:10256")
            running.append(servers)
        assert not listening_here(10256) and not listening_here(10249)  # nothing of ours on the host
        for ns in namespaces:
            assert get(ns, "http://127.0.0.1:10249/proxyMode") == "200 iptables\n"
            assert get(ns, "http://127.0.0.1:10256/livez").startswith("200 {")
        with pytest.raises(
            BindError, match=rf"healthzBindAddress: cannot listen on 0.0.0.0:10256 in netns {namespaces[0]}"
        ):
            obs = Observer(node_name="n1", sync_period=30.0)
            Servers(obs.metrics, obs.health, netns=namespaces[0]).start("", "0.0.0.0:10256")
    finally:
        for servers in running:
            servers.stop()


NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "n1"},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.168.77.2"}]},
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "demo"},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
}


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        h.update(str(path).encode() + (path.read_bytes() if path.is_file() else b""))
    return h.hexdigest()


def agent_once(tmp_path: Path, ns: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "kube-proxy.yaml"
    config.write_text("kind: KubeProxyConfiguration\nhostnameOverride: n1\nclusterCIDR: 10.244.0.0/16\n")
    net_conf = tmp_path / "net-conf.json"
    net_conf.write_text(json.dumps({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}))
    state, objects = tmp_path / "state", tmp_path / "objects"
    argv = [sys.executable, "-m", "clew", "agent", "--once", "--config", str(config), "--objects", str(objects),
            "--netns", ns, "--net-conf", str(net_conf), "--state-dir", str(state)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_once_writes_the_lease_to_the_state_dir_never_into_the_folder(namespaces: list[str], tmp_path: Path) -> None:
    ns = namespaces[0]
    netns.run_batch(ns, ["link add eth0 type veth peer name peer0", "addr add 192.168.77.2/24 dev eth0",
                         "link set peer0 up", "link set eth0 up"])  # fmt: skip
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "n1.json").write_text(json.dumps(NODE))
    (tmp_path / "objects" / "web.json").write_text(json.dumps(SERVICE))
    before = digest(tmp_path / "objects")
    proc = agent_once(tmp_path, ns)
    assert proc.returncode == 0, proc.stderr
    assert digest(tmp_path / "objects") == before  # the user's folder is never written
    lease = json.loads((tmp_path / "state" / "node-lease.json").read_text())
    assert lease["node"] == "n1"
    assert lease["annotations"]["flannel.alpha.coreos.com/public-ip"] == "192.168.77.2"
    assert lease["annotations"]["flannel.alpha.coreos.com/backend-type"] == "vxlan"
    assert "demo/web" in netns.run(ns, ["iptables-save"]).stdout  # its rules are in the node


def test_once_exits_non_zero_when_the_sync_fails(namespaces: list[str], tmp_path: Path) -> None:
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "n1.json").write_text(json.dumps(NODE))
    missing = f"{namespaces[0]}-gone"
    proc = agent_once(tmp_path, missing)  # the namespace does not exist
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("clew: error: sync failed: ")
    assert missing in proc.stderr
    proc = agent_once(tmp_path, namespaces[1])  # no eth0 with the Node's address: the pod network fails
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "eth0" in proc.stderr.strip().splitlines()[-1]
