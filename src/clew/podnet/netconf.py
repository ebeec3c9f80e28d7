"""flannel's ``net-conf.json``, parsed into a typed :class:`NetConf`.

The keys are flannel's (``Network``, ``SubnetLen``, ``Backend.Type``, ``Backend.VNI``,
``Backend.Port``, ``Backend.MTU``) so a flannel user's file works unchanged. Rules
(flannel ``pkg/subnet/config.go``):

* ``Network`` is an IPv4 CIDR; ``SubnetLen`` defaults to 24 when Network is /22 or larger,
  else Network's prefix + 2; it must be ≤ 30 and leave room for four subnets (≥ prefix + 2);
  a Network smaller than /28 is rejected.
* ``Backend.Type`` is ``vxlan``, ``host-gw`` or ``bgp`` (clew's extension, options in
  :mod:`clew.podnet.bgpconf`). Without ``Backend`` flannel's code falls back to
  ``udp`` (its docs say vxlan); clew has no udp backend and uses vxlan.
* vxlan: ``VNI`` 1 by default; ``Port`` 0 (the default) means the kernel's 8472, not IANA's
  4789; ``MTU`` replaces the underlay device's MTU (the pod MTU is then ``MTU - 50``).
  ``GBP``, ``DirectRouting`` and ``Learning`` may only be false: clew does not implement them.
* IPv6 (``EnableIPv6``) is refused; ``EnableNFTables``, ``SubnetMin``/``SubnetMax`` (etcd mode
  only) and unknown keys are ignored, as flannel's JSON decoding ignores them.

Every invalid value raises :class:`NetConfError` naming its key.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clew.podnet.bgpconf import BgpConf, parse_bgp
from clew.podnet.errors import NetConfError

BACKEND_TYPES = ("vxlan", "host-gw", "bgp")
DEFAULT_VNI = 1
DEFAULT_VXLAN_PORT = 8472  # the Linux kernel's default vxlan port; flannel's Port 0 means this
MAX_VNI = (1 << 24) - 1
MIN_MTU = 576
_UNSUPPORTED_VXLAN = ("GBP", "DirectRouting", "Learning")


@dataclass(frozen=True, slots=True)
class NetConf:
    """The pod network's settings. ``mtu`` is the external MTU override (None: the underlay's)."""

    network: ipaddress.IPv4Network
    subnet_len: int = 24
    backend_type: str = "vxlan"
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_VXLAN_PORT
    mtu: int | None = None
    bgp: BgpConf | None = None  # the bgp backend's options (only with backend_type "bgp")


def load(path: str | Path) -> NetConf:
    """Read and parse a net-conf.json file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise NetConfError("(file)", f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text)


def parse(source: str | bytes | Mapping[str, Any]) -> NetConf:
    """A :class:`NetConf` from net-conf.json text (or its decoded object)."""
    if isinstance(source, str | bytes):
        try:
            doc = json.loads(source)
        except ValueError as exc:
            raise NetConfError("(document)", f"not JSON: {exc}") from None
    else:
        doc = source
    if not isinstance(doc, Mapping):
        raise NetConfError("(document)", f"must be a JSON object, got {type(doc).__name__}")
    if doc.get("EnableIPv6") is True or "IPv6Network" in doc:
        raise NetConfError("EnableIPv6", "IPv6 pod networks are not supported by clew")
    if doc.get("EnableIPv4") is False:
        raise NetConfError("EnableIPv4", "must be true (clew's pod network is IPv4)")
    network = _network(doc.get("Network"))
    subnet_len = _subnet_len(doc.get("SubnetLen"), network)
    backend = _object(doc.get("Backend", {}), "Backend")
    backend_type = _backend_type(backend.get("Type", "vxlan"))
    vni, port, mtu = DEFAULT_VNI, DEFAULT_VXLAN_PORT, None
    if backend_type == "vxlan":
        vni = _int(backend.get("VNI", DEFAULT_VNI), "Backend.VNI", 1, MAX_VNI)
        port = _int(backend.get("Port", 0), "Backend.Port", 0, 65535) or DEFAULT_VXLAN_PORT
        if backend.get("MTU") not in (None, 0):
            mtu = _int(backend["MTU"], "Backend.MTU", MIN_MTU, 65535)
        for key in _UNSUPPORTED_VXLAN:
            if backend.get(key) not in (None, False):
                raise NetConfError(f"Backend.{key}", "only false is supported by clew")
    bgp = parse_bgp(backend) if backend_type == "bgp" else None
    return NetConf(network, subnet_len, backend_type, vni, port, mtu, bgp)


def _object(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise NetConfError(key, f"must be an object, got {json.dumps(value)}")
    return value


def _network(value: Any) -> ipaddress.IPv4Network:
    if value is None:
        raise NetConfError("Network", "required (an IPv4 CIDR such as 10.244.0.0/16)")
    if not isinstance(value, str):
        raise NetConfError("Network", f"must be an IPv4 CIDR string, got {json.dumps(value)}")
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise NetConfError("Network", f"{value!r} is not an IPv4 network CIDR: {exc}") from None
    if network.prefixlen > 28:
        raise NetConfError("Network", f"{value} is too small; the smallest useful network is a /28")
    return network


def _subnet_len(value: Any, network: ipaddress.IPv4Network) -> int:
    prefix = network.prefixlen
    if value in (None, 0):
        return 24 if prefix <= 22 else prefix + 2
    length = _int(value, "SubnetLen", 1, 32)
    if length > 30:
        raise NetConfError("SubnetLen", f"must be at most 30, got {length}")
    if length < prefix + 2:
        raise NetConfError("SubnetLen", f"/{length} leaves {network} room for fewer than four subnets")
    return length


def _backend_type(value: Any) -> str:
    if value not in BACKEND_TYPES:
        choices = ", ".join(BACKEND_TYPES)
        raise NetConfError("Backend.Type", f"unknown backend {json.dumps(value)}; choose one of: {choices}")
    return str(value)


def _int(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NetConfError(key, f"must be an integer from {low} to {high}, got {json.dumps(value)}")
    if not low <= value <= high:
        raise NetConfError(key, f"must be from {low} to {high}, got {value}")
    return value
