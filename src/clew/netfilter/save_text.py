"""Write a `Ruleset` back as text: ``iptables-save`` output and ``iptables -S`` lines.

The inverse of `iptables_save.parse` for what it keeps: a rule is printed from its parsed form
(core options, ``-m`` matches with their options, the target), values double-quoted when they
hold blanks or quotes, as iptables-save does. ``parse(dump(r))`` gives rules `canonical`-equal
to ``r``'s. `dump` is canonical: tables by name, built-in chains in the kernel's order, user
chains by name, no counters — so two rulesets with the same rules print the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from clew.netfilter.iptables_save import BUILTIN_CHAINS
from clew.netfilter.rules import Option, Rule, Ruleset, Table


def quote(word: str) -> str:
    """``word`` as one iptables-restore word (double quotes, backslash escapes, when needed)."""
    if word and not any(c.isspace() or c in "\"'\\" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _option(o: Option) -> list[str]:
    return [*(["!"] if o.negated else []), o.name, *(quote(v) for v in o.values)]


def rule_spec(rule: Rule, *, counters: bool = False) -> str:
    """The rule's words after the chain name (``-s 10.0.0.1/32 -m tcp --dport 80 -j ACCEPT``);
    ``counters`` puts ``-c 0 0`` before the target, where ``iptables -v -S`` prints it."""
    words: list[str] = []
    for o in rule.core:
        words += _option(o)
    for m in rule.matches:
        words += ["-m", m.module]
        for o in m.options:
            words += _option(o)
    if counters:
        words += ["-c", "0", "0"]
    if rule.target is not None:
        words += ["-g" if rule.target.goto else "-j", rule.target.name]
        for o in rule.target.options:
            words += _option(o)
    return " ".join(words)


def rule_text(rule: Rule, *, counters: bool = False) -> str:
    """``-A CHAIN spec``."""
    spec = rule_spec(rule, counters=counters)
    return f"-A {rule.chain} {spec}" if spec else f"-A {rule.chain}"


def chain_order(table: Table) -> list[str]:
    """Built-in chains in the kernel's order, then user chains by name."""
    builtin = [c for c in BUILTIN_CHAINS.get(table.name, ()) if c in table.chains]
    return builtin + sorted(c for c in table.chains if c not in builtin)


def dump(rules: Ruleset, tables: Iterable[str] | None = None) -> str:
    """``iptables-save`` text of ``tables`` (default: all, by name), canonical (see module doc)."""
    out: list[str] = []
    for name in sorted(rules.tables) if tables is None else tables:
        table = rules.tables.get(name)
        if table is None:
            continue
        out.append(f"*{name}")
        order = chain_order(table)
        out += [f":{c} {table.chains[c].policy or '-'} [0:0]" for c in order]
        out += [rule_text(r) for c in order for r in table.chains[c].rules]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def spec_lines(table: Table, chain: str, *, counters: bool = False) -> list[str]:
    """``iptables [-v] -S CHAIN``: ``-P CHAIN POLICY`` (built-in) or ``-N CHAIN``, then its rules;
    ``counters`` (``-v``) adds ``-c 0 0``, as iptables-restore --counters reads it back."""
    found = table.chains[chain]
    tail = " -c 0 0" if counters else ""
    head = f"-P {chain} {found.policy}{tail}" if found.policy else f"-N {chain}"
    return [head, *(rule_text(r, counters=counters) for r in found.rules)]
