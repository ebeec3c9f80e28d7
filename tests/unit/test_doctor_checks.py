"""clew doctor's checks as pure functions of node facts: a clean lab node (tests/unit/doctor_node,
written by ``clew dump`` from a lab node) passes every check; each fault, written into the
node's files, fails exactly its check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clew.cli.main import main
from clew.doctor import dump_files, facts, objects
from clew.doctor.checks import CHECKS, run_all
from clew.doctor.checks.node_rule_count import first_packet_ms
from clew.doctor.finding import API_VERSION, Finding, exit_code, table

NODE = Path(__file__).parent / "doctor_node"
IDS = [
    "proxy.mode", "proxy.backends", "proxy.stale", "proxy.sync", "proxy.healthz",
    "forward.policy", "forward.ip_forward", "forward.rp_filter", "forward.bridge_nf", "forward.hairpin",
    "forward.route_localnet",
    "podnet.mtu", "podnet.vxlan_port", "podnet.offload", "podnet.routes", "podnet.bgp", "podnet.subnet_overlap",
    "conntrack.usage", "conntrack.errors", "conntrack.stale_udp", "conntrack.random_fully",
    "node.steal", "node.neighbours", "node.rule_count",
]  # fmt: skip


def node_files() -> dict[str, str]:
    return dump_files.read(NODE)[1]


def run(files: dict[str, str], *, with_objects: bool = True) -> dict[str, Finding]:
    cluster = objects.load(NODE / "objects") if with_objects else None
    return {f.id: f for f in run_all(facts.from_files(files, name="node-1", objects=cluster))}


def edit_json(files: dict[str, str], name: str, change: Callable[[list[dict[str, Any]]], None]) -> None:
    doc = json.loads(files[name])
    change(doc)
    files[name] = json.dumps(doc)


def link(doc: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(x for x in doc if x["ifname"] == name)


def set_sysctl(files: dict[str, str], key: str, value: str) -> None:
    lines = [line for line in files["sysctl.txt"].splitlines() if not line.startswith(key + " = ")]
    files["sysctl.txt"] = "\n".join([*lines, f"{key} = {value}"]) + "\n"


def add_rules(files: dict[str, str], table_name: str, *lines: str, policy: tuple[str, str] | None = None) -> None:
    """Insert rules (and chain declarations) right after ``*table`` of the default iptables-save."""
    text = files["iptables-save.txt"]
    head, _, rest = text.partition(f"*{table_name}\n")
    declared, _, body = rest.partition("\n-A ")
    if policy:
        declared = declared.replace(f":{policy[0]} ACCEPT", f":{policy[0]} {policy[1]}")
    new_chains = [line for line in lines if line.startswith(":")]
    rules = [line for line in lines if not line.startswith(":")]
    files["iptables-save.txt"] = head + f"*{table_name}\n" + "\n".join([declared, *new_chains, *rules]) + "\n-A " + body


def test_the_check_ids_are_the_contract() -> None:
    assert [check_id for check_id, _ in CHECKS] == IDS


def test_a_clean_lab_node_passes_every_check() -> None:
    found = run(node_files())
    assert {i: f.status for i, f in found.items()} == dict.fromkeys(IDS, "ok")
    assert exit_code(list(found.values())) == 0


def test_without_objects_the_object_checks_skip_with_the_reason() -> None:
    found = run(node_files(), with_objects=False)
    assert found["proxy.stale"].status == "skip" and "--objects" in found["proxy.stale"].summary
    assert found["podnet.routes"].status == "skip" and "--objects" in found["podnet.routes"].summary


def test_missing_sysctls_or_sample_skip_rather_than_guess() -> None:
    files = node_files()
    del files["sysctl.txt"]
    del files["cpu-sample.txt"]
    found = run(files)
    for check_id in ("forward.ip_forward", "forward.rp_filter", "forward.bridge_nf", "forward.route_localnet",
                     "conntrack.usage", "node.steal", "conntrack.errors"):  # fmt: skip
        assert found[check_id].status == "skip", check_id


def fault_ip_forward(files: dict[str, str]) -> None:
    set_sysctl(files, "net.ipv4.ip_forward", "0")


def fault_policy_drop_without_accept_path(files: dict[str, str]) -> None:
    files["iptables-save.txt"] = files["iptables-save.txt"].replace(
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD\n', ""
    )
    add_rules(files, "filter", policy=("FORWARD", "DROP"))


def fault_foreign_chain_ahead(files: dict[str, str]) -> None:
    add_rules(files, "filter", ":UFW-BEFORE - [0:0]", "-A FORWARD -j UFW-BEFORE", "-A UFW-BEFORE -j DROP")


def fault_bridge_nf(files: dict[str, str]) -> None:
    set_sysctl(files, "net.bridge.bridge-nf-call-iptables", "0")


def fault_rp_filter(files: dict[str, str]) -> None:
    set_sysctl(files, "net.ipv4.conf.flannel/1.rp_filter", "1")


def fault_hairpin(files: dict[str, str]) -> None:
    edit_json(
        files, "ip-link.json", lambda d: link(d, "veth4a96cc7d")["linkinfo"]["info_slave_data"].update(hairpin=False)
    )


def fault_route_localnet(files: dict[str, str]) -> None:
    files["iptables-save.txt"] = "\n".join(
        line for line in files["iptables-save.txt"].splitlines() if not line.startswith("-A KUBE-FIREWALL ")
    )


def fault_pod_mtu(files: dict[str, str]) -> None:
    edit_json(files, "ip-link.json", lambda d: link(d, "veth4a96cc7d").update(mtu=1500))


def fault_underlay_mtu_lowered(files: dict[str, str]) -> None:
    edit_json(files, "ip-link.json", lambda d: link(d, "eth0").update(mtu=1400))


def fault_vxlan_port(files: dict[str, str]) -> None:
    add_rules(files, "filter", "-A INPUT -p udp -m udp --dport 8472 -j DROP")


def fault_route_missing(files: dict[str, str]) -> None:
    edit_json(files, "ip-route.json", lambda d: d.remove(next(r for r in d if r["dst"] == "10.244.2.0/24")))


def fault_fdb_missing(files: dict[str, str]) -> None:
    edit_json(files, "bridge-fdb.json", lambda d: d.clear())


def fault_overlap(files: dict[str, str]) -> None:
    edit_json(
        files, "ip-addr.json",
        lambda d: link(d, "eth0")["addr_info"].append({"family": "inet", "local": "10.244.1.77", "prefixlen": 16}),
    )  # fmt: skip


def fault_two_backends(files: dict[str, str]) -> None:
    files["iptables-legacy-save.txt"] = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"


def fault_stale_service(files: dict[str, str]) -> None:
    files["iptables-save.txt"] = files["iptables-save.txt"].replace("lab/web:http", "lab/gone:http")


def fault_two_modes(files: dict[str, str]) -> None:
    files["nft-ruleset.txt"] += "table ip kube-proxy {\n}\n"


def fault_conntrack_full(files: dict[str, str]) -> None:
    set_sysctl(files, "net.netfilter.nf_conntrack_max", "1")


def fault_no_random_fully(files: dict[str, str]) -> None:
    add_rules(files, "nat", "-A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE")


def fault_many_services(files: dict[str, str]) -> None:
    add_rules(files, "nat", *(f":KUBE-SVC-{i:016X} - [0:0]" for i in range(1001)))


def fault_steal(files: dict[str, str]) -> None:
    files["cpu-sample.txt"] = "interval_s 1.000\ncpu  100 0 100 100 0 0 0 0 0 0\ncpu  150 0 150 150 0 0 0 150 0 0\n"


def fault_conntrack_drops(files: dict[str, str]) -> None:
    files["conntrack-stat-after.txt"] = files["conntrack-stat-after.txt"].replace(
        "00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  ",
        "00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000007 00000000 00000000  ",
        1,
    )


def fault_neighbour_thresholds(files: dict[str, str]) -> None:
    files["host.txt"] = files["host.txt"].replace("gc_thresh3 1024", "gc_thresh3 3")


STALE_UDP = (
    "udp      17 119 src=10.244.1.2 dst=10.96.0.10 sport=5555 dport=53 src=10.244.2.99 dst=10.244.1.2 "
    "sport=53 dport=5555 mark=0 use=1\n"
)


def fault_stale_udp(files: dict[str, str]) -> None:
    files["conntrack-udp.txt"] = STALE_UDP


def fault_proxy_hung(files: dict[str, str]) -> None:
    files["proxy-metrics.txt"] = "# curl exit 28\n"


def fault_proxy_not_syncing(files: dict[str, str]) -> None:
    files["host.txt"] = files["host.txt"].replace("collected_at 1796551586.174", "collected_at 1796552586.174")
    # /healthz answers on the same (later) clock: its currentTime moves with it
    healthz = files["proxy-healthz.txt"]
    files["proxy-healthz.txt"] = healthz.replace("2026-12-06T10:06:26.074Z", "2026-12-06T10:23:06.074Z")


def fault_mark_kept_with_tx_offload(files: dict[str, str]) -> None:
    files["iptables-save.txt"] = files["iptables-save.txt"].replace(
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n", ""
    )


def fault_no_proxy(files: dict[str, str]) -> None:
    """A node whose proxy never ran: no KUBE-* chain of the proxy in either backend (a leftover
    one is iptables mode's state, see proxy.backends)."""
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):
        files[name] = "".join(x for x in files[name].splitlines(True) if "KUBE-" not in x)


FAULTS: list[tuple[Callable[[dict[str, str]], None], str, str]] = [
    (fault_ip_forward, "forward.ip_forward", "fail"),
    (fault_policy_drop_without_accept_path, "forward.policy", "fail"),
    (fault_foreign_chain_ahead, "forward.policy", "fail"),
    (fault_bridge_nf, "forward.bridge_nf", "fail"),
    (fault_rp_filter, "forward.rp_filter", "fail"),
    (fault_hairpin, "forward.hairpin", "fail"),
    (fault_route_localnet, "forward.route_localnet", "fail"),
    (fault_pod_mtu, "podnet.mtu", "fail"),
    (fault_underlay_mtu_lowered, "podnet.mtu", "fail"),
    (fault_vxlan_port, "podnet.vxlan_port", "fail"),
    (fault_route_missing, "podnet.routes", "fail"),
    (fault_fdb_missing, "podnet.routes", "fail"),
    (fault_overlap, "podnet.subnet_overlap", "fail"),
    (fault_two_backends, "proxy.backends", "fail"),
    (fault_two_modes, "proxy.backends", "fail"),
    (fault_conntrack_full, "conntrack.usage", "fail"),
    (fault_no_random_fully, "conntrack.random_fully", "warn"),
    (fault_steal, "node.steal", "fail"),
    (fault_mark_kept_with_tx_offload, "podnet.offload", "warn"),
    (fault_proxy_hung, "proxy.sync", "fail"),
    (fault_proxy_not_syncing, "proxy.sync", "fail"),
    (fault_stale_udp, "conntrack.stale_udp", "fail"),
    (fault_conntrack_drops, "conntrack.errors", "fail"),
    (fault_neighbour_thresholds, "node.neighbours", "fail"),
    (fault_many_services, "node.rule_count", "warn"),
]


@pytest.mark.parametrize(("fault", "check_id", "status"), FAULTS, ids=[f[0].__name__ for f in FAULTS])
def test_each_fault_fails_exactly_its_check(
    fault: Callable[[dict[str, str]], None], check_id: str, status: str
) -> None:
    files = node_files()
    fault(files)
    found = run(files)
    assert found[check_id].status == status, found[check_id]
    assert found[check_id].fix, "a failure or warning names its fix"
    others = {i: f.status for i, f in found.items() if i != check_id and f.status != "ok"}
    assert others == {}


def test_stale_rules_and_missing_rules_both_fail_proxy_stale() -> None:
    files = node_files()
    fault_stale_service(files)
    found = run(files)["proxy.stale"]
    assert found.status == "fail"
    assert found.evidence["stale"] == ["lab/gone"] and found.evidence["missing"] == ["lab/web"]


def test_a_node_without_a_proxy_warns() -> None:
    files = node_files()
    fault_no_proxy(files)
    assert run(files)["proxy.mode"].status == "warn"


def test_policy_drop_with_flannels_accept_path_is_ok() -> None:
    files = node_files()
    add_rules(files, "filter", policy=("FORWARD", "DROP"))
    found = run(files)["forward.policy"]
    assert found.status == "ok" and found.evidence["policy"] == "DROP"


def test_the_fix_for_strict_rp_filter_is_a_working_sysctl_command() -> None:
    files = node_files()
    fault_rp_filter(files)
    assert "net.ipv4.conf.flannel/1.rp_filter=2" in run(files)["forward.rp_filter"].fix


def test_steal_share_is_the_steal_delta_over_all_cpu_time() -> None:
    sample = facts.cpu_sample_from_text("interval_s 1.0\ncpu  10 0 10 70 0 0 0 0 5 0\ncpu  20 0 20 140 0 0 0 10 9 0\n")
    assert sample is not None and sample.share(7) == pytest.approx(10 / 100)


def test_insert_failures_growing_warn() -> None:
    files = node_files()
    header, *rows = files["conntrack-stat-after.txt"].splitlines()
    cells = rows[0].split()
    cells[header.split().index("insert_failed")] = "00000003"
    files["conntrack-stat-after.txt"] = "\n".join([header, " ".join(cells), *rows[1:]]) + "\n"
    found = run(files)["conntrack.errors"]
    assert found.status == "warn" and found.evidence["grew"]["insert_failed"] == 3


def test_udp_entries_to_live_endpoints_or_not_dnated_are_not_stale() -> None:
    files = node_files()
    files["conntrack-udp.txt"] = (
        STALE_UDP.replace("10.244.2.99", "10.244.2.2").replace("sport=53 dport=5555", "sport=8080 dport=5555")
        + "udp      17 29 src=10.244.1.2 dst=192.0.2.53 sport=4000 dport=53 src=192.0.2.53 dst=10.244.1.2 "
        "sport=53 dport=4000 mark=0 use=1\n"
    )
    found = run(files)["conntrack.stale_udp"]
    assert found.status == "ok" and found.evidence["udp_entries"] == 2


def test_proxy_sync_refused_skips_and_restore_failures_warn() -> None:
    files = node_files()
    files["proxy-metrics.txt"] = "# curl exit 7\n"
    assert run(files)["proxy.sync"].status == "skip"
    files = node_files()
    files["proxy-metrics.txt"] += "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 2.0\n"
    found = run(files)["proxy.sync"]
    assert found.status == "warn" and found.evidence["failures"]["iptables_restore_failures_total"] == 2


def test_a_queued_sync_not_run_for_a_minute_fails() -> None:
    files = node_files()
    files["proxy-metrics.txt"] += "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds 1796551582.0\n"
    files["proxy-metrics.txt"] = files["proxy-metrics.txt"].replace(
        'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="IPv4"}', "# dropped"
    )
    files["host.txt"] = files["host.txt"].replace("collected_at 1796551586.174", "collected_at 1796551650.0")
    found = run(files)["proxy.sync"]
    assert found.status == "fail" and "queued" in found.summary


def test_tx_offload_off_is_enough_without_the_mark_clearing() -> None:
    files = node_files()
    fault_mark_kept_with_tx_offload(files)
    files["ethtool-k.txt"] = files["ethtool-k.txt"].replace("tx-checksumming: on", "tx-checksumming: off")
    found = run(files)["podnet.offload"]
    assert found.status == "ok" and found.evidence["tx_checksumming"] == "off"


def test_first_packet_cost_follows_the_published_points() -> None:
    assert first_packet_ms(5000) == pytest.approx(0.047)
    assert first_packet_ms(30000) == pytest.approx(0.272)
    assert 0.047 < first_packet_ms(7000) < 0.059


def test_a_crashing_check_is_a_skip_naming_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import clew.doctor.checks as registry

    def boom(_: facts.NodeFacts) -> Finding:
        raise RuntimeError("boom")

    monkeypatch.setattr(registry, "CHECKS", ((IDS[0], boom),))
    (only,) = registry.run_all(facts.from_files(node_files(), name="n"))
    assert only.status == "skip" and "RuntimeError: boom" in only.summary


def test_text_table_puts_failures_first_with_their_fix() -> None:
    files = node_files()
    fault_ip_forward(files)
    text = table("node-1", list(run(files).values()))
    rows = text.splitlines()
    assert rows[2].startswith("FAIL") and "forward.ip_forward" in rows[2]
    assert rows[3].strip() == "fix: sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d/)"
    assert rows[-1] == f"1 fail, 0 warn, 0 skip, {len(IDS) - 1} ok"


def test_cli_from_dump_json_contract_and_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    main(["doctor", "--from-dump", str(NODE), "--objects", str(NODE / "objects"), "--json"])  # exit 0: returns
    doc = json.loads(capsys.readouterr().out)
    assert doc["apiVersion"] == API_VERSION and doc["node"] == "hdrx-lab-n1"
    assert [c["id"] for c in doc["checks"]] == IDS
    assert all(set(c) == {"id", "status", "summary", "evidence", "fix"} for c in doc["checks"])

    broken = tmp_path / "dump"
    broken.mkdir()
    for name, text in node_files().items():
        (broken / name).write_text(text)
    (broken / "sysctl.txt").write_text((NODE / "sysctl.txt").read_text().replace("ip_forward = 1", "ip_forward = 0"))
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--from-dump", str(broken)])
    assert done.value.code == 1
    assert "FAIL    forward.ip_forward" in capsys.readouterr().out

    for argv in (["doctor", "--from-dump", str(tmp_path)], ["doctor", "--netns", "x", "--from-dump", str(NODE)]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("clew: error: ") and err.count("\n") == 1


def test_kubeconfig_reads_the_clusters_nodes_and_services(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--kubeconfig``: the same objects as ``--objects``, listed from an API server (a fake one)."""
    from kube_fake_server import FakeApiServer

    server = FakeApiServer()
    for file in sorted((NODE / "objects").glob("*.json")):
        server.put(json.loads(file.read_text()))
    server.start()
    try:
        config = tmp_path / "kubeconfig"
        config.write_text(f"""
apiVersion: v1
kind: Config
current-context: c
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
clusters: [{{name: k, cluster: {{server: "{server.url}"}}}}]
users: [{{name: u, user: {{token: s3cret}}}}]
""")
        listed = objects.from_cluster(config)
        assert listed == objects.load(NODE / "objects")
        main(["doctor", "--from-dump", str(NODE), "--kubeconfig", str(config), "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert {c["id"]: c["status"] for c in doc["checks"]}["proxy.stale"] == "ok"
    finally:
        server.stop()
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--from-dump", str(NODE), "--kubeconfig", str(config)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert "cannot reach the API server" in err and err.count("\n") == 1


def test_service_traffic_from_outside_needs_its_own_accept_path() -> None:
    """Pods accepted pod-to-pod only, no KUBE-FORWARD, policy DROP: the NodePort probe fails."""
    files = node_files()
    fault_policy_drop_without_accept_path(files)
    files["iptables-save.txt"] = files["iptables-save.txt"].replace(
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD\n', ""
    )
    add_rules(files, "filter", "-A FORWARD -s 10.244.0.0/16 -d 10.244.0.0/16 -j ACCEPT")
    found = run(files)["forward.policy"]
    assert found.status == "fail" and "NodePort" in found.summary
    assert [v["verdict"] for v in found.evidence["probes"].values()] == ["ACCEPT", "ACCEPT", "DROP"]


def test_the_kubelets_hint_names_the_stale_backend_in_the_fix() -> None:
    files = node_files()
    fault_two_backends(files)
    files["iptables-nft-save.txt"] = files["iptables-nft-save.txt"].replace(
        ":KUBE-PROXY-CANARY - [0:0]", ":KUBE-PROXY-CANARY - [0:0]\n:KUBE-IPTABLES-HINT - [0:0]", 1
    )
    found = run(files)["proxy.backends"]
    assert found.status == "fail" and found.evidence["kubelet_hint_in"] == ["nft"]
    assert found.fix.endswith("iptables-legacy-save | grep -v KUBE- | iptables-legacy-restore")


@pytest.mark.parametrize("command", ["doctor", "dump"])
def test_a_sample_out_of_range_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = [command, "--sample", "99", *(["--netns", "x", str(tmp_path)] if command == "dump" else [])]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert capsys.readouterr().err == "clew: error: --sample 99: give 0 to 60 seconds\n"
