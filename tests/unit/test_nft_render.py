"""The nftables renderer's decisions: which elements each feature puts in which set or map, the
group bookkeeping, and what is rejected. Loading the results is tests/kernel's business."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clew.model.objects import (
    EndpointSlice,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    SliceEndpoint,
    SlicePort,
    TrafficPolicy,
)
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.proxy.nftables import fixed as fx
from clew.proxy.nftables.layout import Element, Group, PortNft, Rejected
from clew.proxy.nftables.render import (
    destinations,
    element_commands,
    group_of,
    regroup,
    render,
    render_port,
    script,
)
from clew.proxy.policy import PortPolicy, decide_service

NODE = "me"
CONFIG = ProxyConfig(
    node_name=NODE, node_ips=("192.168.0.2",), mode="nftables", detect_local=DetectLocal.CLUSTER_CIDR,
    cluster_cidrs=("10.244.0.0/16",),
)  # fmt: skip


def policy(
    endpoints: list[tuple[str, str | None]] | None = None,
    *,
    name: str = "web",
    type: ServiceType = ServiceType.CLUSTER_IP,
    cluster_ip: str = "10.96.0.10",
    node_port: int = 0,
    external_ips: tuple[str, ...] = (),
    lb_ips: tuple[str, ...] = (),
    ranges: tuple[str, ...] = (),
    etp: TrafficPolicy = TrafficPolicy.CLUSTER,
    itp: TrafficPolicy = TrafficPolicy.CLUSTER,
    affinity: int | None = None,
    protocol: Protocol = Protocol.TCP,
    config: ProxyConfig = CONFIG,
) -> PortPolicy:
    """One port (``http``, 80 → 8080) of Service ``ns/<name>``; endpoints are (ip, node)."""
    svc = Service(
        "ns", name, type, cluster_ip, (ServicePort("http", protocol, 80, node_port),), external_ips=external_ips,
        load_balancer_ips=lb_ips, source_ranges=ranges, affinity_timeout=affinity, external_traffic_policy=etp,
        internal_traffic_policy=itp,
    )  # fmt: skip
    eps = tuple(SliceEndpoint(ip, node_name=node) for ip, node in endpoints or [])
    slices = [EndpointSlice("ns", f"{name}-1", name, eps, (SlicePort("http", protocol, 8080),))] if eps else []
    (p,) = decide_service(svc, slices, config, None)
    return p


def port(p: PortPolicy, config: ProxyConfig = CONFIG) -> PortNft:
    r = render_port(p, config)
    assert isinstance(r, PortNft), r
    return r


def in_set(r: PortNft, name: str) -> list[tuple[str, str | None]]:
    return [(e.key, e.value) for e in r.elements if e.set == name]


def sets(r: PortNft) -> set[str]:
    return {e.set for e in r.elements}


THREE = [("10.244.2.9", "n2"), ("10.244.1.5", NODE), ("10.244.1.10", "n3")]


def test_cluster_ip_slots_hold_endpoints_in_kube_proxys_order_once_each() -> None:
    r = port(policy(THREE))
    assert in_set(r, "dst-tcp-3") == [
        ("10.96.0.10 . 80 . 0", "10.244.1.10 . 8080"),  # sorted by "ip:port" as strings, as kube-proxy
        ("10.96.0.10 . 80 . 1", "10.244.1.5 . 8080"),
        ("10.96.0.10 . 80 . 2", "10.244.2.9 . 8080"),
    ]
    assert r.groups == frozenset({Group("dst", "tcp", 3)})
    assert in_set(r, fx.CLUSTER_MASQ) == [("10.96.0.10 . tcp . 80", None)]
    assert sorted(k for k, _ in in_set(r, fx.HAIRPIN)) == [f"{ip} . {ip}" for ip in sorted(ip for ip, _ in THREE)]
    assert {e.comment for e in r.elements} == {"ns/web:http"}
    assert r.key == "ns/web:http/tcp" and r.service_key == "ns/web" and r.chains == () and r.sets == ()


def test_cluster_masq_only_when_a_rule_reads_it() -> None:
    none = replace(CONFIG, detect_local=DetectLocal.NONE, cluster_cidrs=())
    assert fx.CLUSTER_MASQ not in sets(port(policy(THREE, config=none), none))
    masq_all = replace(none, masquerade_all=True)
    assert fx.CLUSTER_MASQ in sets(port(policy(THREE, config=masq_all), masq_all))


def test_no_endpoints_rejects_every_destination() -> None:
    r = port(policy([], type=ServiceType.NODE_PORT, node_port=30080, external_ips=("1.2.3.4",)))
    assert sets(r) == {fx.NO_ENDPOINT_REJECT, fx.NO_ENDPOINT_EXTERNAL_REJECT, fx.NO_ENDPOINT_NODEPORTS_REJECT}
    assert in_set(r, fx.NO_ENDPOINT_EXTERNAL_REJECT) == [("1.2.3.4 . tcp . 80", None)]
    assert in_set(r, fx.NO_ENDPOINT_NODEPORTS_REJECT) == [("tcp . 30080", None)]
    assert r.groups == frozenset()


def test_internal_local_without_local_endpoint_drops_cluster_ip() -> None:
    r = port(policy([("10.244.2.9", "n2")], itp=TrafficPolicy.LOCAL))
    assert sets(r) == {fx.NO_ENDPOINT_DROP}
    r = port(policy(THREE, itp=TrafficPolicy.LOCAL))
    assert in_set(r, "dst-tcp-1") == [("10.96.0.10 . 80 . 0", "10.244.1.5 . 8080")]


def test_external_cluster_policy_masquerades_and_uses_cluster_endpoints() -> None:
    r = port(policy(THREE, type=ServiceType.NODE_PORT, node_port=30080, external_ips=("1.2.3.4",)))
    assert in_set(r, fx.EXTERNAL_MASQ) == [("1.2.3.4 . tcp . 80", None)]
    assert in_set(r, fx.NODEPORT_MASQ) == [("tcp . 30080", None)]
    assert [k for k, _ in in_set(r, "np-tcp-3")] == ["30080 . 0", "30080 . 1", "30080 . 2"]
    assert "1.2.3.4 . 80 . 2" in [k for k, _ in in_set(r, "dst-tcp-3")]
    assert r.groups == frozenset({Group("dst", "tcp", 3), Group("np", "tcp", 3)})


def test_external_local_policy_short_circuits_to_cluster_and_serves_local() -> None:
    r = port(
        policy(THREE, type=ServiceType.NODE_PORT, node_port=30080, external_ips=("1.2.3.4",), etp=TrafficPolicy.LOCAL)
    )
    assert in_set(r, fx.NODEPORT_LOCAL) == [("tcp . 30080", None)]
    assert in_set(r, fx.EXTERNAL_LOCAL) == [("1.2.3.4 . tcp . 80", None)]
    assert len(in_set(r, "np-sc-tcp-3")) == len(in_set(r, "dst-sc-tcp-3")) == 3
    assert in_set(r, "np-tcp-1") == [("30080 . 0", "10.244.1.5 . 8080")]
    assert in_set(r, "dst-tcp-1") == [("1.2.3.4 . 80 . 0", "10.244.1.5 . 8080")]
    assert fx.EXTERNAL_MASQ not in sets(r) and fx.NODEPORT_MASQ not in sets(r)


def test_external_local_policy_without_local_endpoint_drops_but_still_short_circuits() -> None:
    remote = [("10.244.2.9", "n2")]
    r = port(policy(remote, type=ServiceType.NODE_PORT, node_port=30080, etp=TrafficPolicy.LOCAL))
    assert in_set(r, fx.NO_ENDPOINT_NODEPORTS_DROP) == [("tcp . 30080", None)]
    assert in_set(r, "np-sc-tcp-1") == [("30080 . 0", "10.244.2.9 . 8080")]
    assert not any(e.set.startswith("np-tcp") for e in r.elements)
    assert in_set(r, "dst-tcp-1") == [("10.96.0.10 . 80 . 0", "10.244.2.9 . 8080")]  # ClusterIP: iTP=Cluster


def test_source_ranges_with_a_node_ip_allow_the_lb_ips_and_never_overlap() -> None:
    p = policy(
        THREE, type=ServiceType.LOAD_BALANCER, node_port=30080, lb_ips=("5.6.7.8",),
        ranges=("192.168.0.0/24", "192.168.0.128/25", "10.1.2.3/8"),
    )  # fmt: skip
    r = port(p)
    assert in_set(r, fx.FIREWALL_IPS) == [("5.6.7.8 . tcp . 80", None)]
    assert sorted(k for k, _ in in_set(r, fx.FIREWALL_ALLOW)) == sorted(
        ["5.6.7.8 . tcp . 80 . 10.0.0.0/8", "5.6.7.8 . tcp . 80 . 192.168.0.0/24", "5.6.7.8 . tcp . 80 . 5.6.7.8"]
    )
    outside = replace(CONFIG, node_ips=("172.16.0.2",))
    r = port(p, outside)
    assert "5.6.7.8 . tcp . 80 . 5.6.7.8" not in [k for k, _ in in_set(r, fx.FIREWALL_ALLOW)]


def test_no_firewall_without_endpoints_the_port_is_rejected_anyway() -> None:
    r = port(policy([], type=ServiceType.LOAD_BALANCER, node_port=30080, lb_ips=("5.6.7.8",), ranges=("1.0.0.0/8",)))
    assert fx.FIREWALL_IPS not in sets(r)
    assert in_set(r, fx.NO_ENDPOINT_EXTERNAL_REJECT) == [("5.6.7.8 . tcp . 80", None)]


def test_an_ip_both_external_and_lb_is_an_external_ip_once() -> None:
    p = policy(
        THREE, type=ServiceType.LOAD_BALANCER, external_ips=("5.6.7.8",), lb_ips=("5.6.7.8",), ranges=("1.0.0.0/8",)
    )
    r = port(p)
    assert in_set(r, fx.EXTERNAL_MASQ) == [("5.6.7.8 . tcp . 80", None)]
    assert fx.FIREWALL_IPS not in sets(r)  # iptables mode: the externalIP rule comes first, unfirewalled
    assert len(set(r.elements)) == len(r.elements)


def test_affinity_ports_get_kube_proxys_chains_and_only_verdict_elements() -> None:
    p = policy(THREE, type=ServiceType.NODE_PORT, node_port=30080, affinity=600, etp=TrafficPolicy.LOCAL)
    r = port(p)
    svc = "service-" + "ns/web/tcp/http"
    names = [c.name for c in r.chains]
    assert names[0].startswith("external-") and names[1].startswith("service-") and names[2].startswith("local-")
    assert all(n.endswith(svc.removeprefix("service-")) for n in names[:3])
    assert sum(n.startswith("endpoint-") for n in names) == 3 and len(r.sets) == 3
    assert all("timeout 600s" in s.spec and s.name.startswith("affinity-") for s in r.sets)
    assert in_set(r, fx.SERVICE_IPS) == [("10.96.0.10 . tcp . 80", f"jump {names[1]}")]
    assert in_set(r, fx.SERVICE_NODEPORTS) == [("tcp . 30080", f"jump {names[0]}")]
    assert r.groups == frozenset() and len(in_set(r, fx.HAIRPIN)) == 3
    service = next(c for c in r.chains if c.name == names[1])
    assert service.rules[0] == "ip daddr 10.96.0.10 ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000"
    assert service.rules[-1].startswith("numgen random mod 3 vmap { 0 : goto endpoint-")
    external = next(c for c in r.chains if c.name == names[0])
    assert external.rules == (
        f"ip saddr 10.244.0.0/16 goto {names[1]}",
        "fib saddr type local meta mark set meta mark | 0x4000",
        f"fib saddr type local goto {names[1]}",
        f"goto {names[2]}",
    )


def test_affinity_without_endpoints_is_only_rejected() -> None:
    r = port(policy([], affinity=600))
    assert r.chains == () and sets(r) == {fx.NO_ENDPOINT_REJECT}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cluster_ip": "fd00::10"}, "spec.clusterIP 'fd00::10'"),
        ({"external_ips": ("fd00::1",)}, "spec.externalIPs 'fd00::1'"),
        ({"load_balancer_ips": ("300.1.1.1",)}, "status.loadBalancer.ingress '300.1.1.1'"),
        ({"source_ranges": ("fd00::/8",)}, "spec.loadBalancerSourceRanges 'fd00::/8'"),
        ({"source_ranges": ("nonsense",)}, "spec.loadBalancerSourceRanges 'nonsense'"),
        ({"affinity_timeout": 0}, "timeoutSeconds 0"),
        ({"port": 0}, "port 0"),
    ],
)
def test_what_the_layout_cannot_express_is_rejected_naming_service_and_field(
    change: dict[str, object], field: str
) -> None:
    p = replace(policy(THREE), **change)  # type: ignore[arg-type]
    r = render_port(p, CONFIG)
    assert isinstance(r, Rejected) and r.key == "ns/web:http/tcp" and r.service_key == "ns/web"
    assert r.reason.startswith("Service port ns/web:http (tcp): ") and field in r.reason


def test_an_ipv6_endpoint_rejects_its_port_and_the_others_keep_their_rules() -> None:
    bad = policy(THREE, name="bad", cluster_ip="10.96.0.11")
    bad = replace(bad, endpoints=(*bad.endpoints, replace(bad.endpoints[0], ip="fd00::5")))
    good = policy(THREE)
    out = render([bad, good], CONFIG)
    assert [p.service_key for p in out.ports] == ["ns/web"]
    assert len(out.rejected) == 1 and "endpoint 'fd00::5'" in out.rejected[0].reason


def test_a_destination_claimed_twice_rejects_the_later_port_only() -> None:
    first = policy(THREE, name="a", cluster_ip="10.96.0.1", external_ips=("1.2.3.4",))
    second = policy(THREE, name="b", cluster_ip="10.96.0.2", external_ips=("1.2.3.4",))
    third = policy(THREE, name="c", cluster_ip="10.96.0.3", type=ServiceType.NODE_PORT, node_port=30080)
    fourth = policy(THREE, name="d", cluster_ip="10.96.0.4", type=ServiceType.NODE_PORT, node_port=30080)
    out = render([first, second, third, fourth], CONFIG)
    assert [p.service_key for p in out.ports] == ["ns/a", "ns/c"]
    reasons = [r.reason for r in out.rejected]
    assert "1.2.3.4 . tcp . 80 is already ns/a:http's" in reasons[0] and "ns/b:http" in reasons[0]
    assert "tcp . 30080 is already ns/c:http's" in reasons[1]
    assert destinations(third) == ("10.96.0.3 . tcp . 80", "tcp . 30080")


def test_a_udp_port_and_a_tcp_port_of_one_ip_do_not_clash() -> None:
    tcp = policy(THREE, name="dns")
    udp = policy(THREE, name="dns", protocol=Protocol.UDP)
    out = render([tcp, udp], CONFIG)
    assert len(out.ports) == 2 and out.rejected == ()
    assert out.groups == frozenset({Group("dst", "tcp", 3), Group("dst", "udp", 3)})


def test_long_names_are_cut_to_nfts_comment_limit() -> None:
    long = "x" * 63
    p = replace(policy(THREE), namespace=long, name=long, port_name=long)
    assert {len(e.comment) for e in port(p).elements} == {128}


def test_groups_of_a_render_have_their_maps_and_one_rule_each() -> None:
    out = render([policy(THREE), policy(THREE[:1], name="one", cluster_ip="10.96.0.11")], CONFIG)
    assert out.groups == frozenset({Group("dst", "tcp", 3), Group("dst", "tcp", 1)})
    dnat_rules = [c for c in out.fixed if c.startswith("add rule ip clew dnat-")]
    assert dnat_rules == [
        "add rule ip clew dnat-dst dnat ip to ip daddr . tcp dport . numgen random mod 1 map @dst-tcp-1",
        "add rule ip clew dnat-dst dnat ip to ip daddr . tcp dport . numgen random mod 3 map @dst-tcp-3",
    ]
    assert sum(c.startswith("add map ip clew dst-tcp-") for c in out.fixed) == 2


def test_group_of_reads_only_group_maps() -> None:
    assert group_of("dst-sc-udp-12") == Group("dst-sc", "udp", 12)
    assert group_of("np-sctp-1") == Group("np", "sctp", 1)
    for other in ("no-endpoint-nodeports-drop", "dst-tcp-0", "dst-icmp-2", "hairpin", "service-ips"):
        assert group_of(other) is None


def test_regroup_adds_maps_first_refills_changed_roles_and_deletes_last() -> None:
    old = {Group("dst", "tcp", 1), Group("np", "tcp", 1), Group("dst", "tcp", 2)}
    new = {Group("dst", "tcp", 1), Group("np", "tcp", 1), Group("dst", "tcp", 3)}
    before, after = regroup(old, new)
    assert before[0].startswith("add map ip clew dst-tcp-3 { typeof ip daddr . tcp dport . numgen random mod 3")
    assert before[1:] == (
        "flush chain ip clew dnat-dst",
        "add rule ip clew dnat-dst dnat ip to ip daddr . tcp dport . numgen random mod 1 map @dst-tcp-1",
        "add rule ip clew dnat-dst dnat ip to ip daddr . tcp dport . numgen random mod 3 map @dst-tcp-3",
    )
    assert after == ("delete map ip clew dst-tcp-2",)
    assert regroup(new, new) == ((), ())


def _fixed_rules(config: ProxyConfig, chain: str) -> list[str]:
    prefix = f"add rule ip clew {chain} "
    return [c.removeprefix(prefix) for c in fx.fixed(config, ()) if c.startswith(prefix)]


@pytest.mark.parametrize(
    ("config", "not_local", "is_local"),
    [
        (CONFIG, "ip saddr != 10.244.0.0/16", "ip saddr 10.244.0.0/16"),
        (
            replace(CONFIG, detect_local=DetectLocal.NODE_CIDR, node_pod_cidrs=("10.244.1.0/24",)),
            "ip saddr != 10.244.1.0/24",
            "ip saddr 10.244.1.0/24",
        ),
        (
            replace(CONFIG, detect_local=DetectLocal.BRIDGE_INTERFACE, bridge_interface="cni0"),
            'iifname != "cni0"',
            'iifname "cni0"',
        ),
        (
            replace(CONFIG, detect_local=DetectLocal.INTERFACE_NAME_PREFIX, interface_name_prefix="veth"),
            'iifname != "veth*"',
            'iifname "veth*"',
        ),
    ],
    ids=["ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"],
)
def test_every_detector_masquerades_non_pod_cluster_traffic_and_short_circuits_pods(
    config: ProxyConfig, not_local: str, is_local: str
) -> None:
    services = _fixed_rules(config, fx.SERVICES)
    assert f"ip daddr . meta l4proto . th dport @cluster-masq {not_local} meta mark set meta mark | 0x4000" in services
    assert f'{is_local} jump dnat-dst-sc comment "short-circuit pod traffic"' in services
    assert f'{is_local} jump dnat-np-sc comment "short-circuit pod traffic"' in _fixed_rules(config, fx.NODEPORTS)


def test_without_a_detector_no_cluster_masquerade_and_no_pod_short_circuit() -> None:
    none = replace(CONFIG, detect_local=DetectLocal.NONE, cluster_cidrs=())
    text = "\n".join(fx.fixed(none, ()))
    assert "@cluster-masq" not in text.split("add rule", 1)[1] and "short-circuit pod traffic" not in text
    assert "fib saddr type local jump dnat-dst-sc" in text  # node-local traffic still short-circuits
    masq_all = _fixed_rules(replace(none, masquerade_all=True), fx.SERVICES)
    assert "ip daddr . meta l4proto . th dport @cluster-masq meta mark set meta mark | 0x4000" in masq_all


def test_masquerade_bit_and_random_fully() -> None:
    cfg = replace(CONFIG, masquerade_bit=0, random_fully=False)
    assert _fixed_rules(cfg, fx.MASQUERADING) == [
        'ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | 0x1 comment "hairpin"',
        "meta mark & 0x1 == 0 return",
        "meta mark set meta mark ^ 0x1",
        "masquerade",
    ]
    assert _fixed_rules(CONFIG, fx.MASQUERADING)[-1] == "masquerade fully-random"


def test_nodeport_addresses_limit_nodeports_to_node_ips_never_localhost() -> None:
    cfg = replace(
        CONFIG, node_ips=("192.168.0.2", "10.0.0.2", "127.0.0.1"), nodeport_addresses=("192.168.0.0/16", "127.0.0.0/8")
    )
    text = fx.fixed(cfg, ())
    assert "add element ip clew nodeport-ips { 192.168.0.2 }" in text
    assert "ip daddr @nodeport-ips jump nodeports" in _fixed_rules(cfg, fx.SERVICES)
    assert "fib daddr type local ip daddr != 127.0.0.0/8 jump nodeports" in _fixed_rules(CONFIG, fx.SERVICES)
    assert not any(c.startswith("add element ip clew nodeport-ips") for c in fx.fixed(CONFIG, ()))


def test_localhost_is_protected_in_input_and_output() -> None:
    for chain in ("filter-input", "filter-output"):
        assert any(r.startswith("ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ") for r in _fixed_rules(CONFIG, chain))


def test_script_replaces_the_table_in_one_go_and_adds_each_key_once() -> None:
    a = policy(THREE, name="a", cluster_ip="10.96.0.1")
    b = policy(THREE, name="b", cluster_ip="10.96.0.2")  # the same endpoints: the same hairpin keys
    text = script(render([a, b], CONFIG))
    assert text.startswith("add table ip clew\ndelete table ip clew\nadd table ip clew { comment ")
    hairpin = text.split("add element ip clew hairpin {\n", 1)[1].split("}", 1)[0]
    assert hairpin.count("\n") == 3 and 'comment "ns/a:http"' in hairpin
    assert text.count("add element ip clew dst-tcp-3 {") == 1


def test_element_commands_split_big_sets_and_put_comments_before_values() -> None:
    elements = [Element("dst-tcp-1", f"10.96.0.{i} . 80 . 0", f"10.244.0.{i} . 80", f"ns/s{i}") for i in range(5)]
    out = element_commands(elements, per_command=2)
    assert len(out) == 3
    assert out[0] == (
        "add element ip clew dst-tcp-1 {\n"
        '\t10.96.0.0 . 80 . 0 comment "ns/s0" : 10.244.0.0 . 80,\n'
        '\t10.96.0.1 . 80 . 0 comment "ns/s1" : 10.244.0.1 . 80\n}'
    )
