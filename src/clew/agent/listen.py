"""Listening sockets inside another network namespace, without moving the agent there.

An agent given ``--netns NODE`` programs that namespace from wherever it runs; its metrics and
health servers must listen there too, or every such agent would bind the host's 10249/10256 (and
clash with each other and with a kube-proxy on the host). A socket belongs to the namespace it
was created in, whichever process later uses it, so a short-lived forked child enters the
namespace (``setns``), creates, binds and listens, and hands the descriptor back over a unix
socket pair (``SCM_RIGHTS``) — what pyroute2 does. The agent's own threads never change
namespace. When the agent already runs in that namespace (the lab starts each agent with
``ip netns exec``) the socket is made directly.
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)  # os.setns is Python 3.12+; the libc call is the same


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class ListenError(OSError):
    """A socket could not be made in the namespace; ``strerror`` says why."""


def same_netns(netns: str) -> bool:
    """Whether this process already runs in the named namespace (or ``netns`` is empty: its own)."""
    if not netns:
        return True
    mine, theirs = os.stat("/proc/self/ns/net"), os.stat(NETNS_DIR / netns)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def listening_socket(netns: str, family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    """A TCP socket bound to ``address`` and listening, in ``netns`` ("" for this process's own).

    Raises OSError (``strerror`` set) when it cannot be bound."""
    if same_netns(netns):
        return _listen(family, address)
    return _listen_in(netns, family, address)


def _listen(family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_in(netns: str, family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    ns_fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: syscalls only, then _exit
            _child(ns_fd, child, family, address)
        child.close()
        parent.settimeout(10.0)
        try:
            message, fds, _, _ = socket.recv_fds(parent, 1024, 1)
        finally:
            os.waitpid(pid, 0)
    finally:
        os.close(ns_fd)
        parent.close()
        if child.fileno() >= 0:
            child.close()
    if not fds:
        errno, _, text = message.decode(errors="replace").partition(" ")
        raise ListenError(int(errno) if errno.isdigit() else 0, text or "no socket from the namespace")
    for extra in fds[1:]:
        os.close(extra)
    return socket.socket(fileno=fds[0])


def _child(ns_fd: int, channel: socket.socket, family: socket.AddressFamily, address: tuple[str, int]) -> None:
    code = 0
    try:
        _setns(ns_fd)
        sock = _listen(family, address)
        socket.send_fds(channel, [b"0 ok"], [sock.fileno()])
    except OSError as e:
        try:
            channel.sendall(f"{e.errno or 0} {e.strerror or e}".encode())
        except OSError:
            code = 1
    except BaseException:
        code = 1
    os._exit(code)
