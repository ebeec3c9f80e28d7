"""iptables inside a network namespace: restore, save, and kube-proxy's Ensure* helpers.

All commands run through ``ip netns exec NS`` (see :mod:`clew.kernel.netns`). The wait flags
follow kube-proxy: ``-w 5`` everywhere, and ``-W 100000`` (the lock poll interval, µs) for
``iptables-restore`` and for the legacy backend only; iptables-nft takes no lock and prints
"Ignoring deprecated --wait-interval option." for every ``iptables`` call that passes it.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Sequence

from clew.kernel import netns as _netns
from clew.kernel.errors import CommandFailed, KernelError

IPTABLES = "iptables"
IPTABLES_RESTORE = "iptables-restore"
IPTABLES_SAVE = "iptables-save"
WAIT = ["-w", "5"]
WAIT_INTERVAL = ["-W", "100000"]
_VERSION = re.compile(r"v(\d+)\.(\d+)(?:\.(\d+))?(?:\s+\((\w+)\))?")


@functools.cache
def _version_info() -> tuple[tuple[int, int, int], str]:
    argv = [IPTABLES, "--version"]
    proc = _netns.execute(None, "iptables --version", argv)
    match = _VERSION.search(proc.stdout)
    if match is None:
        raise KernelError(None, "iptables --version", f"unrecognised output {proc.stdout.strip()!r}")
    major, minor, patch, backend = match.groups()
    return (int(major), int(minor), int(patch or 0)), backend or "legacy"


def version() -> tuple[int, int, int]:
    """The installed iptables version, e.g. ``(1, 8, 9)`` (read-only; cached)."""
    return _version_info()[0]


def backend() -> str:
    """``"nf_tables"`` for iptables-nft, ``"legacy"`` for the x_tables one (cached)."""
    return _version_info()[1]


def _wait_flags() -> list[str]:
    return WAIT if backend() == "nf_tables" else WAIT + WAIT_INTERVAL


def iptables(netns: str, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``iptables -w 5 ARGS…`` inside ``netns``."""
    return _netns.run(netns, [IPTABLES, *_wait_flags(), *args], check=check)


def restore(netns: str, payload: str, *, noflush: bool = True, counters: bool = True, timeout: float = 300.0) -> None:
    """Load ``payload`` (iptables-restore input) inside ``netns`` in one transaction.

    ``noflush`` keeps the chains the payload does not mention (a partial sync); ``counters``
    honours ``[packets:bytes]`` in the payload. On failure :class:`CommandFailed` carries
    iptables-restore's stderr, which names the failing line ("line 4 failed: …").
    """
    argv = [IPTABLES_RESTORE, *WAIT, *WAIT_INTERVAL]
    if noflush:
        argv.append("--noflush")
    if counters:
        argv.append("--counters")
    proc = _netns.run(netns, argv, input=payload, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise CommandFailed(netns, "iptables-restore", proc.args, proc.returncode, proc.stderr)


def save(netns: str, table: str | None = None) -> str:
    """``iptables-save`` output of ``netns`` (one table, or all)."""
    argv = [IPTABLES_SAVE] if table is None else [IPTABLES_SAVE, "-t", table]
    return _netns.run(netns, argv).stdout


def chain_exists(netns: str, table: str, chain: str) -> bool:
    """Whether ``chain`` exists in ``table`` inside ``netns``."""
    proc = iptables(netns, ["-t", table, "-S", chain, "1"], check=False)
    return proc.returncode == 0


def ensure_chain(netns: str, table: str, chain: str) -> bool:
    """Create ``chain`` in ``table`` unless it exists; returns whether it already existed.

    Like kube-proxy's EnsureChain: ``-N`` and exit status 1 means "already exists".
    """
    proc = iptables(netns, ["-t", table, "-N", chain], check=False)
    if proc.returncode == 0:
        return False
    if proc.returncode == 1 and chain_exists(netns, table, chain):
        return True
    raise CommandFailed(netns, f"chain {table}/{chain}", proc.args, proc.returncode, proc.stderr)


def ensure_rule(netns: str, table: str, chain: str, args: Sequence[str], *, prepend: bool = True) -> bool:
    """Add the rule ``args`` to ``table``/``chain`` unless present; returns whether it existed.

    Like kube-proxy's EnsureRule: ``-C`` to check (exit 1 = absent), then ``-I`` (``prepend``)
    or ``-A``.
    """
    what = f"rule in {table}/{chain}"
    check = iptables(netns, ["-t", table, "-C", chain, *args], check=False)
    if check.returncode == 0:
        return True
    if check.returncode != 1:
        raise CommandFailed(netns, what, check.args, check.returncode, check.stderr)
    op = "-I" if prepend else "-A"
    add = iptables(netns, ["-t", table, op, chain, *args], check=False)
    if add.returncode != 0:
        raise CommandFailed(netns, what, add.args, add.returncode, add.stderr)
    return False


def delete_rule(netns: str, table: str, chain: str, args: Sequence[str]) -> bool:
    """Delete the rule ``args`` from ``table``/``chain`` if present; returns whether it was."""
    check = iptables(netns, ["-t", table, "-C", chain, *args], check=False)
    if check.returncode != 0:
        return False
    delete = iptables(netns, ["-t", table, "-D", chain, *args], check=False)
    if delete.returncode != 0:
        raise CommandFailed(netns, f"rule in {table}/{chain}", delete.args, delete.returncode, delete.stderr)
    return True
