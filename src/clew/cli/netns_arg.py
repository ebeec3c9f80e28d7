"""``--netns`` values: a namespace name as ``ip netns`` keeps them, or its path ``/run/netns/NAME``.

The kernel layer takes names; a path under /run/netns (or /var/run/netns) is mapped to its
name here, and anything else — another path, a name ``ip netns`` could not hold — is refused
in one line before any command runs (`netns_name`). The readers (trace, explain, dump) also take
any namespace file — ``/proc/PID/ns/net``, a runtime's bind mount — through `netns_ref`: the
kernel layer enters those with ``nsenter --net=PATH``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from clew.cli.errors import UserError

NETNS_DIRS = (PurePosixPath("/run/netns"), PurePosixPath("/var/run/netns"))
_BAD_NAME = re.compile(r"[/\s\x00]")


def netns_name(value: str, flag: str = "--netns") -> str:
    """The namespace name ``value`` stands for; `UserError` naming ``flag`` when it stands for none."""
    name = value
    if "/" in value:
        path = PurePosixPath(value)
        if path.parent not in NETNS_DIRS:
            raise UserError(
                f"{flag} {value!r}: not a network namespace; give a name from 'ip netns list' or /run/netns/NAME"
            )
        name = path.name
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise UserError(f"{flag} {value!r}: not a valid network namespace name")
    return name


def netns_ref(value: str, flag: str = "--netns") -> str:
    """A name (``/run/netns/NAME`` given as its name) or the absolute path of a namespace file
    (``/proc/PID/ns/net``); `UserError` naming ``flag`` otherwise."""
    path = PurePosixPath(value)
    if "/" in value and path.parent not in NETNS_DIRS:
        if not path.is_absolute() or "\x00" in value or ".." in path.parts:
            raise UserError(f"{flag} {value!r}: give a name from 'ip netns list', /run/netns/NAME or /proc/PID/ns/net")
        return str(path)
    return netns_name(value, flag)
