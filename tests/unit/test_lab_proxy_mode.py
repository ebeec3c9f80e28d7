"""The lab's proxy mode: a lab comes up in either mode, and one node's agent can be given the
other mode for its next start (``clew lab restart --proxy-mode``). No root needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clew.lab.build import LabError, kube_proxy_yaml, set_proxy_mode
from clew.lab.plan import LabConfig
from clew.lab.state import LabState


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_both_modes_are_valid(mode: str) -> None:
    LabConfig(name="bl1", proxy_mode=mode).validate()
    doc = yaml.safe_load(kube_proxy_yaml(LabConfig(name="bl1"), "node-2", mode))
    assert (doc["mode"], doc["hostnameOverride"], doc["kind"]) == (mode, "node-2", "KubeProxyConfiguration")


def test_another_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="proxy_mode: 'ipvs' is not iptables or nftables"):
        LabConfig(name="bl1", proxy_mode="ipvs").validate()


def test_one_node_gets_the_other_mode(tmp_path: Path) -> None:
    state = LabState(LabConfig(name="bl1", nodes=2))
    set_proxy_mode(state, tmp_path, "node-2", "nftables")
    assert yaml.safe_load((tmp_path / "nodes" / "node-2" / "kube-proxy.yaml").read_text())["mode"] == "nftables"
    assert not (tmp_path / "nodes" / "node-1").exists()  # the other node keeps its own
    with pytest.raises(LabError, match="no node 'node-9' in lab bl1"):
        set_proxy_mode(state, tmp_path, "node-9", "nftables")
    with pytest.raises(LabError, match="--proxy-mode 'ipvs'"):
        set_proxy_mode(state, tmp_path, "node-1", "ipvs")
