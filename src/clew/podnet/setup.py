"""A node's one-time (and every-sync, idempotent) pod-network setup: read the underlay, ensure
the backend's device, and say which lease the node publishes.

``ensure_vxlan_device`` follows flannel's ``pkg/backend/vxlan/device.go``:

1. a device ``flannel.<VNI>`` that exists with other settings (kind, VNI, local address,
   underlay device, port, learning, MAC) is deleted and created again: the kernel cannot change
   those in place; a different MTU is just set;
2. the MAC is set at creation (a later ``MACAddressPolicy=persistent`` rewrite by systemd ≥ 242
   is caught by re-reading the device once it is up, flannel PR #1796);
3. the only address is the node subnet's network address as a /32 (``10.244.1.0/32``): the
   source of the node's own packets into the overlay, without a route for the whole network.

Every function is idempotent and names the network namespace it acts in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from clew.kernel import addresses, links
from clew.kernel import routes as kroutes
from clew.kernel.errors import KernelError
from clew.podnet.annotations import Lease
from clew.podnet.backends import Backend, backend_for
from clew.podnet.backends.vxlan import VxlanDeviceSpec
from clew.podnet.desired import Underlay
from clew.podnet.errors import PodnetError
from clew.podnet.netconf import NetConf


@dataclass(frozen=True, slots=True)
class VxlanDevice:
    """The device as it now is; ``changes`` lists what this call did (empty: nothing)."""

    name: str
    mac: str
    mtu: int
    changes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """What a node publishes and hands on: its lease (as annotations), the pod MTU (subnet.env),
    the backend (to compute Desired) and its vxlan device if it has one."""

    lease: Lease
    pod_mtu: int
    backend: Backend
    device: VxlanDevice | None


def read_underlay(netns: str, dev: str, public_ip: ipaddress.IPv4Address | None = None) -> Underlay:
    """The underlay device ``dev``: its MTU, its address (``public_ip`` if given, which must be
    one of its addresses, else the first) and the networks it reaches without a router."""
    link = links.require_link(netns, dev)
    addrs = addresses.list_addresses(netns, dev)
    if not addrs:
        raise PodnetError(f"underlay {dev} in netns {netns} has no IPv4 address")
    chosen = addrs[0]
    if public_ip is not None:
        matches = [a for a in addrs if a.ip == public_ip]
        if not matches:
            raise PodnetError(f"underlay {dev} in netns {netns} does not have address {public_ip}")
        chosen = matches[0]
    networks = [a.network for a in addrs]
    networks += [
        r.dst
        for r in kroutes.list_routes(netns)
        if r.dev == dev and r.gateway is None and r.scope == "link" and r.type == "unicast"
    ]
    return Underlay(dev, chosen.ip, link.mtu, tuple(dict.fromkeys(networks)))


def setup_node(
    netns: str,
    conf: NetConf,
    node: str,
    subnet: ipaddress.IPv4Network,
    underlay: Underlay,
    *,
    vtep_mac: str | None = None,
) -> NodeSetup:
    """Ensure the backend's device (vxlan) and return the node's lease and pod MTU.

    ``vtep_mac``: the MAC the node published before (its own backend-data annotation), so a
    restart keeps it; by default a MAC derived from the node name and VNI.
    """
    backend = backend_for(conf)
    spec = backend.device(node, subnet, underlay, vtep_mac)
    device = None if spec is None else ensure_vxlan_device(netns, spec)
    lease = backend.own_lease(node, subnet, underlay, None if device is None else device.mac)
    return NodeSetup(lease, backend.pod_mtu(underlay), backend, device)


def ensure_vxlan_device(netns: str, spec: VxlanDeviceSpec) -> VxlanDevice:
    """Make ``spec.name`` exactly ``spec``: created, recreated, or adjusted; up, one address."""
    changes: list[str] = []
    link = links.get_link(netns, spec.name)
    if link is not None:
        differs = _differences(link, spec)
        if differs:
            links.delete_link(netns, spec.name)
            changes.append(f"recreated ({', '.join(differs)})")
            link = None
    if link is None:
        link = links.create_vxlan(netns, _kernel_spec(spec))
        if not changes:
            changes.append("created")
    elif link.mtu != spec.mtu:
        links.set_link(netns, spec.name, mtu=spec.mtu)
        changes.append(f"mtu {link.mtu} -> {spec.mtu}")
    if addresses.ensure_addresses(netns, spec.name, [spec.address]):
        changes.append(f"address {spec.address}")
    if not link.up:
        links.set_link(netns, spec.name, up=True)
        changes.append("up")
    final = links.require_link(netns, spec.name)
    if final.mac != spec.mac:
        raise KernelError(
            netns, f"link {spec.name}", f"MAC is {final.mac}, not {spec.mac}: another program rewrote it (systemd?)"
        )
    return VxlanDevice(final.name, final.mac, final.mtu, tuple(changes))


def _differences(link: links.Link, spec: VxlanDeviceSpec) -> list[str]:
    info = link.vxlan
    if link.kind != "vxlan" or info is None:
        return [f"kind {link.kind or 'none'}"]
    checks = [
        ("id", info.vni, spec.vni),
        ("local", info.local, spec.local),
        ("dev", info.link, spec.link),
        ("dstport", info.port, spec.port),
        ("learning", info.learning, False),
        ("address", link.mac, spec.mac),
    ]
    return [f"{name} {have} -> {want}" for name, have, want in checks if have != want]


def _kernel_spec(spec: VxlanDeviceSpec) -> links.VxlanSpec:
    return links.VxlanSpec(spec.name, spec.vni, spec.local, spec.link, spec.port, spec.mtu, spec.mac)
