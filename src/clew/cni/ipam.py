"""Pod address allocation: host-local's algorithm, pure over a :class:`Store`.

How it works (as ``plugins/ipam/host-local/backend/allocator``):

1. The pool is the node subnet's hosts minus the gateway: 10.244.1.0/24 with gateway .1 hands
   out .2–.254 (errors name the range as host-local does: ``10.244.1.1-10.244.1.254``).
2. An attachment (container ID, ifname) holds at most one address; asking twice is
   "duplicate allocation is not allowed".
3. Candidates go round robin from the address after the last one reserved, wrapping once around
   the pool, so a released address is not reused at once (a pod's old IP lingers in caches).
4. The store reserves atomically (an ``O_EXCL`` file on disk), so a candidate taken since we
   looked is skipped, not double-booked.

The caller holds the store's lock around each call; nothing here does I/O itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from ipaddress import IPv4Address, IPv4Network
from typing import NamedTuple, Protocol

from clew.cni.config import Attachment


class Store(Protocol):
    """Where reservations live (``store.DiskStore`` on disk; a dict in tests)."""

    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        """Record ``ip`` for ``owner``; False if ``ip`` is already taken."""
        ...

    def last_reserved(self) -> IPv4Address | None: ...

    def set_last_reserved(self, ip: IPv4Address) -> None: ...

    def allocations(self) -> dict[IPv4Address, Attachment]:
        """Every reserved address and its owner."""
        ...

    def release(self, ip: IPv4Address) -> None:
        """Forget ``ip``; no error if it is not reserved."""
        ...


class IpamError(Exception):
    """The allocation cannot be made."""


class Pool(NamedTuple):
    subnet: IPv4Network
    gateway: IPv4Address

    @property
    def first(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def last(self) -> IPv4Address:
        return self.subnet.broadcast_address - 1

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, IPv4Address) and self.first <= ip <= self.last and ip != self.gateway

    def candidates(self, after: IPv4Address | None) -> Iterator[IPv4Address]:
        """Every pool address once, starting after ``after`` (from the start if not in the pool)."""
        first, last = int(self.first), int(self.last)
        size = last - first + 1
        start = int(after) + 1 if after is not None and first <= int(after) <= last else first
        for step in range(size):
            ip = IPv4Address(first + (start - first + step) % size)
            if ip != self.gateway:
                yield ip


def owned_by(store: Store, owner: Attachment) -> list[IPv4Address]:
    return sorted(ip for ip, who in store.allocations().items() if who == owner)


def allocate(store: Store, pool: Pool, owner: Attachment) -> IPv4Address:
    """Reserve the next free address for ``owner``; :class:`IpamError` if it has one or none is left."""
    if owned_by(store, owner):
        raise IpamError(
            f"duplicate allocation is not allowed: container {owner.container_id} "
            f"interface {owner.ifname} already has {', '.join(map(str, owned_by(store, owner)))}"
        )
    for ip in pool.candidates(store.last_reserved()):
        if store.reserve(ip, owner):
            store.set_last_reserved(ip)
            return ip
    raise IpamError(f"no IP addresses available in range set: {pool.first}-{pool.last}")


def release(store: Store, owner: Attachment) -> list[IPv4Address]:
    """Release every address ``owner`` holds and return them; none held is not an error."""
    ips = owned_by(store, owner)
    for ip in ips:
        store.release(ip)
    return ips


def collect_garbage(store: Store, valid: Set[Attachment]) -> dict[IPv4Address, Attachment]:
    """Release the addresses of attachments not in ``valid`` and return what was released."""
    stale = {ip: who for ip, who in store.allocations().items() if who not in valid}
    for ip in stale:
        store.release(ip)
    return stale
