"""The nftables ruleset generation of a network namespace: a number the kernel bumps on every
committed change to any nftables table there — which, with iptables-nft, is every change to
iptables too (each ``iptables`` command, each table of an ``iptables-restore``).

Reading it costs one netlink round trip (``NFT_MSG_GETGEN``; ~4 µs), where reading KUBE-SERVICES
at 10k Services costs ~110 ms: so the agent's tamper guard reads the chains only when the
generation moved. ``nft`` 1.0.6 prints the generation nowhere, and python3-nftables is not a
dependency, so this speaks netlink itself.

The socket must belong to the node's namespace: `clew.kernel.ns_socket` makes it there (a
short-lived child inside the namespace hands its descriptor back) without moving this process.
"""

from __future__ import annotations

import os
import socket
import struct

from clew.kernel.errors import KernelError
from clew.kernel.namespace import Namespace, Where
from clew.kernel.ns_socket import socket_in

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id


def _open_netlink(where: Where) -> socket.socket:
    """A NETLINK_NETFILTER socket in ``where`` (made there: `clew.kernel.ns_socket`)."""
    return socket_in(where, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER, bind=(0, 0))


class Generation:
    """``generation()`` of one namespace, over a netlink socket opened once (lazily) — and again
    when the namespace file names another namespace than the socket's (deleted and made anew
    under the same name: the old socket would keep answering for the old one)."""

    def __init__(self, where: Where) -> None:
        self.namespace = Namespace.of(where)
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._seq = 0

    def __call__(self) -> int:
        """The current generation; raises `KernelError` when it cannot be read."""
        try:
            inode = os.stat(self.namespace.path).st_ino if self.namespace.path else None
            if self._sock is not None and inode != self._inode:
                self.close()
            if self._sock is None:
                self._sock, self._inode = _open_netlink(self.namespace), inode
            return self._ask(self._sock)
        except OSError as e:
            self.close()
            raise KernelError(self.namespace, "nftables generation", str(e)) from None

    def _ask(self, sock: socket.socket) -> int:
        self._seq += 1
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
        sock.send(_HEADER.pack(_HEADER.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN,
                               NLM_F_REQUEST, self._seq, 0) + body)  # fmt: skip
        sock.settimeout(5.0)
        while True:
            data = sock.recv(65536)
            length, kind, _, seq, _ = _HEADER.unpack_from(data)
            if seq != self._seq:
                continue  # a late answer to an earlier question
            if kind == NLMSG_ERROR:
                errno = -struct.unpack_from("=i", data, _HEADER.size)[0]
                raise OSError(errno, os.strerror(errno))
            return parse_gen(data[: length or len(data)])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def parse_gen(message: bytes) -> int:
    """NFTA_GEN_ID from one NFT_MSG_NEWGEN message (header included). Pure."""
    offset = _HEADER.size + _NFGEN.size
    while offset + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        if kind & 0x3FFF == NFTA_GEN_ID and length >= 8:
            return int(struct.unpack_from(">I", message, offset + 4)[0])
        offset += (length + 3) & ~3
    raise OSError(0, "no generation id in the kernel's answer")
