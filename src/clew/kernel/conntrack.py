"""Conntrack entries inside a network namespace (the ``conntrack`` tool, package conntrack).

Deleting entries is best effort: a missing tool or no matching entry is not an error — the
entries would time out anyway; clew only shortens the wait for UDP flows to removed endpoints.
"""

from __future__ import annotations

import re
import shutil

from clew.kernel import netns as _netns
from clew.kernel.errors import CommandFailed
from clew.kernel.namespace import Where

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


def delete_udp(netns: Where, *, dst_nat: str, orig_dst: str | None = None, orig_port: int | None = None) -> int:
    """``conntrack -D -p udp [--orig-dst VIP | --orig-port-dst PORT] --dst-nat EP``; how many."""
    if shutil.which("conntrack") is None:
        return 0
    argv = ["conntrack", "-D", "-p", "udp", "--dst-nat", dst_nat]
    if orig_dst is not None:
        argv += ["--orig-dst", orig_dst]
    if orig_port is not None:
        argv += ["--orig-port-dst", str(orig_port)]
    try:
        proc = _netns.run(netns, argv, check=False)
    except CommandFailed:
        return 0
    found = _DELETED.search(proc.stderr + proc.stdout)
    return int(found.group(1)) if found else 0
