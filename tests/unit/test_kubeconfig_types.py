"""kubeconfig fields are read with kubectl's types: a boolean is a YAML boolean, never a truthy
string; a CA with insecure-skip-tls-verify is refused; an agent that does not verify says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from clew.sources.kube import KubeSource
from clew.sources.kubeconfig import ClusterConfig, KubeconfigError, load_kubeconfig


def kubeconfig(tmp_path: Path, cluster: str, user: str = "{token: t}") -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "current-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        f"clusters: [{{name: k, cluster: {cluster}}}]\n"
        f"users: [{{name: u, user: {user}}}]\n"
    )
    return path


@pytest.mark.parametrize("value", ['"false"', '"true"', "'no'", "1", "0", '""', "[true]"])
def test_insecure_skip_tls_verify_takes_only_a_yaml_boolean(tmp_path: Path, value: str) -> None:
    path = kubeconfig(tmp_path, f'{{server: "https://10.0.0.1:6443", insecure-skip-tls-verify: {value}}}')
    with pytest.raises(KubeconfigError) as caught:
        load_kubeconfig(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "clusters[k].cluster.insecure-skip-tls-verify: must be true or false" in message


@pytest.mark.parametrize(("value", "insecure"), [("true", True), ("false", False), ("yes", True), ("off", False)])
def test_yaml_booleans_are_read(tmp_path: Path, value: str, insecure: bool) -> None:
    cfg = load_kubeconfig(kubeconfig(tmp_path, f'{{server: "https://x:1", insecure-skip-tls-verify: {value}}}'))
    assert cfg.insecure is insecure


@pytest.mark.parametrize(
    ("cluster", "user", "field"),
    [
        ('{server: "https://x:1", disable-compression: "no"}', "{token: t}", "cluster.disable-compression"),
        ('{server: "https://x:1", tls-server-name: 5}', "{token: t}", "cluster.tls-server-name: must be a string"),
        ("{server: 6443}", "{token: t}", "cluster.server: must be a string"),
        ('{server: "https://x:1"}', "{token: 12345}", "users[u].user.token: must be a string"),
        ('{server: "https://x:1"}', "{tokenFile: [a]}", "users[u].user.tokenFile: must be a string"),
        ('{server: "https://x:1", certificate-authority: true}', "{token: t}", "cluster.certificate-authority:"),
    ],
)
def test_other_typed_fields_are_checked(tmp_path: Path, cluster: str, user: str, field: str) -> None:
    with pytest.raises(KubeconfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_kubeconfig(kubeconfig(tmp_path, cluster, user))


@pytest.mark.parametrize("ca", ["certificate-authority: ca.crt", "certificate-authority-data: UEVN"])
def test_a_ca_with_insecure_is_refused_as_client_go_does(tmp_path: Path, ca: str) -> None:
    path = kubeconfig(tmp_path, f'{{server: "https://x:1", insecure-skip-tls-verify: true, {ca}}}')
    with pytest.raises(KubeconfigError, match="a root certificates file with the insecure flag is not allowed"):
        load_kubeconfig(path)


def test_the_source_warns_at_start_when_verification_is_off(caplog: pytest.LogCaptureFixture) -> None:
    insecure = ClusterConfig(server="https://127.0.0.1:9", insecure=True, token="t")
    assert insecure.security_warning() is not None and "insecure-skip-tls-verify" in str(insecure.security_warning())
    assert ClusterConfig(server="http://127.0.0.1:9").security_warning() is not None
    assert ClusterConfig(server="https://127.0.0.1:9", ca_data="PEM").security_warning() is None
    source = KubeSource(insecure, start=False)
    source.reflectors = []  # nothing to run: only the start-up warning is under test
    with caplog.at_level(logging.WARNING, logger="clew.sources.kube"):
        source.start()
    assert any("TLS verification of https://127.0.0.1:9 is off" in r.getMessage() for r in caplog.records)
