"""Read flannel's ``subnet.env``: the node's pod subnet, the cluster network and the pod MTU.

flanneld writes it (``/run/flannel/subnet.env`` by default) once it holds a lease::

    FLANNEL_NETWORK=10.244.0.0/16
    FLANNEL_SUBNET=10.244.1.1/24
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=true

``FLANNEL_SUBNET`` is the gateway address with the node subnet's prefix. The four keys are the
ones flannel's own CNI plugin requires, so a file that works for flannel works here. This reader is
the plugin's own small copy (no ``podnet`` import: the plugin's import path stays light).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

REQUIRED = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")


class SubnetFileError(Exception):
    """The file is missing (``missing`` True), unreadable, incomplete or malformed."""

    def __init__(self, path: str, why: str, *, missing: bool = False) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.missing = missing


class SubnetFile(NamedTuple):
    network: ipaddress.IPv4Network  # the cluster's pod network
    subnet: ipaddress.IPv4Network  # this node's pod subnet
    gateway: ipaddress.IPv4Address  # the bridge's address: the subnet's first host
    mtu: int
    ipmasq: bool


def parse(text: str, path: str = "subnet.env") -> SubnetFile:
    """Parse the file's text; :class:`SubnetFileError` names missing keys or the bad value."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SubnetFileError(path, f"line {line!r} is not KEY=VALUE")
        values[key.strip()] = value.strip().strip('"')
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise SubnetFileError(path, f"missing {', '.join(missing)}")
    try:
        network = ipaddress.IPv4Network(values["FLANNEL_NETWORK"], strict=False)
        iface = ipaddress.IPv4Interface(values["FLANNEL_SUBNET"])
    except ValueError as exc:
        raise SubnetFileError(path, f"bad address: {exc}") from None
    subnet = iface.network
    if subnet.prefixlen > 30:
        raise SubnetFileError(path, f"FLANNEL_SUBNET {subnet} is too small to allocate from")
    mtu_text = values["FLANNEL_MTU"]
    if not mtu_text.isdigit() or not 68 <= int(mtu_text) <= 65535:
        raise SubnetFileError(path, f"FLANNEL_MTU {mtu_text!r} is not an MTU (68-65535)")
    ipmasq = values["FLANNEL_IPMASQ"].lower()
    if ipmasq not in ("true", "false"):
        raise SubnetFileError(path, f"FLANNEL_IPMASQ {values['FLANNEL_IPMASQ']!r} is not true or false")
    return SubnetFile(network, subnet, subnet.network_address + 1, int(mtu_text), ipmasq == "true")


def read(path: str) -> SubnetFile:
    """Read and parse ``path``; :class:`SubnetFileError` (``missing`` if there is no file)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SubnetFileError(path, "no such file (is flanneld or the clew agent running?)", missing=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SubnetFileError(path, f"cannot read: {exc}") from None
    return parse(text, path)
