"""Golden scenarios rendered in nftables mode: the same objects and node settings as the
``.iptables`` goldens, with ``mode: nftables`` (so localhost NodePorts are off, as kube-proxy's
nftables mode has them)."""

from __future__ import annotations

from dataclasses import replace

from scenario import RENDERED, Scenario

from clew.model.from_kube import build_snapshot
from clew.proxy.nftables.layout import NftRendered
from clew.proxy.nftables.render import render
from clew.proxy.policy import decide
from clew.sources.manifests import load_objects

SUFFIX = ".nft"


def render_nft(scenario: Scenario) -> NftRendered:
    snapshot = build_snapshot(load_objects(scenario.folder / "objects.yaml"))
    assert snapshot.rejections == (), f"{scenario.name}: {snapshot.rejections}"
    config = replace(scenario.config(), mode="nftables")
    return render(decide(snapshot, config), config)


def golden_nft(name: str) -> str:
    return str(RENDERED / f"{name}{SUFFIX}")
