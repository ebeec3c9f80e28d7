"""IPv4 neighbour (ARP) entries of a device: read them, and the ``ip -batch`` lines that change
them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from clew.kernel import iproute
from clew.kernel.namespace import Where


@dataclass(frozen=True, slots=True)
class Neighbour:
    ip: ipaddress.IPv4Address
    mac: str | None  # None for an unresolved (INCOMPLETE/FAILED) entry
    dev: str
    state: tuple[str, ...]  # ("PERMANENT",), ("REACHABLE",), ...

    @property
    def permanent(self) -> bool:
        return "PERMANENT" in self.state


def list_neighbours(netns: Where, dev: str) -> list[Neighbour]:
    """The IPv4 neighbour entries of ``dev`` in ``netns``."""
    docs = iproute.show_json(netns, iproute.IP, ["-4", "neigh", "show", "dev", dev], f"neighbours of {dev}")
    return [parse_neighbour(doc, dev) for doc in docs]


def parse_neighbour(doc: dict[str, Any], dev: str) -> Neighbour:
    """A :class:`Neighbour` from one object of ``ip -j neigh show dev DEV``."""
    mac = doc.get("lladdr")
    return Neighbour(
        ip=ipaddress.IPv4Address(doc["dst"]),
        mac=str(mac).lower() if mac else None,
        dev=str(doc.get("dev", dev)),
        state=tuple(str(s) for s in doc.get("state", [])),
    )


def replace_command(ip: ipaddress.IPv4Address, mac: str, dev: str) -> str:
    """``neigh replace IP lladdr MAC dev DEV nud permanent`` (creates or overwrites)."""
    return f"neigh replace {ip} lladdr {mac} dev {dev} nud permanent"


def delete_command(ip: ipaddress.IPv4Address, dev: str) -> str:
    return f"neigh del {ip} dev {dev}"
