"""Kernel-test fixtures: skip without root or iptables, and build throwaway topologies."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence

import pytest
from topology import Topology, TopologyFactory, unique_prefix

from clew.kernel import netns

TOOLS = ("ip", "bridge", "iptables", "iptables-restore", "iptables-save", "sysctl", "nft", "conntrack")


def kernel_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "kernel tests need root (they create network namespaces and load iptables and nftables rules)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"kernel tests need {', '.join(missing)} (install: bash scripts/install)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = kernel_skip_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("kernel") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def topology_factory() -> Iterator[TopologyFactory]:
    """``make(pods)`` builds a :class:`Topology` with a fresh prefix; all are closed afterwards."""
    made: list[Topology] = []

    def make(pods: Mapping[str, Sequence[str]] | None = None) -> Topology:
        topo = Topology(unique_prefix(), pods)
        made.append(topo)
        return topo

    try:
        yield make
    finally:
        errors = []
        for topo in made:
            try:
                topo.close()
            except Exception as exc:  # close them all, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def nft_ns() -> Iterator[str]:
    """One throwaway namespace for a module's nft loads (skipped without nft); always deleted."""
    if shutil.which("nft") is None:
        pytest.skip("needs nft (install: bash scripts/install)")
    name = unique_prefix("nf") + "-nft"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)
    assert not netns.exists(name)
