"""Building ``iptables-restore`` input the way kube-proxy writes it.

Format facts (iptables-restore(8), kube-proxy's LineBuffer):

* a table opens with ``*name`` and ends with ``COMMIT``; one restore call may carry several;
* ``:CHAIN - [0:0]`` declares a user chain and, under ``--noflush``, *flushes* it, so a chain
  that is declared must be written out completely;
* ``-A CHAIN args…`` appends; ``-X CHAIN`` deletes a (declared, hence empty) chain;
* arguments are split on white space, double quotes group words: a comment with spaces is
  written ``--comment "ns/svc:p80 cluster IP"``, a single word bare (``--comment ns/svc:p80``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def chain_line(chain: str) -> str:
    """The declaration line of a user chain (flushes it under --noflush)."""
    return f":{chain} - [0:0]"


def comment(text: str) -> str:
    """``-m comment --comment …`` with kube-proxy's quoting: quoted only when it has spaces."""
    if " " in text or not text:
        return f'-m comment --comment "{text}"'
    return f"-m comment --comment {text}"


def probability(n: int) -> str:
    """The ``--probability`` of the rule choosing 1 of ``n`` remaining endpoints.

    Go's ``fmt.Sprintf("%0.10f", 1.0/float64(n))``: ``0.3333333333``, ``0.5000000000``.
    """
    return f"{1.0 / n:.10f}"


@dataclass
class TableText:
    """One table of a restore payload: chain declarations first, then rules, then COMMIT."""

    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def write_to(self, out: list[str]) -> None:
        out.append(f"*{self.name}")
        out.extend(chain_line(c) for c in self.chains)
        out.extend(self.rules)
        out.append("COMMIT")


def payload(tables: Iterable[TableText]) -> str:
    """The whole restore input; ends with a newline as iptables-restore expects."""
    out: list[str] = []
    for table in tables:
        table.write_to(out)
    return "\n".join(out) + "\n"
