"""Pod attachments for the CNI plugin: bridge, veth pair, pod address and route, with ``ip``.

Why ``ip`` and not netlink from Python: ``clew-cni`` is a short-lived process run once per pod,
and pyroute2's import alone (~140 ms) costs five times the reference plugin's whole ADD. Each
``ip`` process costs ~1.5 ms, so the work is batched (``ip -batch -``): one process for the node
side, one for the pod side, one query of the bridge.

Two places are acted in, and every function names which:

* :data:`NODE` — the namespace the plugin was started in. A container runtime execs the plugin
  in the node's namespace (tests do it with ``ip netns exec NODE``); this module never enters
  another namespace itself, so "the current netns" is the node.
* a :class:`Netns` for the pod, built from ``CNI_NETNS``: ``ip -n NAME`` when the path is a
  named namespace (``/run/netns/NAME``), else ``nsenter --net=PATH ip``.

Errors are :class:`~clew.kernel.errors.KernelError` subclasses naming the namespace and object;
:class:`BatchFailed` also says which batch line failed, so a caller can tell what was created.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from typing import NamedTuple

from clew.iproute2.routes import parse_routes
from clew.kernel import runner
from clew.kernel.errors import BatchFailed, CommandFailed, KernelError, NetnsUnusable
from clew.kernel.namespace import IP, NSENTER, Namespace

__all__ = ["IP", "NODE", "NSENTER", "BatchFailed", "Netns", "NetnsUnusable"]

_MISSING = ("Cannot find device", "does not exist", "No such device")

Netns = Namespace  # ``Netns(path)``: the pod's namespace file; ``Netns(None)``: the node (ours)
NODE = Netns(None)


class LinkState(NamedTuple):
    """What the plugin needs to know about one link."""

    name: str
    kind: str  # linkinfo kind: "bridge", "veth", "" for none
    mac: str
    mtu: int
    up: bool
    master: str | None
    ipv4: tuple[str, ...]  # "10.244.1.1/24", ...


class Route(NamedTuple):
    dst: str  # "default" or a CIDR
    gateway: str | None
    dev: str | None


class VethSpec(NamedTuple):
    """A veth pair: ``host`` stays in the node namespace, ``peer`` goes to ``peer_netns``."""

    host: str
    host_mac: str
    peer: str
    peer_mac: str
    peer_netns: Netns
    mtu: int


def execute(
    ns: Netns, what: str, argv: Sequence[str], *, input: str = "", timeout: float = 30.0
) -> tuple[int, str, str]:
    """Run ``argv``, feed it ``input``, return ``(returncode, stdout, stderr)`` (`runner.execute`:
    ``posix_spawn``, no ``subprocess`` import; a missing program or a timeout raise
    :class:`CommandFailed` with returncode -1)."""
    done = runner.execute(ns, what, argv, input=input, check=False, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def random_mac() -> str:
    """A random locally administered unicast MAC (``x2:…``, ``x6:…``, ``xa:…``, ``xe:…``)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def _run(ns: Netns, what: str, args: Sequence[str]) -> str:
    done = runner.execute(ns, what, ns.tool_argv(IP, args), check=False)
    if done.returncode != 0:
        runner.fail(ns, what, done)
    return done.stdout


def batch(ns: Netns, lines: Sequence[str]) -> None:
    """Run ``ip`` commands (without the leading ``ip``) in one process; stops at the first failure.

    Raises :class:`BatchFailed` with the failing line. Not idempotent by itself: callers decide
    what a repeated command means.
    """
    runner.batch(ns, IP, lines, what="ip -batch", timeout=30.0)


def _missing(exc: CommandFailed) -> bool:
    return any(text in exc.stderr for text in _MISSING)


def _parse_link(obj: dict[str, object]) -> LinkState:
    info = obj.get("linkinfo")
    kind = str(info.get("info_kind", "")) if isinstance(info, dict) else ""
    addrs = obj.get("addr_info")
    ipv4 = tuple(
        f"{a['local']}/{a['prefixlen']}"
        for a in (addrs if isinstance(addrs, list) else [])
        if isinstance(a, dict) and a.get("family") == "inet"
    )
    flags = obj.get("flags")
    master = obj.get("master")
    mtu = obj.get("mtu")
    return LinkState(
        name=str(obj.get("ifname", "")),
        kind=kind,
        mac=str(obj.get("address", "")),
        mtu=mtu if isinstance(mtu, int) else 0,
        up=isinstance(flags, list) and "UP" in flags,
        master=str(master) if master is not None else None,
        ipv4=ipv4,
    )


def link(ns: Netns, name: str) -> LinkState | None:
    """The link ``name`` in ``ns`` with its IPv4 addresses, or None if there is none."""
    try:
        out = _run(ns, f"link {name}", ["-j", "-d", "addr", "show", "dev", name])
    except CommandFailed as exc:
        if _missing(exc):
            return None
        raise
    objs = json.loads(out or "[]")
    return _parse_link(objs[0]) if objs else None


def routes(ns: Netns) -> list[Route]:
    """The IPv4 main-table routes in ``ns`` (``dst`` as ``ip`` prints it: ``default``, a CIDR)."""
    out = _run(ns, "routes", ["-j", "-4", "route", "show"])
    return [
        Route(r.dst_text, str(r.gateway) if r.gateway is not None else None, r.dev)
        for r in parse_routes(json.loads(out or "[]"))
    ]


def ensure_bridge(ns: Netns, name: str, address: str, mtu: int) -> LinkState:
    """Make ``name`` a bridge that is up, has ``address`` (CIDR) and ``mtu``; return its state.

    Idempotent and safe against a concurrent caller doing the same (EEXIST is re-read). Raises
    :class:`KernelError` if ``name`` exists and is not a bridge, or carries another IPv4 address
    (the reference bridge plugin's rule: never take over a bridge configured for something else).
    """
    state = link(ns, name)
    if state is None:
        try:
            batch(ns, [f"link add name {name} address {random_mac()} mtu {mtu} type bridge"])
        except BatchFailed as exc:
            if not exc.exists_error:
                raise
        state = link(ns, name)
        if state is None:
            raise KernelError(ns, f"bridge {name}", "vanished right after it was created")
    if state.kind != "bridge":
        raise KernelError(ns, f"link {name}", f'"{name}" already exists but is not a bridge')
    ip = address.split("/")[0]
    others = [a for a in state.ipv4 if a.split("/")[0] != ip]
    if others:
        raise KernelError(
            ns, f"bridge {name}", f'"{name}" already has an IP address different from {address}: {others[0]}'
        )
    fixes = []
    if not state.ipv4:
        fixes.append(f"addr replace {address} dev {name}")
    if state.mtu != mtu:
        fixes.append(f"link set dev {name} mtu {mtu}")
    if not state.up:
        fixes.append(f"link set dev {name} up")
    if fixes:
        batch(ns, fixes)
    return state._replace(mtu=mtu, up=True, ipv4=state.ipv4 or (address,))


def add_veth(ns: Netns, spec: VethSpec, bridge: str, *, hairpin: bool) -> None:
    """Create the pair in ``ns``, move its peer, plug the host end into ``bridge`` and set it up.

    Not idempotent: fails with :class:`BatchFailed` (line 1, ``exists_error``) if either name is
    taken. On a failure after line 1 the pair exists and the caller should delete ``spec.host``.
    """
    netns = spec.peer_netns.path
    if netns is None:
        raise ValueError("the veth peer needs a target namespace")
    batch(
        ns,
        [
            f"link add {spec.host} mtu {spec.mtu} address {spec.host_mac} type veth"
            f" peer name {spec.peer} mtu {spec.mtu} address {spec.peer_mac} netns {netns}",
            f"link set {spec.host} master {bridge}",
            f"link set {spec.host} type bridge_slave hairpin {'on' if hairpin else 'off'}",
            f"link set {spec.host} up",
        ],
    )


def configure_pod(ns: Netns, ifname: str, address: str, gateway: str) -> None:
    """In the pod: ``lo`` up, ``address`` (CIDR) on ``ifname``, up, default route via ``gateway``."""
    batch(
        ns,
        [
            "link set lo up",
            f"addr add {address} dev {ifname}",
            f"link set dev {ifname} up",
            f"route add default via {gateway} dev {ifname}",
        ],
    )


def delete_link(ns: Netns, name: str) -> bool:
    """Delete ``name`` in ``ns`` (a veth takes its peer along). False if it was not there.

    Raises :class:`NetnsUnusable` if ``ns`` cannot be entered.
    """
    try:
        _run(ns, f"link {name}", ["link", "del", "dev", name])
    except CommandFailed as exc:
        if _missing(exc):
            return False
        raise
    return True


def enable_ip_forward() -> None:
    """``net.ipv4.ip_forward=1`` in the current (node) namespace; no write when already on.

    ``/proc/sys/net`` shows the namespace of the process that opens it, so this acts where the
    plugin runs and never anywhere else.
    """
    path = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return
        with open(path, "w") as f:
            f.write("1\n")
    except OSError as exc:
        raise KernelError(None, "sysctl net.ipv4.ip_forward", os.strerror(exc.errno or errno.EIO)) from None
