"""Chain names are a contract: pinned with names from kube-proxy's own test expectations."""

import pytest

from clew.proxy import names

CASES = [
    # (service port name, protocol, endpoint or None, expected chain) — proxier_test.go
    ("ns1/svc1:p80", "tcp", None, "KUBE-SVC-XPGD46QRK7WJZT7O"),
    ("ns2/svc2:p80", "tcp", None, "KUBE-SVC-GNZBNJ2PO5MGZ6GT"),
    ("ns3/svc3:p80", "tcp", None, "KUBE-SVC-X27LE4BHSL4DOUIK"),
    ("ns4/svc4:p80", "tcp", None, "KUBE-SVC-4SW47YFZTEDKD3PK"),
    ("ns5/svc5:p80", "tcp", None, "KUBE-SVC-NUKIZ6OKUXPJNT4C"),
    ("ns1/svc1:p80", "tcp", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ("ns2/svc2:p80", "tcp", "10.180.0.2:80", "KUBE-SEP-RS4RBKLTHTF2IUXJ"),
    ("ns4/svc4:p80", "tcp", "10.180.0.4:80", "KUBE-SEP-UKSFD7AGPMPPLUHC"),
    ("ns4/svc4:p80", "tcp", "10.180.0.5:80", "KUBE-SEP-C6EBXVWJJZMIWKLZ"),
    ("ns5/svc5:p80", "tcp", "10.180.0.3:80", "KUBE-SEP-I77PXRDZVX7PMWMN"),
    ("ns4/svc4:p8082", "tcp", "10.4.0.1:8082", "KUBE-SEP-SU5STNODRYEWJAUF"),
]


@pytest.mark.parametrize(("spn", "proto", "endpoint", "expected"), CASES, ids=[c[3] for c in CASES])
def test_chain_names_match_kube_proxy(spn: str, proto: str, endpoint: str | None, expected: str) -> None:
    got = names.svc_chain(spn, proto) if endpoint is None else names.sep_chain(spn, proto, endpoint)
    assert got == expected


def test_port_chains_share_one_hash_and_fit_iptables_limit() -> None:
    h = names.port_hash("ns5/svc5:p80", "tcp")
    assert names.ext_chain("ns5/svc5:p80", "tcp") == f"KUBE-EXT-{h}" == "KUBE-EXT-NUKIZ6OKUXPJNT4C"
    assert names.fw_chain("ns5/svc5:p80", "tcp") == "KUBE-FW-NUKIZ6OKUXPJNT4C"
    assert names.svl_chain("ns5/svc5:p80", "tcp") == f"KUBE-SVL-{h}"
    assert len(names.sep_chain("a" * 63 + "/" + "b" * 63 + ":" + "c" * 15, "sctp", "10.0.0.1:65535")) <= 28


def test_protocol_is_part_of_the_hash() -> None:
    assert names.svc_chain("ns/svc:dns", "udp") != names.svc_chain("ns/svc:dns", "tcp")


@pytest.mark.parametrize(
    ("ns", "name", "port", "expected"), [("ns1", "svc1", "p80", "ns1/svc1:p80"), ("ns1", "svc1", "", "ns1/svc1")]
)
def test_service_port_name(ns: str, name: str, port: str, expected: str) -> None:
    assert names.service_port_name(ns, name, port) == expected
