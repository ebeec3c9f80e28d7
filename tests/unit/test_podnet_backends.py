"""The backends are pure: desired routes/neighbours/FDB for a 3-node lease set, host-gw's
off-link error, the vxlan device spec and its stable MAC."""

from __future__ import annotations

import ipaddress
import re

import pytest

from clew.podnet.annotations import Lease
from clew.podnet.backends import BACKENDS, backend_for
from clew.podnet.backends.bgp import BgpBackend
from clew.podnet.backends.hostgw import HostGwBackend
from clew.podnet.backends.vxlan import VxlanBackend, device_name, stable_vtep_mac
from clew.podnet.desired import Desired, FdbEntry, Neighbour, Route, Underlay
from clew.podnet.errors import BackendError
from clew.podnet.netconf import NetConf

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
CONF = NetConf(NET("10.244.0.0/16"), 24, "vxlan")
HOSTGW = NetConf(NET("10.244.0.0/16"), 24, "host-gw")
UNDERLAY = Underlay("eth0", IP("192.168.1.11"), 1500, (NET("192.168.1.0/24"),))
M1, M2, M3 = "0a:00:00:00:00:01", "0a:00:00:00:00:02", "0a:00:00:00:00:03"


def lease(n: int, backend: str = "vxlan", ip: str | None = None, mac: str | None = None) -> Lease:
    vtep = (mac or f"0a:00:00:00:00:0{n}") if backend == "vxlan" else None
    return Lease(f"n{n}", NET(f"10.244.{n}.0/24"), IP(ip or f"192.168.1.{10 + n}"), backend, vtep, 1 if vtep else None)


def test_registry() -> None:
    assert {"vxlan": VxlanBackend, "host-gw": HostGwBackend, "bgp": BgpBackend} == BACKENDS
    assert isinstance(backend_for(CONF), VxlanBackend) and isinstance(backend_for(HOSTGW), HostGwBackend)


def test_vxlan_three_nodes() -> None:
    leases = [lease(3), lease(1), lease(2)]
    got = VxlanBackend(CONF).desired(leases[1], leases, UNDERLAY)
    assert got.routes == {
        Route(NET("10.244.2.0/24"), "flannel.1", IP("10.244.2.0"), onlink=True),
        Route(NET("10.244.3.0/24"), "flannel.1", IP("10.244.3.0"), onlink=True),
    }
    assert got.neighbours == {
        Neighbour(IP("10.244.2.0"), M2, "flannel.1"),
        Neighbour(IP("10.244.3.0"), M3, "flannel.1"),
    }
    assert got.fdb == {FdbEntry(M2, "flannel.1", IP("192.168.1.12")), FdbEntry(M3, "flannel.1", IP("192.168.1.13"))}
    assert (got.scope.route_dev, got.scope.neighbour_dev, got.scope.fdb_dev) == ("flannel.1",) * 3
    assert got.scope.route_within is None and got.notes == ()
    assert str(sorted(got.routes)[0]) == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    assert str(sorted(got.neighbours)[0]) == f"10.244.2.0 lladdr {M2} dev flannel.1 permanent"
    assert str(sorted(got.fdb)[0]) == f"{M2} dev flannel.1 dst 192.168.1.12 self permanent"


def test_vxlan_works_across_routers_and_uses_the_vni() -> None:
    conf = NetConf(NET("10.244.0.0/16"), 24, "vxlan", vni=7)
    far = Lease("n2", NET("10.244.2.0/24"), IP("10.9.9.9"), "vxlan", M2, 7)
    got = VxlanBackend(conf).desired(lease(1), [lease(1), far], UNDERLAY)
    assert got.fdb == {FdbEntry(M2, "flannel.7", IP("10.9.9.9"))}


def test_vxlan_skips_what_it_cannot_program() -> None:
    leases = [
        lease(1),
        lease(2, backend="host-gw"),
        Lease("n3", NET("10.244.3.0/24"), IP("192.168.1.13"), "vxlan", None),
        Lease("n4", NET("10.244.4.0/24"), IP("192.168.1.14"), "vxlan", M3, 9),
        Lease("n5", NET("10.9.0.0/24"), IP("192.168.1.15"), "vxlan", "0a:00:00:00:00:05", 1),
        Lease("n6", NET("10.244.1.0/25"), IP("192.168.1.16"), "vxlan", "0a:00:00:00:00:06", 1),
        Lease("n7", NET("10.244.7.0/24"), IP("192.168.1.17"), "vxlan", M1, 1),
        lease(8),
    ]
    got = VxlanBackend(CONF).desired(leases[0], leases, UNDERLAY)
    assert {r.dst for r in got.routes} == {NET("10.244.8.0/24")}
    assert got.notes == (
        'node "n2" skipped: backend host-gw, not vxlan',
        'node "n5" skipped: subnet 10.9.0.0/24 is outside the cluster network 10.244.0.0/16',
        'node "n6" skipped: subnet 10.244.1.0/25 overlaps node "n1"\'s 10.244.1.0/24',
        'node "n3" skipped: no VTEP MAC',
        'node "n4" skipped: VNI 9, not 1',
        f'node "n7" skipped: VTEP MAC {M1} is node "n1"\'s',
    )


def test_vxlan_device_spec_and_stable_mac() -> None:
    backend = VxlanBackend(NetConf(NET("10.244.0.0/16"), 24, "vxlan", vni=1, port=4789, mtu=9000))
    spec = backend.device("n1", NET("10.244.1.0/24"), UNDERLAY)
    assert (spec.name, spec.vni, spec.local, spec.link, spec.port, spec.mtu) == (
        "flannel.1",
        1,
        IP("192.168.1.11"),
        "eth0",
        4789,
        8950,
    )
    assert str(spec.address) == "10.244.1.0/32"
    assert spec.mac == stable_vtep_mac("n1", 1) == stable_vtep_mac("n1", 1)
    assert stable_vtep_mac("n1", 1) != stable_vtep_mac("n2", 1) != stable_vtep_mac("n2", 2)
    first = int(spec.mac.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2  # unicast, locally administered
    assert backend.device("n1", NET("10.244.1.0/24"), UNDERLAY, "0A:00:00:00:00:09").mac == "0a:00:00:00:00:09"
    assert backend.own_lease("n1", NET("10.244.1.0/24"), UNDERLAY).vtep_mac == spec.mac
    assert device_name(4096) == "flannel.4096"
    assert VxlanBackend(CONF).pod_mtu(UNDERLAY) == 1450


def test_host_gw_three_nodes() -> None:
    leases = [lease(n, "host-gw") for n in (1, 2, 3)]
    got = HostGwBackend(HOSTGW).desired(leases[0], leases, UNDERLAY)
    assert got == Desired(
        got.scope,
        frozenset(
            {
                Route(NET("10.244.2.0/24"), "eth0", IP("192.168.1.12")),
                Route(NET("10.244.3.0/24"), "eth0", IP("192.168.1.13")),
            }
        ),
    )
    assert got.neighbours == frozenset() and got.fdb == frozenset()
    assert (got.scope.route_dev, got.scope.route_within) == ("eth0", NET("10.244.0.0/16"))
    assert HostGwBackend(HOSTGW).pod_mtu(UNDERLAY) == 1500
    assert HostGwBackend(HOSTGW).device("n1", NET("10.244.1.0/24"), UNDERLAY) is None


def test_host_gw_off_link_names_the_node_and_suggests_vxlan() -> None:
    leases = [lease(1, "host-gw"), lease(2, "host-gw"), lease(3, "host-gw", ip="10.1.2.3")]
    with pytest.raises(BackendError) as info:
        HostGwBackend(HOSTGW).desired(leases[0], leases, UNDERLAY)
    assert str(info.value) == (
        'host-gw cannot reach node "n3" at 10.1.2.3: not on a directly connected network of eth0; use the vxlan backend'
    )
    # a link-scope route through the underlay makes the next hop on-link
    wider = Underlay("eth0", UNDERLAY.ip, 1500, (*UNDERLAY.networks, NET("10.1.2.0/24")))
    assert len(HostGwBackend(HOSTGW).desired(leases[0], leases, wider).routes) == 2


def test_host_gw_refuses_a_nat_address() -> None:
    me = lease(1, "host-gw", ip="203.0.113.5")
    with pytest.raises(BackendError, match=re.escape("publishes 203.0.113.5 but eth0 has 192.168.1.11")):
        HostGwBackend(HOSTGW).desired(me, [me], UNDERLAY)
