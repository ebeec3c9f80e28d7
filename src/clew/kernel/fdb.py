"""Forwarding-database entries of a vxlan device (``bridge fdb … self``): read them, the
``bridge -batch`` lines that change them, and :func:`apply` to run those lines."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clew.kernel import iproute
from clew.kernel.namespace import Where


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: str
    dev: str
    dst: ipaddress.IPv4Address | None  # the remote VTEP; None for entries without one
    permanent: bool = True


def list_fdb(netns: Where, dev: str) -> list[FdbEntry]:
    """The FDB entries of ``dev`` in ``netns`` (for a vxlan device: its remote VTEPs)."""
    docs = iproute.show_json(netns, iproute.BRIDGE, ["fdb", "show", "dev", dev], f"fdb of {dev}")
    return [parse_fdb(doc, dev) for doc in docs]


def parse_fdb(doc: dict[str, Any], dev: str) -> FdbEntry:
    """An :class:`FdbEntry` from one object of ``bridge -j fdb show dev DEV``."""
    dst = doc.get("dst")
    address = None
    if dst:
        parsed = ipaddress.ip_address(dst)
        address = parsed if isinstance(parsed, ipaddress.IPv4Address) else None
    return FdbEntry(
        mac=str(doc["mac"]).lower(),
        dev=str(doc.get("ifname", dev)),
        dst=address,
        permanent=doc.get("state") == "permanent",
    )


def replace_command(mac: str, dev: str, dst: ipaddress.IPv4Address) -> str:
    """``fdb replace MAC dev DEV dst DST self permanent`` (creates, or repoints the MAC)."""
    return f"fdb replace {mac} dev {dev} dst {dst} self permanent"


def delete_command(entry: FdbEntry) -> str:
    dst = f" dst {entry.dst}" if entry.dst is not None else ""
    return f"fdb del {entry.mac} dev {entry.dev}{dst} self"


def apply(netns: Where, commands: Iterable[str]) -> None:
    """Run ``bridge`` batch lines in ``netns`` in one process (nothing if there are none)."""
    iproute.batch(netns, iproute.BRIDGE, commands, "fdb")
