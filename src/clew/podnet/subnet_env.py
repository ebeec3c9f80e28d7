"""flannel's ``subnet.env``: what the node's pod network tells the CNI plugin.

The file is a contract with every flannel-compatible CNI plugin; its keys and order must not
change (flannel ``pkg/subnet/subnet.go`` ``WriteSubnetFile``)::

    FLANNEL_NETWORK=10.244.0.0/16
    FLANNEL_SUBNET=10.244.1.1/24
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=true

``FLANNEL_SUBNET`` is the node's subnet written as its *first address* (network + 1, the
``cni0`` gateway) with the subnet's prefix. The file is replaced atomically (a temporary file in
the same folder, then ``rename``), so a plugin never reads half a file. Reading accepts
``KEY=value`` lines in any order, blank lines and ``#`` comments, and fails with one error that
names the file and every missing key, as flannel's CNI plugin does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from clew.podnet.errors import SubnetEnvError

DEFAULT_PATH = Path("/run/flannel/subnet.env")
T = TypeVar("T")
KEYS = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")


@dataclass(frozen=True, slots=True)
class SubnetEnv:
    """``subnet`` is the gateway address with the node subnet's prefix (``10.244.1.1/24``)."""

    network: ipaddress.IPv4Network
    subnet: ipaddress.IPv4Interface
    mtu: int
    ipmasq: bool

    @classmethod
    def for_subnet(
        cls, network: ipaddress.IPv4Network, node_subnet: ipaddress.IPv4Network, mtu: int, ipmasq: bool
    ) -> SubnetEnv:
        """The file for a node whose pod subnet is ``node_subnet`` (gateway = its first address)."""
        gateway = ipaddress.IPv4Interface(f"{node_subnet.network_address + 1}/{node_subnet.prefixlen}")
        return cls(network, gateway, mtu, ipmasq)

    @property
    def node_subnet(self) -> ipaddress.IPv4Network:
        """The node's pod subnet (``10.244.1.0/24``)."""
        return self.subnet.network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.ip

    def render(self) -> str:
        """The file's text, in flannel's fixed order."""
        return (
            f"FLANNEL_NETWORK={self.network}\n"
            f"FLANNEL_SUBNET={self.subnet}\n"
            f"FLANNEL_MTU={self.mtu}\n"
            f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n"
        )

    def write(self, path: str | Path = DEFAULT_PATH) -> None:
        """Replace ``path`` atomically (mode 0644), creating its folder if needed."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self.render())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def read(path: str | Path = DEFAULT_PATH) -> SubnetEnv:
    """Read a subnet.env file; :class:`SubnetEnvError` names the file and what is wrong."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SubnetEnvError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text, origin=str(path))


def parse(text: str, origin: str = "subnet.env") -> SubnetEnv:
    """Parse subnet.env text; ``origin`` names it in errors."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SubnetEnvError(f"{origin}: line {line!r} is not KEY=value")
        values[key.strip()] = value.strip()
    missing = [k for k in KEYS if not values.get(k)]
    if missing:
        raise SubnetEnvError(f"{origin} is missing {', '.join(missing)}")
    return SubnetEnv(
        network=_value(origin, "FLANNEL_NETWORK", values, _network),
        subnet=_value(origin, "FLANNEL_SUBNET", values, ipaddress.IPv4Interface),
        mtu=_value(origin, "FLANNEL_MTU", values, _mtu),
        ipmasq=_value(origin, "FLANNEL_IPMASQ", values, _bool),
    )


def _value(origin: str, key: str, values: dict[str, str], convert: Callable[[str], T]) -> T:
    try:
        return convert(values[key])
    except ValueError as exc:
        raise SubnetEnvError(f"{origin}: {key}={values[key]}: {exc}") from None


def _network(text: str) -> ipaddress.IPv4Network:
    """flannel allows a comma list of cluster networks; clew's pod network has exactly one."""
    if "," in text:
        raise ValueError("several cluster networks are not supported")
    return ipaddress.IPv4Network(text, strict=True)


def _mtu(text: str) -> int:
    mtu = int(text)
    if not 68 <= mtu <= 65535:
        raise ValueError("must be from 68 to 65535")
    return mtu


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError("must be true or false")
    return text == "true"
