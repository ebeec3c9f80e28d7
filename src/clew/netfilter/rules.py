"""The rule model shared by the renderers' tests, the iptables-save parser and the tracer.

A rule is its core options (``-s -d -p -i -o -f``), an ordered list of match modules each with
its options, and a target with its options. Options keep their negation (``! --mark …``) and
their values as written; `canonical` gives a form in which a rule as clew rendered it and the
same rule as ``iptables-save`` prints it back compare equal (iptables-save adds ``/32``, moves
core options first, spells ``MARK --or-mark`` as ``--set-xmark``, adds module defaults, and
prints probabilities with 11 decimals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CORE_OPTIONS = {
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-p": "-p", "--protocol": "-p",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
    "-f": "-f", "--fragment": "-f",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Option:
    """``[!] --name value…``; ``values`` is empty for a flag like ``--rcheck``."""

    name: str
    values: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""


@dataclass(frozen=True, slots=True)
class Match:
    """One ``-m MODULE`` with its options, in the order written."""

    module: str
    options: tuple[Option, ...] = ()

    def get(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True, slots=True)
class Target:
    """``-j NAME`` (or ``-g NAME`` when ``goto``) with the target's options."""

    name: str
    options: tuple[Option, ...] = ()
    goto: bool = False

    def get(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of one chain. ``line`` is its line in the text it was parsed from (1-based)."""

    table: str
    chain: str
    core: tuple[Option, ...] = ()
    matches: tuple[Match, ...] = ()
    target: Target | None = None
    line: int = 0
    text: str = field(default="", compare=False)

    def core_option(self, name: str) -> Option | None:
        return next((o for o in self.core if o.name == name), None)

    def match(self, module: str) -> Match | None:
        return next((m for m in self.matches if m.module == module), None)

    @property
    def comment(self) -> str | None:
        m = self.match("comment")
        opt = m.get("--comment") if m else None
        return opt.value if opt else None


@dataclass(slots=True)
class Chain:
    """A chain: its policy (built-in chains only; None for user chains) and rules in order."""

    name: str
    policy: str | None = None
    rules: list[Rule] = field(default_factory=list)


@dataclass(slots=True)
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)


@dataclass(slots=True)
class Ruleset:
    """Parsed ``iptables-save`` output (or restore input): tables by name, plus parse warnings."""

    tables: dict[str, Table] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t else None
