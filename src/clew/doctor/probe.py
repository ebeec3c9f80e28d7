"""Where a packet ends in one built-in chain of the filter table: a small, conservative walk.

Used by the checks that ask "is this kind of packet dropped here" (pod traffic through
FORWARD, the vxlan port through INPUT). Only what a rule matches for certain counts: addresses,
interfaces, protocol and ports, conntrack state, marks; a rule with any other match is
*uncertain* and is passed over (its name is kept in the evidence), so a verdict of DROP comes
only from a rule that surely matches, or from the chain's policy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from clew.netfilter.rules import Option, Rule, Ruleset

_TERMINAL = {"ACCEPT": "ACCEPT", "DROP": "DROP", "REJECT": "DROP"}
_IGNORED = {"comment"}


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    iif: str | None = None
    oif: str | None = None
    proto: str = "tcp"
    dport: int = 80
    state: str = "NEW"
    mark: int = 0


@dataclass(slots=True)
class Verdict:
    verdict: str  # ACCEPT | DROP
    by: str  # "policy of filter FORWARD", or the rule's text
    uncertain: list[str] = field(default_factory=list)


def _addr(option: Option | None, ip: str) -> bool | None:
    if option is None:
        return True
    try:
        inside = ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(option.value, strict=False)
    except ValueError:
        return None
    return inside != option.negated


def _iface(option: Option | None, dev: str | None) -> bool | None:
    if option is None:
        return True
    if dev is None:
        return None
    name = option.value
    hit = dev.startswith(name[:-1]) if name.endswith("+") else dev == name
    return hit != option.negated


def _matches(rule: Rule, p: Packet) -> bool | None:
    """True / False when certain, None when the rule uses something this walk does not model."""
    results: list[bool | None] = [
        _addr(rule.core_option("-s"), p.src),
        _addr(rule.core_option("-d"), p.dst),
        _iface(rule.core_option("-i"), p.iif),
        _iface(rule.core_option("-o"), p.oif),
    ]
    proto = rule.core_option("-p")
    if proto is not None:
        results.append((proto.value == p.proto) != proto.negated)
    for m in rule.matches:
        if m.module in _IGNORED:
            continue
        if m.module in ("tcp", "udp") or m.module == "multiport":
            for o in m.options:
                if o.name in ("--dport", "--destination-port", "--dports"):
                    ports: set[int] = set()
                    for part in ",".join(o.values).split(","):
                        lo, _, hi = part.partition(":")
                        if lo.isdigit():
                            ports.update(range(int(lo), int(hi or lo) + 1))
                    results.append((p.dport in ports) != o.negated)
                else:
                    results.append(None)
        elif m.module in ("conntrack", "state"):
            for o in m.options:
                if o.name in ("--ctstate", "--state"):
                    states = set(",".join(o.values).split(","))
                    results.append((p.state in states) != o.negated)
                else:
                    results.append(None)
        elif m.module == "mark":
            mark = m.get("--mark")
            if mark is None:
                results.append(None)
                continue
            value, _, mask = mark.value.partition("/")
            try:
                hit = (p.mark & int(mask or "0xffffffff", 0)) == int(value, 0)
            except ValueError:
                results.append(None)
                continue
            results.append(hit != mark.negated)
        else:
            results.append(None)
    if any(r is False for r in results):
        return False
    return None if any(r is None for r in results) else True


def walk(ruleset: Ruleset, chain: str, p: Packet) -> Verdict:
    """The verdict of built-in filter ``chain`` for ``p`` (ACCEPT when the table or chain is absent)."""
    top = ruleset.chain("filter", chain)
    if top is None:
        return Verdict("ACCEPT", f"no filter {chain} chain")
    uncertain: list[str] = []

    def visit(name: str, depth: int) -> Verdict | None:
        c = ruleset.chain("filter", name)
        if c is None or depth > 16:
            return None
        for rule in c.rules:
            target = rule.target.name if rule.target else None
            hit = _matches(rule, p)
            if hit is False or target is None:
                continue
            if hit is None:
                uncertain.append(rule.text)
                continue
            if target in _TERMINAL:
                return Verdict(_TERMINAL[target], rule.text, uncertain)
            if target == "RETURN":
                return None
            if ruleset.chain("filter", target) is not None:
                found = visit(target, depth + 1)
                if found is not None or (rule.target is not None and rule.target.goto):
                    return found
        return None

    found = visit(chain, 0)
    if found is not None:
        return found
    policy = top.policy or "ACCEPT"
    return Verdict(_TERMINAL.get(policy, "ACCEPT"), f"policy {policy} of filter {chain}", uncertain)
