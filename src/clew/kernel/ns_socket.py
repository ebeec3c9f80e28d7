"""Sockets that belong to another network namespace, made without moving this process there.

A socket belongs to the namespace it was created in, whichever process later uses it. The agent
needs two kinds inside the node's namespace: its metrics and health listeners (or every agent
given ``--netns`` would bind the host's 10249/10256) and the tamper guard's netlink socket (the
nftables generation of that namespace). Nothing in clew ``setns()``es its own process or forks
a threaded one, so a short-lived child started inside the namespace through the runner
(``ip netns exec``) creates and binds the socket there and hands its descriptor back over a Unix
socket pair (``SCM_RIGHTS``); the socket stays in that namespace for its whole life. In the
namespace this process already runs in, the socket is made directly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

from clew.kernel import runner
from clew.kernel.namespace import Namespace, Where

_CHILD = r"""
import json, socket, sys
channel = socket.socket(fileno=int(sys.argv[1]))
spec = json.loads(sys.argv[2])
try:
    sock = socket.socket(spec["family"], spec["type"], spec["proto"])
    if spec["reuse"]:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(tuple(spec["bind"]))
    if spec["listen"] is not None:
        sock.listen(spec["listen"])
except OSError as e:
    channel.sendall(f"{e.errno or 0} {e.strerror or e}".encode())
else:
    socket.send_fds(channel, [b"0 ok"], [sock.fileno()])
"""


def _here(space: Namespace) -> bool:
    """Whether this process already runs in ``space`` (same namespace file identity)."""
    if space.own:
        return True
    try:
        mine, theirs = os.stat("/proc/self/ns/net"), os.stat(space.path or "")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _make(family: int, type_: int, proto: int, bind: tuple[Any, ...], listen: int | None, reuse: bool) -> socket.socket:
    sock = socket.socket(family, type_, proto)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(bind)
        if listen is not None:
            sock.listen(listen)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_in(
    where: Where,
    family: int,
    type_: int,
    proto: int = 0,
    *,
    bind: tuple[Any, ...],
    listen: int | None = None,
    reuse: bool = False,
) -> socket.socket:
    """A socket of ``family``/``type_``/``proto`` created in ``where``, bound to ``bind`` (and
    listening with that backlog when ``listen`` is given; ``SO_REUSEADDR`` with ``reuse``).

    Raises OSError (``errno``/``strerror`` as the child saw them) when it cannot be made;
    `clew.kernel.errors.KernelError` subclasses for a missing namespace or a child that fails."""
    space = Namespace.of(where)
    if _here(space):
        return _make(family, type_, proto, bind, listen, reuse)
    spec = {"family": family, "type": type_, "proto": proto, "bind": list(bind), "listen": listen, "reuse": reuse}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        child = runner.spawn(
            space,
            [sys.executable, "-c", _CHILD, str(theirs.fileno()), json.dumps(spec)],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        ours.settimeout(10.0)
        try:
            message, fds, _, _ = socket.recv_fds(ours, 1024, 1)
        except OSError as e:
            message, fds = f"0 {e}".encode(), []
        _, stderr = child.communicate(timeout=10.0)
    finally:
        ours.close()
        if theirs.fileno() != -1:
            theirs.close()
    for extra in fds[1:]:
        os.close(extra)
    if fds:
        return socket.socket(fileno=fds[0])
    errno, _, text = message.decode(errors="replace").partition(" ")
    if not text:  # the child died before answering: its last line says why
        text = ((stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no socket"])[0]
    raise OSError(int(errno) if errno.isdigit() else 0, text)
