"""The proxy checks in nftables mode, on a clean lab node whose agent runs ``--mode nftables``
(tests/unit/doctor_nft_node, written by ``clew dump`` from a ``clew lab up --proxy-mode
nftables`` node: table ``ip clew``, Service lab/web) and on kube-proxy's own nftables layout
(tests/unit/data/nft/kube_proxy_overall.json: kube-proxy's golden ruleset loaded by nft 1.0.6
and listed with ``nft -j``). Each fault is written into the node's files and fails exactly its
check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clew.doctor import dump_files, facts, objects, proxy_state
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding

NODE = Path(__file__).parent / "doctor_nft_node"
IPTABLES_NODE = Path(__file__).parent / "doctor_node"  # a clean iptables-mode node of the same lab shape
KUBE_PROXY = Path(__file__).parent / "data" / "nft" / "kube_proxy_overall.json"
KUBE_PROXY_SERVICES = frozenset(f"ns{i}/svc{i}" for i in range(1, 7))


def node_files() -> dict[str, str]:
    return dump_files.read(NODE)[1]


def run(files: dict[str, str], cluster: facts.Objects | None = None) -> dict[str, Finding]:
    seen = cluster if cluster is not None else objects.load(NODE / "objects")
    return {f.id: f for f in run_all(facts.from_files(files, name="node-1", objects=seen))}


def not_ok(found: dict[str, Finding]) -> dict[str, str]:
    return {i: f.status for i, f in found.items() if f.status != "ok"}


def edit_nft(files: dict[str, str], change: Callable[[list[dict[str, Any]]], None]) -> None:
    doc = json.loads(files["nft-ruleset.json"])
    change(doc["nftables"])
    files["nft-ruleset.json"] = json.dumps(doc)


def clew_rules(items: list[dict[str, Any]], chain: str) -> list[dict[str, Any]]:
    return [i["rule"] for i in items if "rule" in i and i["rule"]["table"] == "clew" and i["rule"]["chain"] == chain]


def as_kube_proxy_node(files: dict[str, str]) -> None:
    """The same node with kube-proxy's nftables table instead of clew's."""
    kube_proxy = json.loads(KUBE_PROXY.read_text())["nftables"]

    def swap(items: list[dict[str, Any]]) -> None:
        def clews(i: dict[str, Any]) -> bool:
            body = next(iter(i.values()))
            return body.get("table") == "clew" or ("table" in i and body.get("name") == "clew")

        items[:] = [i for i in items if not clews(i)] + [i for i in kube_proxy if "metainfo" not in i]

    edit_nft(files, swap)
    files["nft-ruleset.txt"] = files["nft-ruleset.txt"].replace("table ip clew {", "table ip kube-proxy {")


def test_a_clean_nftables_mode_node_passes_every_check() -> None:
    found = run(node_files())
    assert not_ok(found) == {}
    assert found["proxy.mode"].evidence == {"modes": ["nftables (clew)"], "programmed_by": {"nftables (clew)": "clew"}}
    assert found["proxy.stale"].evidence["programmed"] == {"nftables (clew)": 1}
    assert "nftables_sync_failures_total" in found["proxy.sync"].evidence["failures"]
    assert "does not grow with Services" in found["node.rule_count"].summary
    assert found["conntrack.random_fully"].evidence["nft_masquerades"] == 1
    assert found["podnet.offload"].evidence["mark_cleared_before_masquerade"] is True


def test_the_iptables_mode_node_names_its_programmer_from_metrics() -> None:
    found = run(dump_files.read(IPTABLES_NODE)[1], objects.load(IPTABLES_NODE / "objects"))
    assert found["proxy.mode"].evidence["programmed_by"] == {"iptables": "clew"}  # clew_* metrics


def fault_iptables_mode_too(files: dict[str, str]) -> None:
    """The iptables-mode chains of the same Service loaded next to ``ip clew`` (a mode switch that
    did not clean up)."""
    files["iptables-save.txt"] = dump_files.read(IPTABLES_NODE)[1]["iptables-save.txt"]


def fault_kube_chains_in_both_backends(files: dict[str, str]) -> None:
    kube = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
    files["iptables-legacy-save.txt"] = kube
    files["iptables-nft-save.txt"] = files["iptables-nft-save.txt"] + kube


def fault_legacy_maze(files: dict[str, str]) -> None:
    """KUBE-SERVICES left in iptables-legacy only: invisible to the default (nft) iptables, still matching."""
    files["iptables-legacy-save.txt"] = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"


def fault_half_cleaned_iptables_mode(files: dict[str, str]) -> None:
    """KUBE-FORWARD left hooked in FORWARD after an iptables-mode cleanup that stopped half-way."""
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):
        files[name] = files[name].replace(
            ":FLANNEL-FWD - [0:0]\n", ":FLANNEL-FWD - [0:0]\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n", 1
        )


def fault_kube_proxy_table_too(files: dict[str, str]) -> None:
    items = [i for i in json.loads(KUBE_PROXY.read_text())["nftables"] if "table" in i]
    edit_nft(files, lambda doc: doc.extend(items))  # the table alone: kube-proxy's leftover, empty


def fault_stale_element(files: dict[str, str]) -> None:
    """A dst element left for a Service deleted while the agent was down."""

    def add(items: list[dict[str, Any]]) -> None:
        m = next(i["map"] for i in items if "map" in i and i["map"]["name"] == "dst-tcp-2")
        key = {"elem": {"val": {"concat": ["10.96.0.99", 80, 0]}, "comment": "lab/gone:http"}}
        m["elem"].append([key, {"concat": ["10.244.1.9", 8080]}])

    edit_nft(files, add)


def fault_nft_sync_failures(files: dict[str, str]) -> None:
    name = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"
    files["proxy-metrics.txt"] = files["proxy-metrics.txt"].replace(
        f'{name}{{ip_family="IPv4"}} 0.0', f'{name}{{ip_family="IPv4"}} 3.0'
    )


def fault_route_localnet_without_protection(files: dict[str, str]) -> None:
    lines = files["sysctl.txt"].replace("net.ipv4.conf.all.route_localnet = 0", "net.ipv4.conf.all.route_localnet = 1")
    files["sysctl.txt"] = lines

    def drop_rule(items: list[dict[str, Any]]) -> None:
        items[:] = [
            i for i in items if not ("rule" in i and i["rule"].get("comment") == "block incoming localnet connections")
        ]

    edit_nft(files, drop_rule)


def fault_masquerade_not_fully_random(files: dict[str, str]) -> None:
    edit_nft(files, lambda items: clew_rules(items, "masquerading")[-1]["expr"][0].update(masquerade=None))


def fault_mark_kept(files: dict[str, str]) -> None:
    def drop_xor(items: list[dict[str, Any]]) -> None:
        xor = clew_rules(items, "masquerading")[2]
        items[:] = [i for i in items if i.get("rule") is not xor]

    edit_nft(files, drop_xor)


def fault_stale_udp(files: dict[str, str]) -> None:
    files["conntrack-udp.txt"] = (
        "udp      17 119 src=10.244.1.2 dst=10.96.0.10 sport=5555 dport=80 src=10.244.2.99 dst=10.244.1.2 "
        "sport=8080 dport=5555 mark=0 use=1\n"
    )


FAULTS: list[tuple[Callable[[dict[str, str]], None], str, str]] = [
    (fault_iptables_mode_too, "proxy.backends", "fail"),
    (fault_kube_chains_in_both_backends, "proxy.backends", "fail"),
    (fault_legacy_maze, "proxy.backends", "fail"),
    (fault_half_cleaned_iptables_mode, "proxy.backends", "fail"),
    (fault_kube_proxy_table_too, "proxy.backends", "fail"),
    (fault_stale_element, "proxy.stale", "fail"),
    (fault_nft_sync_failures, "proxy.sync", "warn"),
    (fault_route_localnet_without_protection, "forward.route_localnet", "fail"),
    (fault_masquerade_not_fully_random, "conntrack.random_fully", "warn"),
    (fault_mark_kept, "podnet.offload", "warn"),
    (fault_stale_udp, "conntrack.stale_udp", "fail"),
]


@pytest.mark.parametrize(("fault", "check_id", "status"), FAULTS, ids=[f[0].__name__ for f in FAULTS])
def test_each_fault_fails_exactly_its_check(
    fault: Callable[[dict[str, str]], None], check_id: str, status: str
) -> None:
    files = node_files()
    fault(files)
    found = run(files)
    assert not_ok(found) == {check_id: status}, found[check_id]
    assert found[check_id].fix


def test_two_modes_names_both() -> None:
    files = node_files()
    fault_iptables_mode_too(files)
    found = run(files)["proxy.backends"]
    assert (
        found.evidence["modes"] == ["iptables", "nftables (clew)"] and "iptables and nftables (clew)" in found.summary
    )


def test_a_stale_element_is_named_by_its_comment() -> None:
    files = node_files()
    fault_stale_element(files)
    assert run(files)["proxy.stale"].evidence["stale"] == ["lab/gone"]


def test_a_service_deleted_while_the_agent_was_down_is_stale_and_a_new_one_missing() -> None:
    cluster = objects.load(NODE / "objects")
    gone = facts.Objects(nodes=cluster.nodes, services=frozenset({"lab/other"}))
    found = run(node_files(), gone)["proxy.stale"]
    assert (
        found.status == "fail" and found.evidence["stale"] == ["lab/web"] and found.evidence["missing"] == ["lab/other"]
    )


def test_route_localnet_on_is_fine_with_clews_nft_protection_rule() -> None:
    files = node_files()
    files["sysctl.txt"] = files["sysctl.txt"].replace(
        "net.ipv4.conf.all.route_localnet = 0", "net.ipv4.conf.all.route_localnet = 1"
    )
    found = run(files)["forward.route_localnet"]
    assert found.status == "ok" and "table ip clew chain filter-input" in found.evidence["by"]


def test_a_live_dnat_to_a_current_endpoint_is_not_stale() -> None:
    files = node_files()
    files["conntrack-udp.txt"] = (
        "udp      17 119 src=10.244.1.2 dst=10.96.0.10 sport=5555 dport=80 src=10.244.2.2 dst=10.244.1.2 "
        "sport=8080 dport=5555 mark=0 use=1\n"
    )
    assert run(files)["conntrack.stale_udp"].status == "ok"


def test_many_services_in_nftables_mode_are_not_a_warning() -> None:
    files = node_files()

    def grow(items: list[dict[str, Any]]) -> None:
        s = next(i["set"] for i in items if "set" in i and i["set"]["name"] == "cluster-masq")
        s["elem"] = [{"elem": {"val": {"concat": [f"10.96.{i // 250}.{i % 250 + 1}", "tcp", 80]},
                               "comment": f"lab/svc{i}:http"}} for i in range(5000)]  # fmt: skip

    edit_nft(files, grow)
    found = run(files, facts.Objects(services=frozenset({"lab/web", *(f"lab/svc{i}" for i in range(5000))})))
    assert found["node.rule_count"].status == "ok"
    assert found["node.rule_count"].evidence["nftables_service_ports"] == {"nftables (clew)": 5001}


# kube-proxy's nftables mode


def test_kube_proxys_nftables_table_is_read() -> None:
    files = node_files()
    as_kube_proxy_node(files)
    found = run(files, facts.Objects(services=KUBE_PROXY_SERVICES))
    assert found["proxy.mode"].evidence["programmed_by"] == {"nftables (kube-proxy)": "kube-proxy"}
    assert found["proxy.stale"].status == "ok", found["proxy.stale"]
    assert found["proxy.backends"].status == "ok"
    assert found["conntrack.random_fully"].status == "ok"
    assert found["podnet.offload"].evidence["mark_cleared_before_masquerade"] is True
    # ns6/svc6 has no endpoints: only its no-endpoint element names it
    assert "ns6/svc6" in proxy_state.nft_programmed(facts.from_files(files, name="n"), proxy_state.KUBE_PROXY)


def test_kube_proxys_chain_names_tell_stale_and_missing_services() -> None:
    files = node_files()
    as_kube_proxy_node(files)
    seen = facts.Objects(services=(KUBE_PROXY_SERVICES - {"ns3/svc3"}) | {"ns9/svc9"})
    found = run(files, seen)["proxy.stale"]
    assert (
        found.status == "fail" and found.evidence["stale"] == ["ns3/svc3"] and found.evidence["missing"] == ["ns9/svc9"]
    )


def test_kube_proxys_endpoints_come_from_its_endpoint_chains() -> None:
    files = node_files()
    as_kube_proxy_node(files)
    ips, endpoints = proxy_state.nft_service_ips_and_endpoints(
        facts.from_files(files, name="n"), proxy_state.KUBE_PROXY
    )
    assert {"172.30.0.41", "172.30.0.46", "1.2.3.4"} <= ips
    assert endpoints == {f"10.180.0.{i}:80" for i in range(1, 6)}


def test_ipvs_keeps_its_iptables_chains_without_being_two_modes() -> None:
    """IPVS mode writes nat KUBE-SERVICES (ipset matches) next to kube-ipvs0: one mode."""
    files = dump_files.read(IPTABLES_NODE)[1]
    doc = json.loads(files["ip-link.json"])
    doc.append({"ifindex": 99, "ifname": "kube-ipvs0", "flags": ["BROADCAST", "NOARP"], "mtu": 1500,
                "linkinfo": {"info_kind": "dummy"}})  # fmt: skip
    files["ip-link.json"] = json.dumps(doc)
    text = files["iptables-save.txt"]
    for line in text.splitlines():
        if "KUBE-SVC-" in line or "KUBE-SEP-" in line:
            text = text.replace(line + "\n", "")
    files["iptables-save.txt"] = text
    found = run(files, objects.load(IPTABLES_NODE / "objects"))
    assert found["proxy.mode"].evidence["modes"] == ["ipvs"]
    assert found["proxy.backends"].status == "ok"


def test_the_sysctls_are_read_by_name_for_every_device_of_the_dump() -> None:
    """collect reads exactly the sysctls the dump holds (a walk of all of them cost 0.15-0.8 s)."""
    from clew.doctor.collect import sysctl_keys

    files = node_files()
    keys = set(sysctl_keys(files["ip-link.json"]))
    assert "net.ipv4.conf.flannel/1.rp_filter" in keys and "net.bridge.bridge-nf-call-iptables" in keys
    held = {line.split(" = ")[0] for line in files["sysctl.txt"].splitlines() if " = " in line}
    assert held <= keys
