"""The rules kube-proxy puts into the built-in chains, and its canary chains.

They are not part of the restore payload: a ``--noflush`` restore cannot make a rule in INPUT
idempotent, so kube-proxy ensures each one with ``iptables -C`` and, if missing, ``-I`` at
position 1 (so on a fresh node later rows end up above earlier ones), on every full sync.
The rows below are kube-proxy's ``iptablesJumpChains`` in order, rule text exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from clew.model.proxy_config import ProxyConfig
from clew.proxy import names as n


@dataclass(frozen=True, slots=True)
class JumpRule:
    table: str
    chain: str  # a built-in chain
    args: tuple[str, ...]  # argv after the chain name, quotes already removed

    def text(self) -> str:
        """The rule as ``iptables -t T -A CHAIN …`` would print it, quoting spaced words."""
        shown = [f'"{a}"' if " " in a else a for a in self.args]
        return f"-t {self.table} -I {self.chain} {' '.join(shown)}"


_NEW = ("-m", "conntrack", "--ctstate", "NEW")


def _comment(text: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", text)


def jump_rules(config: ProxyConfig) -> tuple[JumpRule, ...]:
    """Every built-in chain jump, in the order kube-proxy ensures them."""
    rows: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (
            "filter",
            ("INPUT", "FORWARD"),
            (*_NEW, *_comment("kubernetes externally-visible service portals"), "-j", n.KUBE_EXTERNAL_SERVICES),
        ),
        ("filter", ("INPUT",), (*_comment("kubernetes health check service ports"), "-j", n.KUBE_NODEPORTS)),
        ("filter", ("FORWARD", "OUTPUT"), (*_NEW, *_comment("kubernetes service portals"), "-j", n.KUBE_SERVICES)),
        ("filter", ("FORWARD",), (*_comment("kubernetes forwarding rules"), "-j", n.KUBE_FORWARD)),
        (
            "filter",
            ("INPUT", "OUTPUT", "FORWARD"),
            (*_NEW, *_comment("kubernetes load balancer firewall"), "-j", n.KUBE_PROXY_FIREWALL),
        ),
        ("nat", ("OUTPUT", "PREROUTING"), (*_comment("kubernetes service portals"), "-j", n.KUBE_SERVICES)),
        ("nat", ("POSTROUTING",), (*_comment("kubernetes postrouting rules"), "-j", n.KUBE_POSTROUTING)),
    ]
    if config.localhost_nodeports:
        rows.append(("filter", ("INPUT", "OUTPUT"), ("-j", n.KUBE_FIREWALL)))
    return tuple(JumpRule(table, chain, args) for table, chains, args in rows for chain in chains)


CANARY_TABLES = ("mangle", "nat", "filter")


def standalone_prefix(config: ProxyConfig) -> dict[str, list[str]]:
    """Restore lines that make a payload loadable into an empty namespace on its own:
    the canary chains and the jump rules, inserted at position 1 in kube-proxy's order.
    Returned per table, to be placed right after that table's chain declarations."""
    out: dict[str, list[str]] = {t: [] for t in CANARY_TABLES}
    for rule in jump_rules(config):
        shown = [f'"{a}"' if " " in a else a for a in rule.args]
        out[rule.table].append(f"-I {rule.chain} 1 {' '.join(shown)}")
    return out
