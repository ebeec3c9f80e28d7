"""Links (network devices) inside a namespace: read one, create a vxlan device, change or
delete one. Reads use ``ip -j -d link show``; a missing device reads as None.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from clew.kernel import iproute
from clew.kernel.errors import KernelError
from clew.kernel.namespace import Where


class LinkNotFound(KernelError):
    """The named device does not exist in the namespace."""

    def __init__(self, netns: Where, name: str) -> None:
        self.name = name
        super().__init__(netns, f"link {name}", "no such device")


@dataclass(frozen=True, slots=True)
class VxlanInfo:
    """A vxlan device's settings as the kernel reports them (``ip -d link``)."""

    vni: int
    local: ipaddress.IPv4Address | None
    link: str | None  # the underlay device's name
    port: int
    learning: bool


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    index: int
    kind: str  # "" for a plain device (veth without -d info is "veth"), "vxlan", "bridge", ...
    mtu: int
    mac: str
    up: bool  # administratively up (IFF_UP)
    vxlan: VxlanInfo | None = None


@dataclass(frozen=True, slots=True)
class VxlanSpec:
    """What :func:`create_vxlan` creates: a vxlan device without group or remote."""

    name: str
    vni: int
    local: ipaddress.IPv4Address
    link: str
    port: int
    mtu: int
    mac: str
    learning: bool = False


def get_link(netns: Where, name: str) -> Link | None:
    """The device ``name`` in ``netns``, or None if there is none."""
    docs = iproute.show_json(netns, iproute.IP, ["-d", "link", "show", "dev", name], f"link {name}", absent_ok=True)
    if not docs:
        return None
    return parse_link(docs[0])


def require_link(netns: Where, name: str) -> Link:
    """Like :func:`get_link`, but a missing device raises :class:`LinkNotFound`."""
    link = get_link(netns, name)
    if link is None:
        raise LinkNotFound(netns, name)
    return link


def parse_link(doc: dict[str, Any]) -> Link:
    """A :class:`Link` from one object of ``ip -j -d link show``."""
    info = doc.get("linkinfo") or {}
    kind = str(info.get("info_kind", ""))
    vxlan = None
    if kind == "vxlan":
        data = info.get("info_data") or {}
        local = data.get("local")
        vxlan = VxlanInfo(
            vni=int(data.get("id", 0)),
            local=ipaddress.IPv4Address(local) if local else None,
            link=data.get("link"),
            port=int(data.get("port", 0)),
            learning=bool(data.get("learning", True)),
        )
    return Link(
        name=str(doc["ifname"]),
        index=int(doc["ifindex"]),
        kind=kind,
        mtu=int(doc.get("mtu", 0)),
        mac=str(doc.get("address", "")),
        up="UP" in doc.get("flags", []),
        vxlan=vxlan,
    )


def create_vxlan(netns: Where, spec: VxlanSpec) -> Link:
    """Create the vxlan device (its MAC set at creation, as flannel PR #1485 does); it stays
    down. Fails with :class:`~clew.kernel.errors.CommandFailed` if the name is taken."""
    cmd = (
        f"link add {spec.name} address {spec.mac} mtu {spec.mtu} type vxlan id {spec.vni} "
        f"local {spec.local} dev {spec.link} dstport {spec.port} " + ("learning" if spec.learning else "nolearning")
    )
    iproute.batch(netns, iproute.IP, [cmd], f"link {spec.name}")
    return require_link(netns, spec.name)


def set_link(
    netns: Where, name: str, *, mtu: int | None = None, mac: str | None = None, up: bool | None = None
) -> None:
    """Change a device's MTU, MAC and/or admin state (only the ones given)."""
    cmds = []
    if mac is not None:
        cmds.append(f"link set dev {name} address {mac}")
    if mtu is not None:
        cmds.append(f"link set dev {name} mtu {mtu}")
    if up is not None:
        cmds.append(f"link set dev {name} {'up' if up else 'down'}")
    iproute.batch(netns, iproute.IP, cmds, f"link {name}")


def delete_link(netns: Where, name: str) -> bool:
    """Delete the device if it exists; returns whether it did."""
    if get_link(netns, name) is None:
        return False
    iproute.batch(netns, iproute.IP, [f"link del dev {name}"], f"link {name}")
    return True
