"""forward.policy reads native nftables tables too (``nft -j list ruleset``): a base chain on the
forward hook outside iptables-nft's tables (firewalld's, a hand-made ``inet filter``) with
``policy drop`` and no accept path for pod traffic fails, naming the table and chain; rules the
walk does not model are listed, never guessed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clew.doctor import dump_files, facts, objects
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding

NODE = Path(__file__).parent / "doctor_node"  # a clean lab node, pod subnet 10.244.1.0/24 on cni0


def run_with(*items: dict[str, Any]) -> dict[str, Finding]:
    files = dump_files.read(NODE)[1]
    doc = json.loads(files["nft-ruleset.json"])
    doc["nftables"].extend(items)
    files["nft-ruleset.json"] = json.dumps(doc)
    cluster = objects.load(NODE / "objects")
    return {f.id: f for f in run_all(facts.from_files(files, name="node-1", objects=cluster))}


def table(family: str, name: str, chain: str, policy: str, *rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {"family": family, "table": name, "name": chain, "handle": 1, "type": "filter", "hook": "forward",
            "prio": 0, "policy": policy}  # fmt: skip
    items: list[dict[str, Any]] = [{"table": {"family": family, "name": name}}, {"chain": base}]
    for i, expr in enumerate(rules, start=2):
        items.append({"rule": {"family": family, "table": name, "chain": chain, "handle": i, "expr": expr}})
    return items


def saddr(net: str, verdict: str = "accept") -> list[dict[str, Any]]:
    addr, _, length = net.partition("/")
    match = {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
             "right": {"prefix": {"addr": addr, "len": int(length)}}}  # fmt: skip
    return [{"match": match}, {"counter": {"packets": 0, "bytes": 0}}, {verdict: None}]


def test_the_clean_node_reads_no_native_forward_chain() -> None:
    found = run_with()["forward.policy"]
    assert found.status == "ok" and found.evidence["nft_forward_chains"] == {}


def test_a_hand_made_policy_drop_forward_chain_fails_naming_it() -> None:
    every = run_with(*table("inet", "filter", "forward", "drop"))
    assert {i: f.status for i, f in every.items() if f.status != "ok"} == {"forward.policy": "fail"}
    found = every["forward.policy"]
    assert "table inet filter chain forward" in found.summary and "policy drop" in found.summary
    assert found.fix.startswith("nft insert rule inet filter forward ip saddr 10.244.0.0/16 accept")


def test_an_accept_path_for_the_pod_network_makes_policy_drop_fine() -> None:
    dst = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": {"set": [{"prefix": {"addr": "10.244.0.0", "len": 16}}, "192.0.2.9"]}}},
           {"accept": None}]  # fmt: skip
    found = run_with(*table("inet", "filter", "forward", "drop", saddr("10.244.0.0/16"), dst))["forward.policy"]
    assert found.status == "ok", found
    assert found.evidence["nft_forward_chains"] == {"table inet filter chain forward": "policy drop"}


def test_a_drop_rule_in_a_policy_accept_chain_fails_naming_the_rule() -> None:
    found = run_with(*table("ip", "guard", "fwd", "accept", saddr("10.244.0.0/16", "drop")))["forward.policy"]
    assert found.status == "fail" and "table ip guard chain fwd handle 2" in found.summary


def test_rules_it_cannot_evaluate_are_listed_and_the_drop_is_only_a_warning() -> None:
    lookup = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@trusted"}},
              {"accept": None}]  # fmt: skip
    found = run_with(*table("inet", "firewalld", "filter_FORWARD", "drop", lookup))["forward.policy"]
    assert found.status == "warn", found
    assert found.evidence["rules_not_evaluated"] == ["table inet firewalld chain filter_FORWARD handle 2"]
    assert found.fix.startswith("firewall-cmd --permanent --zone=trusted --add-source=10.244.0.0/16")


def test_iptables_nfts_own_tables_and_other_families_are_not_read_twice() -> None:
    found = run_with(*table("ip", "filter", "FORWARD2", "drop"), *table("ip6", "x", "f", "drop"))["forward.policy"]
    assert found.status == "ok" and found.evidence["nft_forward_chains"] == {}


def test_an_older_dump_without_the_json_says_what_was_not_read() -> None:
    files = dump_files.read(NODE)[1]
    del files["nft-ruleset.json"]
    found = {f.id: f for f in run_all(facts.from_files(files, name="n"))}["forward.policy"]
    assert found.status == "ok" and "not read" in found.evidence["nft_tables"]


def hooked(family: str, name: str, hook: str, policy: str, *rules: list[dict[str, Any]], dev: str | None = None
           ) -> list[dict[str, Any]]:  # fmt: skip
    items = table(family, name, "c", policy, *rules)
    items[1]["chain"]["hook"] = hook
    if dev is not None:
        items[1]["chain"]["dev"] = dev
    return items


def test_a_bridge_family_forward_drop_fails_for_pods_on_the_same_node() -> None:
    every = run_with(*hooked("bridge", "filter", "forward", "drop"))
    assert {i: f.status for i, f in every.items() if f.status != "ok"} == {"forward.policy": "fail"}
    found = every["forward.policy"]
    assert "table bridge filter chain c" in found.summary and "10.244.1.2 -> 10.244.1.3" in found.summary
    assert found.evidence["nft_bridge_forward_chains"] == {"table bridge filter chain c": "policy drop"}


def test_a_bridge_family_forward_drop_with_an_accept_for_the_pod_network_is_fine() -> None:
    found = run_with(*hooked("bridge", "filter", "forward", "drop", saddr("10.244.0.0/16")))["forward.policy"]
    assert found.status == "ok", found


def test_a_netdev_ingress_drop_on_the_vxlan_device_fails() -> None:
    found = run_with(*hooked("netdev", "guard", "ingress", "drop", dev="flannel.1"))["forward.policy"]
    assert found.status == "fail" and "table netdev guard chain c" in found.summary, found
    assert "(flannel.1 -> cni0)" in found.summary


def test_an_ingress_chain_on_a_device_pod_traffic_does_not_enter_is_not_a_failure() -> None:
    found = run_with(*hooked("netdev", "guard", "ingress", "drop", dev="dummy9"))["forward.policy"]
    assert found.status == "ok" and "table netdev guard chain c" in found.evidence["nft_ingress_chains"]


def test_ingress_devices_come_from_the_text_listing_when_the_json_omits_them() -> None:
    """nft 1.0.6's ``nft -j`` writes no ``dev`` for an ingress chain (seen on this machine)."""
    files = dump_files.read(NODE)[1]
    doc = json.loads(files["nft-ruleset.json"])
    doc["nftables"].extend(hooked("netdev", "guard", "ingress", "drop"))
    files["nft-ruleset.json"] = json.dumps(doc)
    files["nft-ruleset.txt"] += (
        'table netdev guard {\n\tchain c {\n\t\ttype filter hook ingress device "flannel.1" priority filter; '
        "policy drop;\n\t}\n}\n"
    )
    found = {f.id: f for f in run_all(facts.from_files(files, name="n", objects=objects.load(NODE / "objects")))}
    assert found["forward.policy"].status == "fail", found["forward.policy"]
