"""``clew render``: valid objects render, each malformed one is named by field, errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clew.cli.main import main

MIXED = """\
apiVersion: v1
kind: Service
metadata: {name: good, namespace: ns}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: good-1, namespace: ns, labels: {kubernetes.io/service-name: good}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5]}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: badport, namespace: ns}
spec: {clusterIP: 10.96.0.11, ports: [{name: http, port: 99999}]}
---
apiVersion: v1
kind: Service
metadata: {name: badip, namespace: ns}
spec: {clusterIP: 10.96.0.999, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: orphan, namespace: ns}
addressType: IPv4
endpoints: [{addresses: [10.244.1.6]}]
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_malformed_objects_are_named_and_the_rest_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    code, out, err = run(
        ["render", "--objects", str(path), "--node-name", "n1", "--cluster-cidr", "10.244.0.0/16"], capsys
    )
    assert code == 0
    assert "Service ns/badport: spec.ports[0].port: 99999 is out of range 1-65535" in err
    assert "Service ns/badip: spec.clusterIP: '10.96.0.999' is not an IP address" in err
    assert "EndpointSlice ns/orphan: metadata.labels[kubernetes.io/service-name]" in err
    assert '-A KUBE-SERVICES -m comment --comment "ns/good:http cluster IP"' in out
    assert "badport" not in out and "10.96.0.999" not in out
    assert out.startswith("*filter\n") and out.endswith("COMMIT\n")


def test_strict_fails_on_rejections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    code, out, _ = run(["render", "--objects", str(path), "--strict"], capsys)
    assert code == 1 and "ns/good:http" in out


def test_standalone_adds_jumps_and_canaries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    _, out, _ = run(["render", "--objects", str(path), "--standalone"], capsys)
    assert out.startswith("*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT\n")
    assert '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in out


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("kind: Service\nspec: [oops\n", [], "not valid YAML"),
        ('{"kind": ', [], "not valid JSON"),
        (None, [], "no such file or directory"),
        ("kind: List\nitems: []\n", ["--mode", "ipvs"], "mode: 'ipvs' is not supported"),
        ("kind: List\nitems: []\n", ["--node-ip", "1.2.3"], "--node-ip: '1.2.3' is not an IP address"),
    ],
    ids=["yaml", "json", "missing", "mode", "node-ip"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: str | None, args: list[str], message: str) -> None:
    path = tmp_path / "in.yaml"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "clew", "render", "--objects", str(path), *args], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in lines[0]


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    objects = tmp_path / "in.yaml"
    objects.write_text("kind: List\nitems: []\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables: {masqueradeBit: 40}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "clew", "render", "--objects", str(objects), "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "clew: error: config: iptables.masqueradeBit: 40 is out of range 0-31"


CLASH = """\
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec: {clusterIP: 10.96.0.10, externalIPs: [1.2.3.4], ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: ns}
spec: {clusterIP: 10.96.0.11, externalIPs: [1.2.3.4], ports: [{name: http, port: 80}]}
"""


def test_nftables_mode_prints_the_script_and_names_each_rejected_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "clash.yaml"
    path.write_text(CLASH)
    code, out, err = run(["render", "--objects", str(path), "--mode", "nftables"], capsys)
    assert code == 0 and out.startswith("add table ip clew\ndelete table ip clew\n")
    assert 'comment "ns/a:http"' in out and 'comment "ns/b:http"' not in out
    assert "clew: rejected: Service port ns/b:http (tcp): destination 1.2.3.4 . tcp . 80 is already ns/a:http's" in err
    code, _, _ = run(["render", "--objects", str(path), "--mode", "nftables", "--strict"], capsys)
    assert code == 1
