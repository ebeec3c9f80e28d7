"""The doctor's live reader on real nftables state: kube-proxy's own nftables table (its golden
ruleset, tests/unit/data/nft/kube_proxy_overall.nft, loaded into a throwaway namespace) is read
as kube-proxy's nftables mode with its Services; iptables-mode chains next to it are two modes;
an ingress chain's device comes from the text listing (nft 1.0.6's JSON leaves it out)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from topology import unique_prefix

from clew.doctor import collect, facts
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding
from clew.kernel import netns

pytestmark = pytest.mark.kernel

KUBE_PROXY = Path(__file__).resolve().parents[1] / "unit" / "data" / "nft" / "kube_proxy_overall.nft"
SERVICES = frozenset(f"ns{i}/svc{i}" for i in range(1, 7))


@pytest.fixture
def ns() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("needs nft (install: bash scripts/install)")
    name = unique_prefix("dk") + "-kp"
    netns.create(name)
    try:
        netns.run(name, ["nft", "-f", "-"], input=KUBE_PROXY.read_text())
        yield name
    finally:
        netns.delete(name)
    assert not netns.exists(name)


def doctor(ns: str, services: frozenset[str] = SERVICES) -> dict[str, Finding]:
    files = collect.capture(ns, sample_s=0)
    found = run_all(facts.from_files(files, name=ns, objects=facts.Objects(services=services)))
    return {f.id: f for f in found}


def test_kube_proxys_nftables_mode_is_read_live(ns: str) -> None:
    found = doctor(ns)
    assert found["proxy.mode"].evidence["programmed_by"] == {"nftables (kube-proxy)": "kube-proxy"}
    assert found["proxy.backends"].status == "ok", found["proxy.backends"]
    assert found["proxy.stale"].status == "ok", found["proxy.stale"]
    assert found["conntrack.random_fully"].status == "ok", found["conntrack.random_fully"]
    gone = doctor(ns, (SERVICES - {"ns3/svc3"}) | {"ns9/svc9"})["proxy.stale"]
    assert gone.status == "fail" and gone.evidence["stale"] == ["ns3/svc3"] and gone.evidence["missing"] == ["ns9/svc9"]


def test_iptables_mode_chains_next_to_it_are_two_modes(ns: str) -> None:
    netns.run(ns, ["iptables", "-t", "nat", "-N", "KUBE-SERVICES"])
    found = doctor(ns)["proxy.backends"]
    assert found.status == "fail" and found.evidence["modes"] == ["iptables", "nftables (kube-proxy)"], found


def test_an_ingress_chains_device_is_read_from_the_listing(ns: str) -> None:
    netns.run(ns, ["ip", "link", "add", "dkv0", "type", "veth", "peer", "name", "dkv1"])
    netns.run(ns, ["nft", "add table netdev dkguard"])
    netns.run(
        ns, ["nft", "add chain netdev dkguard c { type filter hook ingress device dkv0 priority 0; policy drop; }"]
    )
    seen = facts.from_files(collect.capture(ns, sample_s=0), name=ns)
    assert seen.nft is not None
    (chain,) = seen.nft.base_chains("ingress", families=("netdev",))
    assert chain.devices == ("dkv0",)
