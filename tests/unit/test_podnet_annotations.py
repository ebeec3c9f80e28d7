"""flannel's Node annotations: keys pinned, lease (de)serialisation, broken nodes reported."""

from __future__ import annotations

import ipaddress
import json

import pytest

from clew.model.objects import Node
from clew.podnet import annotations as ann
from clew.podnet.annotations import Lease
from clew.podnet.errors import LeaseError

NET = ipaddress.IPv4Network("10.244.0.0/16")
FLANNEL_NODE_ANNOTATIONS = {  # as flannel v0.28 writes them (kubectl get node -o yaml)
    "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}',
    "flannel.alpha.coreos.com/backend-type": "vxlan",
    "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    "flannel.alpha.coreos.com/public-ip": "192.168.1.12",
}


def test_keys_are_flannels() -> None:
    assert ann.KUBE_SUBNET_MANAGER == "flannel.alpha.coreos.com/kube-subnet-manager"
    assert ann.BACKEND_TYPE == "flannel.alpha.coreos.com/backend-type"
    assert ann.BACKEND_DATA == "flannel.alpha.coreos.com/backend-data"
    assert ann.PUBLIC_IP == "flannel.alpha.coreos.com/public-ip"


def test_reads_a_flannel_node() -> None:
    node = Node("n2", pod_cidrs=("10.244.2.0/24",), annotations=FLANNEL_NODE_ANNOTATIONS)
    lease = ann.lease_from_node(node, NET)
    assert lease == Lease(
        "n2",
        ipaddress.IPv4Network("10.244.2.0/24"),
        ipaddress.IPv4Address("192.168.1.12"),
        "vxlan",
        "12:c6:65:89:b4:e3",
        1,
    )
    assert ann.lease_annotations(lease) == FLANNEL_NODE_ANNOTATIONS  # byte for byte


def test_host_gw_round_trip_and_null_backend_data() -> None:
    lease = Lease("n1", ipaddress.IPv4Network("10.244.1.0/24"), ipaddress.IPv4Address("192.168.1.11"), "host-gw")
    written = ann.lease_annotations(lease)
    assert written[ann.BACKEND_DATA] == "null"
    assert ann.lease_from_node(Node("n1", pod_cidrs=("10.244.1.0/24",), annotations=written), NET) == lease


def test_unmanaged_nodes_are_ignored() -> None:
    assert ann.lease_from_node(Node("x", pod_cidrs=("10.244.9.0/24",)), NET) is None
    other = dict(FLANNEL_NODE_ANNOTATIONS, **{ann.KUBE_SUBNET_MANAGER: "false"})
    assert ann.lease_from_node(Node("x", pod_cidrs=("10.244.9.0/24",), annotations=other), NET) is None


@pytest.mark.parametrize(
    ("change", "key", "why"),
    [
        ({ann.PUBLIC_IP: "not-an-ip"}, ann.PUBLIC_IP, "not an IPv4 address"),
        ({ann.PUBLIC_IP: ""}, ann.PUBLIC_IP, "missing"),
        ({ann.BACKEND_TYPE: ""}, ann.BACKEND_TYPE, "missing"),
        ({ann.BACKEND_DATA: "{"}, ann.BACKEND_DATA, "not JSON"),
        ({ann.BACKEND_DATA: '{"VNI":1,"VtepMAC":"zz"}'}, ann.BACKEND_DATA, "VtepMAC"),
        ({ann.BACKEND_DATA: '{"VNI":0,"VtepMAC":"12:c6:65:89:b4:e3"}'}, ann.BACKEND_DATA, "bad VNI"),
    ],
)
def test_bad_annotations_name_node_and_key(change: dict[str, str], key: str, why: str) -> None:
    node = Node("n2", pod_cidrs=("10.244.2.0/24",), annotations={**FLANNEL_NODE_ANNOTATIONS, **change})
    with pytest.raises(LeaseError) as info:
        ann.lease_from_node(node, NET)
    assert str(info.value).startswith(f'node "n2": annotation {key}: ') and why in str(info.value)


def test_leases_skip_broken_nodes_and_sort() -> None:
    good = Node("b", pod_cidrs=("10.244.2.0/24",), annotations=FLANNEL_NODE_ANNOTATIONS)
    no_cidr = Node("a", annotations=FLANNEL_NODE_ANNOTATIONS)
    bad_ip = Node("c", pod_cidrs=("10.244.3.0/24",), annotations={**FLANNEL_NODE_ANNOTATIONS, ann.PUBLIC_IP: "x"})
    found = ann.leases([bad_ip, good, no_cidr, Node("d")], NET)
    assert [lease.node for lease in found.leases] == ["b"]
    assert found.problems == (
        'node "a" pod cidr not assigned',
        "node \"c\": annotation flannel.alpha.coreos.com/public-ip: 'x' is not an IPv4 address",
    )


def test_mac_normalisation() -> None:
    assert ann.normalise_mac("12-C6-65-89-B4-E3") == "12:c6:65:89:b4:e3"
    data = json.loads(
        ann.lease_annotations(
            Lease(
                "n",
                ipaddress.IPv4Network("10.244.1.0/24"),
                ipaddress.IPv4Address("1.2.3.4"),
                "vxlan",
                "0a:00:00:00:00:01",
                7,
            )
        )[ann.BACKEND_DATA]
    )
    assert data == {"VNI": 7, "VtepMAC": "0a:00:00:00:00:01"}
