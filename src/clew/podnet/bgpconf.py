"""The bgp backend's options in net-conf.json (clew's extension of flannel's format). Pure.

::

    "Backend": {"Type": "bgp",
                "ASN": 64512,                    # default 64512 (Calico's and kube-router's)
                "Peering": "mesh"                # default: full iBGP node-to-node mesh
                         | {"RouteReflectors": ["node-1", ...]}   # nodes acting as reflectors
                         | {"Peers": [{"Address": "192.168.51.1", "ASN": 64513,
                                       "Nodes": ["node-1"]}]},    # external (top-of-rack) peers
                "Password": "...",               # optional TCP MD5 secret on every session
                "BFD": false,                    # optional sub-second failure detection
                "HoldTime": 6,                   # seconds; keepalive is a third of it
                "GracefulRestart": true,         # default true: forwarding survives a BIRD restart
                "GracefulRestartTime": 5}        # seconds the peers keep our routes while BIRD is gone

``GracefulRestartTime`` (1-4095 s, the capability's 12-bit field) is what this node's BIRD
announces: how long its peers keep its routes (stale) after its BIRD's session ends without a
NOTIFICATION (the process died: the kernel closed the socket) until it is back. BIRD keeps running
across agent restarts, and the agent checks every turn (0.2 s) that BIRD is alive and starts a
dead one again from the file in place, so this only has to cover BIRD's own start and session
setup (~1-2 s). It is also how long a node whose BIRD died just before the node went away keeps
attracting traffic: peers drop its routes after this time plus up to one ``connect retry time``
(3 s) — the default 5 s keeps that at ≤ 8 s, within the 10 s promise beside the 6 s hold time (a
node that just stops is dropped when its hold timer expires). BIRD's and Calico's 120 s suits
restarts that wait on a container image pull; raise it for those.

With ``BFD`` on, a BFD session that goes down ends the BGP session at once (not gracefully):
a node taken down is withdrawn in under a second, and a BIRD crash (BFD stops answering too)
is an outage of its routes until the agent has started BIRD again.

A peer without ``Nodes`` is every node's peer; with ``Nodes`` only those nodes peer with it (a
top-of-rack router is the peer of its rack's nodes). Every invalid value raises
:class:`~clew.podnet.errors.NetConfError` naming its key (``Backend.Peering.Peers[0].ASN``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clew.podnet.errors import NetConfError

DEFAULT_ASN = 64512
MAX_ASN = (1 << 32) - 1
DEFAULT_HOLD_TIME = 6  # BIRD's default is 240 s; a silent node must be withdrawn within 10 s, with
# slack: the hold timer runs from the last keepalive received, and BIRD, its kernel sync and a
# loaded machine add up to ~0.7 s (a 9 s hold time was withdrawn after up to 9.7 s here)
DEFAULT_GR_TIME = 5  # BIRD's default is 120 s; see the module docstring
MAX_GR_TIME = 4095  # the graceful restart capability's restart time is 12 bits
MESH, REFLECTORS, PEERS = "mesh", "reflectors", "peers"
_PASSWORD = re.compile(r'[^\s"\\]{1,80}', re.ASCII)  # no blanks, quotes or backslashes: BIRD's "..." string
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a Kubernetes object name
_KEYS = {"Type", "ASN", "Peering", "Password", "BFD", "HoldTime", "GracefulRestart", "GracefulRestartTime"}


@dataclass(frozen=True, slots=True)
class BgpPeer:
    """An external BGP peer; ``nodes`` empty: every node peers with it."""

    address: ipaddress.IPv4Address
    asn: int
    nodes: tuple[str, ...] = ()

    def serves(self, node: str) -> bool:
        return not self.nodes or node in self.nodes


@dataclass(frozen=True, slots=True)
class BgpConf:
    asn: int = DEFAULT_ASN
    peering: str = MESH
    reflectors: tuple[str, ...] = ()
    peers: tuple[BgpPeer, ...] = ()
    password: str | None = None
    bfd: bool = False
    hold_time: int = DEFAULT_HOLD_TIME
    graceful_restart: bool = True
    graceful_restart_time: int = DEFAULT_GR_TIME


def parse_bgp(backend: Mapping[str, Any]) -> BgpConf:
    """The bgp options of net-conf.json's ``Backend`` object (its ``Type`` is ``bgp``)."""
    unknown = sorted(set(backend) - _KEYS)
    if unknown:
        raise NetConfError(f"Backend.{unknown[0]}", f"unknown bgp option; known: {', '.join(sorted(_KEYS))}")
    asn = _asn(backend.get("ASN", DEFAULT_ASN), "Backend.ASN")
    peering, reflectors, peers = _peering(backend.get("Peering", MESH))
    password = backend.get("Password")
    if password is not None and (
        not isinstance(password, str) or not password.isprintable() or not _PASSWORD.fullmatch(password)
    ):
        raise NetConfError("Backend.Password", "must be 1-80 characters without blanks, quotes or backslashes")
    bfd = _bool(backend.get("BFD", False), "Backend.BFD")
    hold = backend.get("HoldTime", DEFAULT_HOLD_TIME)
    if isinstance(hold, bool) or not isinstance(hold, int) or not 3 <= hold <= 65535:
        raise NetConfError("Backend.HoldTime", f"must be an integer from 3 to 65535 seconds, got {json.dumps(hold)}")
    graceful = _bool(backend.get("GracefulRestart", True), "Backend.GracefulRestart")
    gr_time = backend.get("GracefulRestartTime", DEFAULT_GR_TIME)
    if isinstance(gr_time, bool) or not isinstance(gr_time, int) or not 1 <= gr_time <= MAX_GR_TIME:
        raise NetConfError(
            "Backend.GracefulRestartTime",
            f"must be an integer from 1 to {MAX_GR_TIME} seconds, got {json.dumps(gr_time)}",
        )
    return BgpConf(asn, peering, reflectors, peers, password, bfd, hold, graceful, gr_time)


def _peering(value: Any) -> tuple[str, tuple[str, ...], tuple[BgpPeer, ...]]:
    key = "Backend.Peering"
    if value == MESH:
        return MESH, (), ()
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in ("RouteReflectors", "Peers"):
        raise NetConfError(
            key, f'must be "mesh", {{"RouteReflectors": [...]}} or {{"Peers": [...]}}, got {json.dumps(value)}'
        )
    if "RouteReflectors" in value:
        return REFLECTORS, _names(value["RouteReflectors"], f"{key}.RouteReflectors"), ()
    items = value["Peers"]
    if not isinstance(items, list) or not items:
        raise NetConfError(f"{key}.Peers", f"must be a non-empty list of peers, got {json.dumps(items)}")
    peers = tuple(_peer(item, f"{key}.Peers[{i}]") for i, item in enumerate(items))
    return PEERS, (), peers


def _peer(item: Any, key: str) -> BgpPeer:
    if not isinstance(item, Mapping):
        raise NetConfError(key, f'must be an object {{"Address": IP, "ASN": N}}, got {json.dumps(item)}')
    extra = sorted(set(item) - {"Address", "ASN", "Nodes"})
    if extra:
        raise NetConfError(f"{key}.{extra[0]}", "unknown key; known: Address, ASN, Nodes")
    raw = item.get("Address")
    try:
        address = ipaddress.IPv4Address(raw) if isinstance(raw, str) else None
    except ValueError:
        address = None
    if address is None or address.is_unspecified or address.is_multicast or address.is_loopback:
        raise NetConfError(f"{key}.Address", f"must be a unicast IPv4 address, got {json.dumps(raw)}")
    if "ASN" not in item:
        raise NetConfError(f"{key}.ASN", "required (the peer's AS number)")
    nodes = _names(item["Nodes"], f"{key}.Nodes") if "Nodes" in item else ()
    return BgpPeer(address, _asn(item["ASN"], f"{key}.ASN"), nodes)


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise NetConfError(key, f"must be a non-empty list of node names, got {json.dumps(value)}")
    for name in value:
        if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
            raise NetConfError(key, f"{json.dumps(name)} is not a node name")
    if len(set(value)) != len(value):
        raise NetConfError(key, "lists a node twice")
    return tuple(value)


def _asn(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ASN:
        raise NetConfError(key, f"must be an AS number from 1 to {MAX_ASN}, got {json.dumps(value)}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise NetConfError(key, f"must be true or false, got {json.dumps(value)}")
    return value
