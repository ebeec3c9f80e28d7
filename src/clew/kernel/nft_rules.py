"""The rules of one nftables table, read straight from the kernel over netlink
(``NFT_MSG_GETRULE`` dump filtered by table), as opaque bytes per chain: what the nftables
mode's tamper check compares with what it left.

Why not ``nft list``: nft 1.0.6 fetches every set element of a table before it prints a single
rule (``nft -j list chain`` of a 5-rule chain beside a 200k-element map: 3.2 s, measured), and
the check runs every second when someone else commits. The kernel's dump of a table's rules
never touches elements (~1 ms for clew's fixed chains).

A rule's bytes are its ``NFTA_RULE_EXPRESSIONS`` and ``NFTA_RULE_USERDATA`` (the comment):
the same rule dumps the same bytes; handles and positions are left out. (A rule with an
anonymous set names it ``__set%d``: such a rule reads differently once written again.)
"""

from __future__ import annotations

import os
import socket
import struct

from clew.kernel.errors import KernelError
from clew.kernel.namespace import Namespace, Where
from clew.kernel.nfgen import NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NLM_F_REQUEST, NLMSG_ERROR
from clew.kernel.ns_socket import socket_in

NFT_MSG_GETRULE = 7
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_DONE = 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_USERDATA = 1, 2, 4, 7
_HEADER = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
FAMILIES = {"ip": socket.AF_INET, "ip6": socket.AF_INET6, "inet": 1}
RETRIES = 5  # a dump interrupted by a concurrent commit is read again


def _attr(kind: int, data: bytes) -> bytes:
    body = struct.pack("=HH", 4 + len(data), kind) + data
    return body + b"\0" * (-len(body) % 4)


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Netlink attributes from ``offset``: type (flags masked off) → payload. Pure."""
    out: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def parse_rule(message: bytes) -> tuple[str, bytes] | None:
    """(chain, the rule's bytes) of one NFT_MSG_NEWRULE message (header included). Pure."""
    attrs = parse_attrs(message, _HEADER.size + _NFGEN.size)
    chain = attrs.get(NFTA_RULE_CHAIN)
    if chain is None:
        return None
    return chain.rstrip(b"\0").decode(), attrs.get(NFTA_RULE_EXPRESSIONS, b"") + b"|" + attrs.get(
        NFTA_RULE_USERDATA, b""
    )


class RuleDump:
    """``dump()``: the rules of table ``family name`` in ``where``, per chain in order."""

    def __init__(self, where: Where, family: str = "ip", name: str = "clew") -> None:
        self.namespace = Namespace.of(where)
        self.family, self.name = FAMILIES[family], name
        self._seq = 0

    def __call__(self) -> dict[str, list[bytes]]:
        try:
            sock = socket_in(self.namespace, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER, bind=(0, 0))
        except OSError as e:
            raise KernelError(self.namespace, f"nftables rules of {self.name}", str(e)) from None
        try:
            for _ in range(RETRIES):
                got = self._dump(sock)
                if got is not None:
                    return got
            raise KernelError(self.namespace, f"nftables rules of {self.name}", "dump interrupted by commits")
        except OSError as e:
            if e.errno == 2:  # ENOENT: no such table
                return {}
            raise KernelError(self.namespace, f"nftables rules of {self.name}", str(e)) from None
        except (struct.error, UnicodeDecodeError) as e:  # an answer this reader does not understand
            raise KernelError(self.namespace, f"nftables rules of {self.name}", f"unreadable answer: {e}") from None
        finally:
            sock.close()

    def _dump(self, sock: socket.socket) -> dict[str, list[bytes]] | None:
        """One dump; None when the kernel says a commit interrupted it."""
        self._seq += 1
        body = _NFGEN.pack(self.family, 0, 0) + _attr(NFTA_RULE_TABLE, self.name.encode() + b"\0")
        kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE
        sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0) + body)
        sock.settimeout(5.0)
        out: dict[str, list[bytes]] = {}
        interrupted = False
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, flags, seq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    break
                message = data[offset : offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if mtype == NLMSG_DONE:
                    return None if interrupted else out
                if mtype == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", message, _HEADER.size)[0]
                    if errno == 0:
                        continue
                    raise OSError(errno, os.strerror(errno))
                rule = parse_rule(message)
                if rule is not None:
                    out.setdefault(rule[0], []).append(rule[1])
