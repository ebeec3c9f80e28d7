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
import re
import select
import time
from collections.abc import Sequence
from typing import NamedTuple

from clew.kernel.errors import CommandFailed, KernelError

IP = "ip"
NSENTER = "nsenter"
_NETNS_DIRS = ("/run/netns/", "/var/run/netns/")  # where ``ip netns`` keeps named namespaces
_MISSING = ("Cannot find device", "does not exist", "No such device")
# what ``ip -n`` and ``nsenter`` say when the netns file is not (or no longer) a namespace
_NO_NETNS = ("Cannot open network namespace", "setting the network namespace", "nsenter:")


class Netns(NamedTuple):
    """Where ``ip`` runs: ``path`` None is the current (node) namespace, else a netns file."""

    path: str | None

    @property
    def label(self) -> str | None:
        """The name errors use: the path (``None`` reads "the current netns")."""
        return self.path

    def ip_argv(self, *args: str) -> list[str]:
        """``ip ARGS`` running in this namespace."""
        if self.path is None:
            return [IP, *args]
        for folder in _NETNS_DIRS:
            name = self.path[len(folder) :] if self.path.startswith(folder) else ""
            if name and "/" not in name and not any(c.isspace() for c in name):
                return [IP, "-n", name, *args]
        return [NSENTER, f"--net={self.path}", IP, *args]


NODE = Netns(None)


class BatchFailed(CommandFailed):
    """An ``ip -batch`` stopped at ``line`` (1-based; 0 if unknown): the lines before it ran."""

    def __init__(self, netns: str | None, argv: Sequence[str], returncode: int, stderr: str, line: int) -> None:
        self.line = line
        super().__init__(netns, "ip -batch", argv, returncode, stderr)

    @property
    def exists_error(self) -> bool:
        return "File exists" in self.stderr


class NetnsUnusable(CommandFailed):
    """The namespace file could not be entered: gone, unmounted, or not a network namespace."""


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
    """Run ``argv``, feed it ``input``, return ``(returncode, stdout, stderr)``.

    ``posix_spawn`` and ``poll`` instead of ``subprocess``, whose import alone costs the plugin
    ~4 ms. A missing program or running past ``timeout`` (the child is killed) raise
    :class:`CommandFailed` with returncode -1.
    """
    args = list(argv)
    child_in, to_child = os.pipe()
    from_child, child_out = os.pipe()
    err_from_child, child_err = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in ((child_in, 0), (child_out, 1), (child_err, 2))]
    try:
        pid = os.posix_spawnp(args[0], args, os.environ, file_actions=actions)
    except OSError as exc:
        for fd in (child_in, to_child, from_child, child_out, err_from_child, child_err):
            os.close(fd)
        raise CommandFailed(ns.label, what, args, -1, f"{args[0]}: {exc.strerror}") from None
    for fd in (child_in, child_out, child_err):
        os.close(fd)
    try:
        out, err = _communicate(to_child, from_child, err_from_child, input.encode(), time.monotonic() + timeout)
    except TimeoutError:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise CommandFailed(ns.label, what, args, -1, f"timed out after {timeout:g}s") from None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace"), err.decode(errors="replace")


def _communicate(to_child: int, out_fd: int, err_fd: int, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """Write ``data`` to the child and read both its outputs to EOF; closes the three fds."""
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    poller = select.poll()
    poller.register(out_fd, select.POLLIN)
    poller.register(err_fd, select.POLLIN)
    open_fds = {out_fd, err_fd}
    if data:
        poller.register(to_child, select.POLLOUT)
        open_fds.add(to_child)
    else:
        os.close(to_child)
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            for fd, _event in poller.poll(left * 1000):
                if fd == to_child:
                    try:
                        data = data[os.write(fd, data[:65536]) :]
                    except BrokenPipeError:
                        data = b""
                    if not data:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        os.close(fd)
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
    finally:
        for fd in open_fds:
            os.close(fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def random_mac() -> str:
    """A random locally administered unicast MAC (``x2:…``, ``x6:…``, ``xa:…``, ``xe:…``)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def _run(ns: Netns, what: str, args: Sequence[str]) -> str:
    argv = ns.ip_argv(*args)
    code, out, err = execute(ns, what, argv)
    if code != 0:
        if ns.path is not None and err.startswith(_NO_NETNS):
            raise NetnsUnusable(ns.label, what, argv, code, err)
        raise CommandFailed(ns.label, what, argv, code, err)
    return out


def batch(ns: Netns, lines: Sequence[str]) -> None:
    """Run ``ip`` commands (without the leading ``ip``) in one process; stops at the first failure.

    Raises :class:`BatchFailed` with the failing line. Not idempotent by itself: callers decide
    what a repeated command means.
    """
    for cmd in lines:
        if not cmd.strip() or "\n" in cmd:
            raise ValueError(f"bad ip batch command {cmd!r}")
    if not lines:
        return
    argv = ns.ip_argv("-batch", "-")
    code, _, err = execute(ns, "ip -batch", argv, input="\n".join(lines) + "\n")
    if code != 0:
        match = re.search(r"Command failed -:(\d+)", err)
        line = int(match.group(1)) if match else 0
        detail = err.strip()
        if 1 <= line <= len(lines):
            detail += f" [line {line}: {lines[line - 1]}]"
        raise BatchFailed(ns.label, argv, code, detail, line)


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
    """The IPv4 main-table routes in ``ns``."""
    out = _run(ns, "routes", ["-j", "-4", "route", "show"])
    return [
        Route(str(r.get("dst")), r.get("gateway"), r.get("dev")) for r in json.loads(out or "[]") if isinstance(r, dict)
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
            raise KernelError(ns.label, f"bridge {name}", "vanished right after it was created")
    if state.kind != "bridge":
        raise KernelError(ns.label, f"link {name}", f'"{name}" already exists but is not a bridge')
    ip = address.split("/")[0]
    others = [a for a in state.ipv4 if a.split("/")[0] != ip]
    if others:
        raise KernelError(
            ns.label, f"bridge {name}", f'"{name}" already has an IP address different from {address}: {others[0]}'
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
