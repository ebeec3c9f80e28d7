"""CNI results: one version-neutral shape, written and read in each supported spec version.

The runtime gets the result in the version it asked for, with empty fields left out:

=========  ============================================================================
0.3.x/0.4  ``interfaces[] {name, mac, sandbox}``, ``ips[] {version: "4", address, gateway,
           interface}``, ``routes[] {dst, gw}``, ``dns``
1.0.0      as 0.4.0 without ``ips[].version``
1.1.0      adds ``interfaces[].mtu`` (and route ``mtu``/``advmss``/``priority``/``table``/
           ``scope``, which this plugin never sets)
=========  ============================================================================

``prevResult`` (CHECK, DEL) is read back from any of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from clew.cni.config import at_least
from clew.cni.errors import INVALID_CONFIG, CniError


class Interface(NamedTuple):
    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""  # the netns path, for interfaces inside the container


class IpConfig(NamedTuple):
    address: str  # CIDR: "10.244.1.5/24"
    gateway: str = ""
    interface: int | None = None  # index into interfaces


class Route(NamedTuple):
    dst: str
    gw: str = ""


class Result(NamedTuple):
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IpConfig, ...] = ()
    routes: tuple[Route, ...] = ()

    def to_json(self, version: str) -> dict[str, object]:
        """The result as the spec's ``version`` shapes it, empty fields omitted."""
        out: dict[str, object] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [_interface_json(i, version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_json(ip, version) for ip in self.ips]
        if self.routes:
            out["routes"] = [_drop_empty({"dst": r.dst, "gw": r.gw}) for r in self.routes]
        return out

    def sandbox_interface(self, ifname: str) -> tuple[int, Interface] | None:
        """The container-side interface called ``ifname`` and its index."""
        for idx, iface in enumerate(self.interfaces):
            if iface.name == ifname and iface.sandbox:
                return idx, iface
        return None


def _drop_empty(obj: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in obj.items() if v not in ("", None, 0, [], {})}


def _interface_json(iface: Interface, version: str) -> dict[str, object]:
    obj: dict[str, object] = {"name": iface.name, "mac": iface.mac}
    if at_least(version, "1.1.0"):
        obj["mtu"] = iface.mtu
    obj["sandbox"] = iface.sandbox
    return _drop_empty(obj)


def _ip_json(ip: IpConfig, version: str) -> dict[str, object]:
    obj: dict[str, object] = {}
    if not at_least(version, "1.0.0"):
        obj["version"] = "6" if ":" in ip.address else "4"
    obj["address"] = ip.address
    obj["gateway"] = ip.gateway
    out = _drop_empty(obj)
    if ip.interface is not None:
        out["interface"] = ip.interface  # index 0 is meaningful
    return out


def _bad(why: str) -> CniError:
    return CniError(INVALID_CONFIG, "invalid prevResult", why)


def _text(obj: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise _bad(f"{key} must be a{' non-empty' if required else ''} string in {dict(obj)}")
    return value


def _items(obj: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _bad(f"{key} must be a list of objects")
    return value


def parse(obj: Mapping[str, object]) -> Result:
    """Read a ``prevResult`` of any supported version; :class:`CniError` 7 if malformed."""
    interfaces = []
    for i in _items(obj, "interfaces"):
        mtu = i.get("mtu", 0)
        interfaces.append(
            Interface(
                name=_text(i, "name", required=True),
                mac=_text(i, "mac"),
                mtu=mtu if isinstance(mtu, int) else 0,
                sandbox=_text(i, "sandbox"),
            )
        )
    ips = []
    for ip in _items(obj, "ips"):
        index = ip.get("interface")
        if index is not None and (not isinstance(index, int) or not 0 <= index < len(interfaces)):
            raise _bad(f"ips[].interface {index!r} is not an index into interfaces")
        ips.append(IpConfig(_text(ip, "address", required=True), _text(ip, "gateway"), index))
    routes = [Route(_text(r, "dst", required=True), _text(r, "gw")) for r in _items(obj, "routes")]
    return Result(tuple(interfaces), tuple(ips), tuple(routes))
