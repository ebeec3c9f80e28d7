"""Attach, detach and check a pod: the node's bridge, a veth pair, the pod's address and route.

ADD does what the reference ``bridge`` plugin does with ``isDefaultGateway`` and ``hairpinMode``,
in four ``ip`` processes (three in the node agent, which remembers a checked bridge) (see ``clew.kernel.cni_net``):

1. node: refuse a pod subnet that overlaps the node's addresses or routes (`clew.cni.overlap`);
   make sure the bridge exists, is up, has the gateway address (``10.244.1.1/24``) and the
   MTU; refuse a bridge that carries another IPv4 address. Turn on ``ip_forward``.
2. node: a veth pair ``veth<8 hex>`` / ``CNI_IFNAME`` (both at the MTU), the peer moved into the
   pod's namespace, the host end into the bridge with hairpin on, up.
3. pod: ``lo`` up, the address, the interface up, ``default via`` the gateway (which also covers
   the cluster network, so no separate route for it).

A failure after step 2 deletes the host end (which takes the pod end along). DEL deletes the pod's
interface when its namespace is still there, else the host end if it lingers.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Interface
from typing import NamedTuple

from clew.cni import overlap
from clew.cni.result import Interface, IpConfig, Result, Route
from clew.kernel import cni_net
from clew.kernel.errors import CommandFailed, KernelError


class BridgeError(Exception):
    """A kernel operation for the attachment failed (the message names the namespace and object)."""


class AttachError(BridgeError):
    """The pod cannot be attached (its interface name is taken, …); nothing was left behind."""


class CheckFailed(BridgeError):
    """The attachment differs from the ADD result."""


class AttachSpec(NamedTuple):
    bridge: str
    gateway: IPv4Interface  # the bridge's address: 10.244.1.1/24
    address: IPv4Interface  # the pod's: 10.244.1.5/24
    mtu: int
    hairpin: bool
    netns: str  # CNI_NETNS
    ifname: str  # CNI_IFNAME


def attach(spec: AttachSpec) -> Result:
    """Build the attachment (not idempotent: an existing ``ifname`` in the pod is an error)."""
    try:
        return _attach(spec)
    except KernelError as exc:
        raise BridgeError(str(exc)) from None


# Bridges this process has already made right: a long-lived caller (the node agent serving CNI
# requests) skips re-reading them, a process spawn per ADD. If one was removed meanwhile, the
# veth step fails on it and the attachment is retried once after a fresh check.
_GOOD_BRIDGES: dict[tuple[str, str, int], cni_net.LinkState] = {}


def _attach(spec: AttachSpec) -> Result:
    key = (spec.bridge, str(spec.gateway), spec.mtu)
    remembered = _GOOD_BRIDGES.get(key)
    try:
        return _attach_with(spec, remembered)
    except cni_net.BatchFailed:
        if remembered is None:
            raise
        _GOOD_BRIDGES.pop(key, None)
        return _attach_with(spec, None)


def _attach_with(spec: AttachSpec, bridge: cni_net.LinkState | None) -> Result:
    node, pod = cni_net.NODE, cni_net.Netns(spec.netns)
    if bridge is None:
        _refuse_overlap(node, spec)
        bridge = cni_net.ensure_bridge(node, spec.bridge, str(spec.gateway), spec.mtu)
        cni_net.enable_ip_forward()
        _GOOD_BRIDGES[(spec.bridge, str(spec.gateway), spec.mtu)] = bridge
    veth = cni_net.VethSpec(
        host=f"veth{os.urandom(4).hex()}",
        host_mac=cni_net.random_mac(),
        peer=spec.ifname,
        peer_mac=cni_net.random_mac(),
        peer_netns=pod,
        mtu=spec.mtu,
    )
    try:
        cni_net.add_veth(node, veth, spec.bridge, hairpin=spec.hairpin)
    except cni_net.BatchFailed as exc:
        if exc.line != 1:  # the pair may exist (line 0: ip named no line): take it back
            cni_net.delete_link(node, veth.host)
        elif exc.exists_error and cni_net.link(pod, spec.ifname) is not None:
            raise AttachError(f"interface {spec.ifname} already exists in {spec.netns}") from None
        raise
    try:
        cni_net.configure_pod(pod, spec.ifname, str(spec.address), str(spec.gateway.ip))
    except KernelError:
        cni_net.delete_link(node, veth.host)
        raise
    gw = str(spec.gateway.ip)
    return Result(
        interfaces=(
            Interface(spec.bridge, bridge.mac, spec.mtu),
            Interface(veth.host, veth.host_mac, spec.mtu),
            Interface(spec.ifname, veth.peer_mac, spec.mtu, spec.netns),
        ),
        ips=(IpConfig(str(spec.address), gw, 2),),
        routes=(Route("0.0.0.0/0", gw),),
    )


def _refuse_overlap(node: cni_net.Netns, spec: AttachSpec) -> None:
    """:class:`~clew.cni.overlap.SubnetConflict` if the pod subnet overlaps the node's addresses or routes."""
    argv = node.ip_argv("-4", "-j", "-batch", "-")
    code, out, err = cni_net.execute(node, "ip -batch", argv, input="addr show\nroute show\n")
    if code != 0:
        raise CommandFailed(node.label, "addresses and routes", argv, code, err)
    overlap.refuse_conflicts(spec.gateway.network, spec.bridge, node.path or "the node", out)


def host_interface(result: Result, bridge: str) -> str | None:
    """The host end of the pod's veth in an ADD result: the interface neither sandboxed nor the bridge."""
    for iface in result.interfaces:
        if not iface.sandbox and iface.name != bridge:
            return iface.name
    return None


def detach(netns: str | None, ifname: str, host_veth: str | None) -> None:
    """Remove the pair. Idempotent: a missing netns or link is success.

    With the pod's namespace present, its ``ifname`` goes (and the host end with it); otherwise
    the host end named by the cached result, if it is still there.
    """
    try:
        _detach(netns, ifname, host_veth)
    except KernelError as exc:
        raise BridgeError(str(exc)) from None


def _detach(netns: str | None, ifname: str, host_veth: str | None) -> None:
    if netns and os.path.exists(netns):
        try:
            if cni_net.delete_link(cni_net.Netns(netns), ifname):
                return
        except cni_net.NetnsUnusable:
            pass  # a stale path: the namespace is gone, which DEL must accept
    if host_veth:
        cni_net.delete_link(cni_net.NODE, host_veth)


def check(netns: str, ifname: str, bridge: str, expected: Result) -> None:
    """Compare the kernel with an ADD result; :class:`CheckFailed` names the first difference."""
    try:
        _check(netns, ifname, bridge, expected)
    except KernelError as exc:
        raise BridgeError(str(exc)) from None


def _check(netns: str, ifname: str, bridge: str, expected: Result) -> None:
    found = expected.sandbox_interface(ifname)
    if found is None:
        raise CheckFailed(f"prevResult has no interface {ifname} in a sandbox")
    index, want = found
    if want.sandbox != netns:
        raise CheckFailed(f"prevResult puts {ifname} in {want.sandbox}, not {netns}")
    pod = cni_net.Netns(netns)
    have = cni_net.link(pod, ifname)
    if have is None:
        raise CheckFailed(f"interface {ifname} not found in {netns}")
    if want.mac and have.mac.lower() != want.mac.lower():
        raise CheckFailed(f"{ifname} in {netns} has MAC {have.mac}, prevResult says {want.mac}")
    if not have.up:
        raise CheckFailed(f"{ifname} in {netns} is down")
    for ip in expected.ips:
        if ip.interface == index and ip.address not in have.ipv4:
            raise CheckFailed(f"{ifname} in {netns} lacks address {ip.address} (has {', '.join(have.ipv4) or 'none'})")
    routes = cni_net.routes(pod)
    for route in expected.routes:
        dst = "default" if route.dst == "0.0.0.0/0" else route.dst
        if not any(r.dst == dst and (not route.gw or r.gateway == route.gw) for r in routes):
            raise CheckFailed(f"route {route.dst} via {route.gw or '-'} missing in {netns}")
    host = host_interface(expected, bridge)
    if host is not None:
        state = cni_net.link(cni_net.NODE, host)
        if state is None:
            raise CheckFailed(f"host interface {host} not found")
        if state.master != bridge:
            raise CheckFailed(f"host interface {host} is not in bridge {bridge}")
