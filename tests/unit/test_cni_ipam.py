"""The pod address allocator (host-local's algorithm) over an in-memory store."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from clew.cni import ipam
from clew.cni.config import Attachment
from clew.cni.ipam import IpamError, Pool

POOL = Pool(IPv4Network("10.244.1.0/24"), IPv4Address("10.244.1.1"))


class MemoryStore:
    """The ``ipam.Store`` protocol in a dict; refuses a taken address like ``O_EXCL`` does."""

    def __init__(self) -> None:
        self.ips: dict[IPv4Address, Attachment] = {}
        self.last: IPv4Address | None = None

    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        if ip in self.ips:
            return False
        self.ips[ip] = owner
        return True

    def last_reserved(self) -> IPv4Address | None:
        return self.last

    def set_last_reserved(self, ip: IPv4Address) -> None:
        self.last = ip

    def allocations(self) -> dict[IPv4Address, Attachment]:
        return dict(self.ips)

    def release(self, ip: IPv4Address) -> None:
        self.ips.pop(ip, None)


def att(i: int | str, ifname: str = "eth0") -> Attachment:
    return Attachment(f"c{i}", ifname)


def test_first_address_is_after_the_gateway() -> None:
    store = MemoryStore()
    assert ipam.allocate(store, POOL, att(1)) == IPv4Address("10.244.1.2")
    assert ipam.allocate(store, POOL, att(2)) == IPv4Address("10.244.1.3")
    assert store.last == IPv4Address("10.244.1.3")


def test_round_robin_does_not_reuse_a_released_address_at_once() -> None:
    store = MemoryStore()
    first = ipam.allocate(store, POOL, att(1))
    ipam.allocate(store, POOL, att(2))
    assert ipam.release(store, att(1)) == [first]
    assert ipam.allocate(store, POOL, att(3)) == IPv4Address("10.244.1.4")


def test_wraps_around_after_the_last_address() -> None:
    store = MemoryStore()
    store.last = IPv4Address("10.244.1.253")
    assert ipam.allocate(store, POOL, att(1)) == IPv4Address("10.244.1.254")
    assert ipam.allocate(store, POOL, att(2)) == IPv4Address("10.244.1.2")  # .255 broadcast, .1 gateway skipped


def test_last_reserved_outside_the_pool_starts_over() -> None:
    store = MemoryStore()
    store.last = IPv4Address("192.168.0.9")
    assert ipam.allocate(store, POOL, att(1)) == IPv4Address("10.244.1.2")


def test_taken_addresses_are_skipped() -> None:
    store = MemoryStore()
    store.ips[IPv4Address("10.244.1.2")] = att("other")
    assert ipam.allocate(store, POOL, att(1)) == IPv4Address("10.244.1.3")


def test_exhaustion_names_the_range_like_host_local() -> None:
    store = MemoryStore()
    got = {ipam.allocate(store, POOL, att(i)) for i in range(253)}
    assert len(got) == 253 and IPv4Address("10.244.1.1") not in got
    with pytest.raises(IpamError, match=r"^no IP addresses available in range set: 10\.244\.1\.1-10\.244\.1\.254$"):
        ipam.allocate(store, POOL, att("one-too-many"))


def test_duplicate_attachment_is_refused() -> None:
    store = MemoryStore()
    ipam.allocate(store, POOL, att(1))
    with pytest.raises(IpamError, match="duplicate allocation is not allowed"):
        ipam.allocate(store, POOL, att(1))
    # the same container may have a second interface
    assert ipam.allocate(store, POOL, att(1, "eth1")) == IPv4Address("10.244.1.3")


def test_release_unknown_is_not_an_error() -> None:
    assert ipam.release(MemoryStore(), att(1)) == []


def test_small_subnet() -> None:
    pool = Pool(IPv4Network("10.0.0.0/30"), IPv4Address("10.0.0.1"))
    store = MemoryStore()
    assert ipam.allocate(store, pool, att(1)) == IPv4Address("10.0.0.2")
    with pytest.raises(IpamError, match=r"10\.0\.0\.1-10\.0\.0\.2$"):
        ipam.allocate(store, pool, att(2))


def test_pool_membership() -> None:
    assert IPv4Address("10.244.1.2") in POOL
    assert IPv4Address("10.244.1.1") not in POOL  # gateway
    assert IPv4Address("10.244.1.255") not in POOL
    assert IPv4Address("10.244.2.2") not in POOL


def test_gc_releases_only_attachments_not_listed() -> None:
    store = MemoryStore()
    for i in range(4):
        ipam.allocate(store, POOL, att(i))
    released = ipam.collect_garbage(store, {att(0), att(2)})
    assert sorted(a.container_id for a in released.values()) == ["c1", "c3"]
    assert sorted(a.container_id for a in store.ips.values()) == ["c0", "c2"]
