"""Removing what a proxy mode (or the pod network) installed on a node: on a mode switch, and for
``clew agent --cleanup`` (as ``kube-proxy --cleanup``).

* iptables mode (clew's and kube-proxy's): every ``KUBE-*`` chain of filter, nat, mangle and raw
  and every rule of a built-in chain that jumps to one; the pod network's ``FLANNEL-*`` chains
  and jumps likewise (only for ``--cleanup``: the pod network runs in both proxy modes).
  One ``iptables-restore --noflush`` per table: the jumps deleted (``-D`` with the rule as
  saved), the chains declared (which flushes them) and deleted (``-X``) — all or nothing.
* nftables mode: the ``ip clew`` table (and kube-proxy's ``ip``/``ip6 kube-proxy`` for
  ``--cleanup`` and at start in iptables mode), one ``nft delete table`` each.

Everything goes through the `IptablesKernel` seam (which also runs ``nft``), so the fake serves
the unit tests. Pure planning (`removal_payload`) is separate from the calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from clew.netfilter import chain_text
from clew.proxy.iptables.apply import IptablesKernel, KernelError

IPTABLES_MODE = ("KUBE-",)
POD_NETWORK = ("FLANNEL-",)
TABLES = ("filter", "nat", "mangle", "raw")
BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
NFT_TABLES_ALL = (("ip", "clew"), ("ip", "kube-proxy"), ("ip6", "kube-proxy"))


def _target(rule: str) -> str:
    words = rule.split()
    for flag in ("-j", "-g", "--jump", "--goto"):
        if flag in words[:-1]:
            return words[words.index(flag) + 1]
    return ""


def removal_payload(save: str, prefixes: Sequence[str]) -> tuple[str, list[str]]:
    """An ``iptables-restore --noflush`` payload that removes every chain named with one of
    ``prefixes`` and every rule (in any chain not itself removed) that jumps to one; and what it
    removes, for the log. Empty payload: nothing to remove. Pure."""
    out: list[str] = []
    removed: list[str] = []
    for table in TABLES:
        chains = chain_text.from_save(save, table)
        owned = [c for c in chains if c.startswith(tuple(prefixes))]
        if not owned:
            continue
        lines = [f"*{table}"]
        lines += [f":{c} - [0:0]" for c in owned]  # declared: flushed, so nothing jumps between them
        for name, chain in chains.items():
            if name in owned:
                continue
            for rule in chain.rules:
                if _target(rule) in owned:
                    lines.append("-D" + rule[rule.index("-A") + 2 :])
                    removed.append(f"{table}/{name} jump to {_target(rule)}")
        lines += [f"-X {c}" for c in owned]
        lines.append("COMMIT")
        out += lines
        removed += [f"{table}/{c}" for c in owned]
    return ("\n".join(out) + "\n" if out else ""), removed


def remove_iptables_chains(k: IptablesKernel, prefixes: Sequence[str] = IPTABLES_MODE) -> list[str]:
    """Remove the chains named with ``prefixes`` and the jumps to them; what was removed."""
    payload, removed = removal_payload(k.save(), prefixes)
    if payload:
        k.restore(payload, noflush=True, counters=False)
    return removed


def delete_nft_tables(k: IptablesKernel, tables: Sequence[tuple[str, str]]) -> list[str]:
    """``nft delete table`` for each of ``tables`` that exists; which were deleted."""
    removed = []
    for family, name in tables:
        done = k.nft(["delete", "table", family, name])
        if done.returncode == 0:
            removed.append(f"nft table {family} {name}")
        elif "No such file or directory" not in done.stderr:
            raise KernelError(
                k.namespace, f"nft table {family} {name}", done.stderr.strip() or f"exit {done.returncode}"
            )
    return removed


def cleanup_node(k: IptablesKernel) -> list[str]:
    """``clew agent --cleanup``: everything clew (either proxy mode, kube-proxy's too, and the pod
    network) put into the node's netfilter; what was removed."""
    removed = delete_nft_tables(k, NFT_TABLES_ALL)
    return removed + remove_iptables_chains(k, (*IPTABLES_MODE, *POD_NETWORK))
