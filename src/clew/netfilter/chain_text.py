"""Chains as text, kept verbatim: what a full sync carries over for other programs.

A full sync rewrites filter and nat whole and must put back every chain that is not clew's
exactly as it was — rule lines as the kernel printed them, counters included — so those chains
are read at the line level here, not parsed into rules (`iptables_save.parse` would normalise
them, and costs ~0.5 s on a 10k-Service table whose chains are mostly clew's own and skipped).
The line grammar is `iptables_save`'s (iptables-save(8), iptables 1.8.9):

* ``iptables-save`` output: ``*table`` … ``COMMIT``; ``:CHAIN POLICY [packets:bytes]`` (``-`` for a
  user chain); ``[packets:bytes] -A CHAIN …`` (with ``-c``) or ``-A CHAIN …``; ``#`` comments;
* ``iptables [-v] -S CHAIN``: ``-P CHAIN POLICY [-c packets bytes]`` or ``-N CHAIN``, then
  ``-A CHAIN … [-c packets bytes] [-j TARGET …]``;
* ``nft list chains ip``: ``table ip NAME {`` … ``chain NAME {`` (iptables-nft's tables; the chain
  names without a rule printed).

Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from clew.netfilter.iptables_save import _COUNTERS


@dataclass
class ChainText:
    """One chain as text: a built-in chain's policy with its counters (``ACCEPT [0:0]``, None
    for a user chain) and its ``-A`` lines verbatim."""

    name: str
    policy: str | None = None
    rules: list[str] = field(default_factory=list)


def _chain_of(line: str) -> str:
    """CHAIN of ``-A CHAIN …`` (after an optional ``[packets:bytes]`` prefix)."""
    m = _COUNTERS.match(line)
    words = (line[m.end() :] if m else line).split(None, 2)
    return words[1] if len(words) > 1 and words[0] == "-A" else ""


def from_save(text: str, table: str, wanted: Iterable[str] | None = None) -> dict[str, ChainText]:
    """The chains of ``table`` in ``iptables-save`` output (only ``wanted`` ones if given), in
    the order declared."""
    keep = None if wanted is None else set(wanted)
    out: dict[str, ChainText] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            current = line[1:].strip()
        elif line == "COMMIT":
            current = None
        elif current != table or not line or line[0] == "#":
            continue
        elif line[0] == ":":
            words = line[1:].split()
            if words and (keep is None or words[0] in keep):
                policy = words[1] if len(words) > 1 else "-"
                counters = words[2] if len(words) > 2 and _COUNTERS.fullmatch(words[2]) else "[0:0]"
                out[words[0]] = ChainText(words[0], None if policy == "-" else f"{policy} {counters}")
        else:
            chain = out.get(_chain_of(line))
            if chain is not None:
                chain.rules.append(line)
    return out


def from_spec(chain: str, lines: Sequence[str]) -> ChainText:
    """One chain from ``iptables -v -S CHAIN`` (``-S`` without ``-v`` reads as counters 0)."""
    found = ChainText(chain)
    for line in lines:
        words = line.split()
        if words[:1] == ["-P"] and len(words) >= 3:
            counters = words[4:6] if words[3:4] == ["-c"] and len(words) >= 6 else ["0", "0"]
            found.policy = f"{words[2]} [{counters[0]}:{counters[1]}]"
        elif words[:1] == ["-A"]:
            found.rules.append(line.strip())
    return found


def policy_line(chain: ChainText) -> str:
    """``-P CHAIN POLICY -c packets bytes`` of a built-in chain (as ``iptables -v -S`` prints it)."""
    assert chain.policy is not None
    policy, _, counters = chain.policy.partition(" ")
    packets, _, octets = counters.strip("[]").partition(":")
    return f"-P {chain.name} {policy} -c {packets or 0} {octets or 0}"


def nft_chain_names(out: str, tables: Sequence[str] = ("filter", "nat")) -> dict[str, list[str]]:
    """Chain names per iptables table from ``nft list chains ip`` output, in its order."""
    wanted = set(tables)
    found: dict[str, list[str]] = {t: [] for t in tables}
    current = None
    for raw in out.splitlines():
        words = raw.split()
        if len(words) >= 3 and words[0] == "table" and words[1] == "ip":
            current = words[2] if words[2] in wanted else None
        elif current is not None and len(words) >= 2 and words[0] == "chain":
            found[current].append(words[1])
    return found


def save_chain_names(text: str, tables: Sequence[str] = ("filter", "nat")) -> dict[str, list[str]]:
    """Chain names per table from ``iptables-save`` output, in its order."""
    return {t: list(from_save(text, t)) for t in tables}
