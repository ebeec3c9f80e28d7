"""Which Service ports hold a destination (``ip . proto . port``, ``proto . nodePort``) when two
claim the same one — nft refuses two values for one map key, so the renderer's `render` keeps
the first port in render order and rejects the later ones (`render.destinations`). A partial
sync must decide the same without a pass over every port: `Claims` keeps who claims what, and
`arbitrate` re-decides only the ports connected to a change through shared destinations (in a
cluster without clashes: the changed ports alone). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def render_order(key: str) -> tuple[str, str]:
    """Ports in render order (`policy.decide`'s): by Service port name, then protocol, from a
    port key ``<spn>/<proto>``."""
    spn, _, proto = key.rpartition("/")
    return spn, proto


@dataclass
class Claims:
    dests: dict[str, tuple[str, ...]] = field(default_factory=dict)  # port key → its destinations
    holders: dict[str, set[str]] = field(default_factory=dict)  # destination → port keys claiming it

    def claim(self, key: str, dests: tuple[str, ...] | None) -> None:
        """``key`` now claims ``dests`` (None: nothing; the port went or cannot be expressed)."""
        for d in self.dests.pop(key, ()):
            held = self.holders.get(d)
            if held is not None:
                held.discard(key)
                if not held:
                    del self.holders[d]
        if dests:
            self.dests[key] = dests
            for d in dests:
                self.holders.setdefault(d, set()).add(key)

    def component(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and every port connected to them through shared destinations."""
        seen: set[str] = set()
        todo = list(keys)
        while todo:
            k = todo.pop()
            if k in seen:
                continue
            seen.add(k)
            for d in self.dests.get(k, ()):
                held = self.holders.get(d, ())
                if len(held) > 1:
                    todo.extend(held)
        return seen

    def arbitrate(self, keys: Iterable[str]) -> tuple[set[str], dict[str, tuple[str, str]]]:
        """Among ``keys`` (a union of whole components), the ports that keep their destinations
        — in render order, a port whose destination an earlier kept port holds loses — and, per
        losing port, (the destination, the key of the port that holds it)."""
        kept: set[str] = set()
        lost: dict[str, tuple[str, str]] = {}
        taken: dict[str, str] = {}
        for k in sorted((k for k in keys if k in self.dests), key=render_order):
            ds = self.dests[k]
            clash = next((d for d in ds if d in taken), None)
            if clash is not None:
                lost[k] = (clash, taken[clash])
                continue
            kept.add(k)
            taken.update(dict.fromkeys(ds, k))
        return kept, lost
