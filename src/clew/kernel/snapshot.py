"""Read what a node's network namespace holds, as the raw text of the standard tools.

The outputs are kept as the tools print them (``ip -j …`` JSON, ``iptables-save`` text), so a
dump written from them (`clew dump`) is exactly what the tracer parses on another machine.
Read-only: nothing here changes the namespace.
"""

from __future__ import annotations

from collections.abc import Collection

from clew.kernel import bird as _bird
from clew.kernel import netns as _netns
from clew.kernel.errors import CommandFailed
from clew.kernel.namespace import Where

SYSCTLS = r"^net\.ipv4\.(ip_forward|conf\..*\.(rp_filter|route_localnet|forwarding))$"
# file name in a dump → argv run inside the namespace; optional ones may fail (tool missing).
COMMANDS: dict[str, tuple[list[str], bool]] = {
    "iptables-save.txt": (["iptables-save"], True),
    "ip-addr.json": (["ip", "-j", "addr", "show"], True),
    "ip-route.json": (["ip", "-j", "route", "show", "table", "all"], True),
    "ip-link.json": (["ip", "-j", "-d", "link", "show"], True),
    "ip-neigh.json": (["ip", "-j", "neigh", "show"], True),
    "bridge-fdb.json": (["bridge", "-j", "fdb", "show"], False),
    "ipset.txt": (["ipset", "save"], False),
    "ip-rule.json": (["ip", "-j", "rule", "show"], False),  # policy routing: the trace follows the default rules
    "nft-ruleset.json": (["nft", "-j", "list", "ruleset"], False),  # native nftables tables (and iptables-nft's)
    # what routing decides by besides routes (forwarding, reverse-path filter, loopback from outside)
    "sysctl.txt": (["sysctl", "-a", "-e", "-r", SYSCTLS], False),
    # both backends, when both are installed: a node may hold rules in each (both are walked)
    "iptables-legacy-save.txt": (["iptables-legacy-save"], False),
    "iptables-nft-save.txt": (["iptables-nft-save"], False),
}
BIRD_FILE = "bird.txt"  # the namespace's BIRD, if one runs: `clew.kernel.bird.state_text`


def capture(netns: Where, *, skip: Collection[str] = ()) -> dict[str, str]:
    """Every file of a dump for ``netns`` (optional tools that fail are left out; files named in
    ``skip`` are not read: the caller reads them its own way)."""
    files: dict[str, str] = {}
    for name, (argv, required) in COMMANDS.items():
        if name in skip:
            continue
        try:
            files[name] = _netns.run(netns, argv).stdout
        except CommandFailed:
            if required:
                raise
    files[BIRD_FILE] = _bird.state_text(netns)
    return files
