"""A dispatch index for long chains, so a trace does not test 10,000 rules one by one.

kube-proxy's KUBE-SERVICES holds one rule per Service IP and port, KUBE-NODEPORTS one per
NodePort. For a chain longer than `MIN_RULES`, each rule is filed under the one value a packet
must have to match it — its ``-d`` host address, else its single destination port — or under
"any" when it has neither. The rules a packet can match are then the "any" rules plus those
filed under its destination address and port, still walked in chain order, so the result is
exactly that of testing every rule.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass, field

from clew.netfilter.rules import Chain, Rule

MIN_RULES = 64


@dataclass(slots=True)
class ChainIndex:
    size: int
    any: list[int] = field(default_factory=list)
    by_dst: dict[str, list[int]] = field(default_factory=dict)
    by_dport: dict[int, list[int]] = field(default_factory=dict)

    def candidates(self, dst: str, dport: int) -> list[int]:
        """Indices of the rules that may match a packet for ``dst:dport``, in chain order."""
        lists = [self.any, self.by_dst.get(dst, []), self.by_dport.get(dport, [])]
        return list(heapq.merge(*(x for x in lists if x)))


def _host(rule: Rule) -> str | None:
    opt = rule.core_option("-d")
    if opt is None or opt.negated:
        return None
    value = opt.value
    if "/" in value:
        addr, _, plen = value.partition("/")
        if plen not in ("32", "255.255.255.255"):
            return None
        value = addr
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() and (p == "0" or not p.startswith("0")) and int(p) < 256 for p in parts):
        return value  # already canonical: skip ipaddress, which costs ~20 µs a rule here
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def _dport(rule: Rule) -> int | None:
    for m in rule.matches:
        if m.module in ("tcp", "udp", "sctp"):
            opt = m.get("--dport") or m.get("--destination-port")
            if opt is not None and not opt.negated and opt.value.isdigit():
                return int(opt.value)
    return None


def build(chain: Chain) -> ChainIndex | None:
    if len(chain.rules) < MIN_RULES:
        return None
    index = ChainIndex(size=len(chain.rules))
    for i, rule in enumerate(chain.rules):
        host = _host(rule)
        if host is not None:
            index.by_dst.setdefault(host, []).append(i)
            continue
        port = _dport(rule)
        if port is not None:
            index.by_dport.setdefault(port, []).append(i)
        else:
            index.any.append(i)
    return index
