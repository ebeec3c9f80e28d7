"""IPv4 addresses of a device inside a namespace."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from clew.kernel import iproute
from clew.kernel.namespace import Where


def list_addresses(netns: Where, dev: str) -> list[ipaddress.IPv4Interface]:
    """The device's IPv4 addresses with their prefixes, in the kernel's order."""
    docs = iproute.show_json(netns, iproute.IP, ["-4", "addr", "show", "dev", dev], f"addresses of {dev}")
    found: list[ipaddress.IPv4Interface] = []
    for doc in docs:
        for info in doc.get("addr_info", []):
            if info.get("family") == "inet":
                found.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
    return found


def ensure_addresses(netns: Where, dev: str, want: Sequence[ipaddress.IPv4Interface]) -> bool:
    """Make ``want`` the device's only IPv4 addresses; returns whether anything changed.

    Idempotent: present addresses stay (no flap), others are deleted, missing ones added.
    """
    have = list_addresses(netns, dev)
    cmds = [f"addr del {a} dev {dev}" for a in have if a not in want]
    cmds += [f"addr add {a} dev {dev}" for a in want if a not in have]
    iproute.batch(netns, iproute.IP, cmds, f"addresses of {dev}")
    return bool(cmds)
