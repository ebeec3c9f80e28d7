"""kube-proxy's nftables names are a contract: pinned with names from its own test expectations."""

import pytest

from clew.proxy.nftables import names

PORT_CASES = [
    # (ns, svc, proto, port name, expected base) — pkg/proxy/nftables/proxier_test.go
    ("ns1", "svc1", "tcp", "p80", "ULMVA6XW-ns1/svc1/tcp/p80"),
    ("ns2", "svc2", "tcp", "p80", "42NFTM6N-ns2/svc2/tcp/p80"),
    ("ns4", "svc4", "tcp", "p80", "LAUZTJTB-ns4/svc4/tcp/p80"),
    ("ns5", "svc5", "tcp", "p80", "HVFWP5L3-ns5/svc5/tcp/p80"),
]
ENDPOINT_CASES = [
    ("ns1", "svc1", "tcp", "p80", "10.180.0.1", 80, "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
    ("ns4", "svc4", "tcp", "p80", "10.180.0.4", 80, "UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80"),
    ("ns4", "svc4", "tcp", "p80", "10.180.0.5", 80, "5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80"),
    ("ns5", "svc5", "tcp", "p80", "10.180.0.3", 80, "GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"),
]


@pytest.mark.parametrize(("ns", "svc", "proto", "port", "expected"), PORT_CASES, ids=[c[4] for c in PORT_CASES])
def test_port_names_match_kube_proxy(ns: str, svc: str, proto: str, port: str, expected: str) -> None:
    assert names.port_base(ns, svc, proto, port) == expected
    assert names.service_chain(ns, svc, proto, port) == "service-" + expected
    assert names.local_chain(ns, svc, proto, port) == "local-" + expected
    assert names.external_chain(ns, svc, proto, port) == "external-" + expected
    assert names.firewall_chain(ns, svc, proto, port) == "firewall-" + expected


@pytest.mark.parametrize(
    ("ns", "svc", "proto", "port", "ip", "ep_port", "expected"), ENDPOINT_CASES, ids=[c[6] for c in ENDPOINT_CASES]
)
def test_endpoint_names_match_kube_proxy(
    ns: str, svc: str, proto: str, port: str, ip: str, ep_port: int, expected: str
) -> None:
    assert names.endpoint_chain(ns, svc, proto, port, ip, ep_port) == "endpoint-" + expected
    assert names.affinity_set(ns, svc, proto, port, ip, ep_port) == "affinity-" + expected


def test_ipv6_colons_become_dots() -> None:
    got = names.endpoint_base("ns", "s", "tcp", "", "fd00::1", 80)
    assert got.endswith("-ns/s/tcp/__fd00..1/80") and ":" not in got


def test_long_names_are_cut_to_240_with_dots() -> None:
    long = "a" * 63
    ip6 = "fd00:1111:2222:3333:4444:5555:6666:7777"
    got = names.endpoint_base(long, long, "sctp", long, ip6, 65535)
    assert len(got) == 240 and got.endswith("...")
    assert len(names.affinity_set(long, long, "sctp", long, ip6, 65535)) <= names.NAME_LENGTH_MAX
    assert len(names.port_base(long, long, "sctp", long)) < 240  # never cut in practice


def test_service_chains_are_told_apart_by_slash() -> None:
    assert names.is_service_chain(names.service_chain("a", "b", "tcp", ""))
    assert not names.is_service_chain("services")
