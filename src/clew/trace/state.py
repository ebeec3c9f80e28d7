"""The packet as it moves: addresses after NAT, mark, interfaces, and what happened so far.

One `State` is one branch of the walk; a ``statistic`` match splits it into two, each carrying
its probability. States are copied on a branch, never shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from clew.trace.packet import Assumption, Hop


@dataclass(slots=True)
class State:
    src: str
    dst: str
    proto: str
    sport: int
    dport: int
    ctstate: str = "NEW"
    mark: int = 0
    ctmark: int = 0  # ct mark (nftables ct mark set / match)
    iif: str | None = None
    oif: str | None = None  # "?" when neither routes nor --oif say it
    oif_given: str | None = None  # --oif
    hook: str = ""
    bridged: bool = False  # crossing a bridge (br_netfilter): physdev matches see it
    probability: float = 1.0
    dnat: str | None = None
    snat: str | None = None
    masquerade: bool = False
    masquerade_reason: str | None = None
    masquerade_skipped: str | None = None  # a masquerade rule that did not match, for "why not"
    mark_reason: str | None = None  # the rule that last set mark bits (e.g. the jump to KUBE-MARK-MASQ)
    service: str | None = None
    recent: frozenset[str] = frozenset()  # recent lists this client is in (ClientIP affinity)
    affinity_sets: tuple[str, ...] = ()  # recent lists this packet adds its source to (--set)
    hops: list[Hop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    callers: tuple[str, ...] = ()  # the rule texts that jumped into the current chain, innermost last
    assumptions: tuple[Assumption, ...] = ()  # what this branch rests on (a tuple: forks share it safely)
    missed: tuple[str, ...] = ()  # ACCEPT rules it passed without matching, each with the condition that decided it

    def assume(self, a: Assumption) -> None:
        """Record that this branch goes on because of ``a`` (once each)."""
        if a not in self.assumptions:
            self.assumptions = (*self.assumptions, a)

    def fork(self, probability: float) -> State:
        return replace(self, probability=probability, hops=list(self.hops), notes=list(self.notes))
