"""The shapes an nftables-mode render is made of, shared by the renderer, the sync engine, the
explainer and the benchmarks.

clew's nftables layout keeps per-Service state in *data* maps and sets over a chain graph that
does not grow with the Services (see README.md): a one-Service change is a handful of
``add element`` / ``delete element`` commands, never a rule or a verdict-map element, so the
kernel does not re-validate a chain graph at commit. Only Services that need chains of their
own (ClientIP affinity) get them, kube-proxy style.

A render is therefore: the table's fixed part (a function of the configuration and of which
endpoint-count *groups* are in use) plus, per Service port, its elements, its groups, and
its own chains and sets (rarely any). The sync engine diffs ports' elements; the full script
loads everything into an empty namespace in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILY = "ip"
TABLE = "clew"


def quote(text: str) -> str:
    """An nft string literal (comments): double quotes; nft has no escape for ``"``."""
    return '"' + text.replace('"', "'") + '"'


@dataclass(frozen=True, slots=True, order=True)
class Group:
    """One endpoint-count group: the data map that picks among ``n`` endpoints of protocol
    ``proto`` for destinations of one ``role`` (see README.md: dst, dst-sc, np, np-sc), and the
    one rule that looks it up. Exists while some Service port has elements in it."""

    role: str
    proto: str  # "tcp" | "udp" | "sctp"
    n: int

    @property
    def map_name(self) -> str:
        return f"{self.role}-{self.proto}-{self.n}"


@dataclass(frozen=True, slots=True, order=True)
class Element:
    """One element of a named set or map of clew's table. ``key`` and ``value`` are nft text
    (``10.96.0.10 . 53 . 0``, ``10.244.1.5 . 53``); ``value`` is None in a set. ``comment`` names
    the Service port (``ns/name:port``) so that a person can map every element back."""

    set: str
    key: str
    value: str | None = None
    comment: str = ""

    def add(self) -> str:
        c = f" comment {quote(self.comment)}" if self.comment else ""
        v = f" : {self.value}" if self.value is not None else ""
        return f"add element {FAMILY} {TABLE} {self.set} {{ {self.key}{c}{v} }}"

    def delete(self) -> str:
        return f"delete element {FAMILY} {TABLE} {self.set} {{ {self.key} }}"


@dataclass(frozen=True, slots=True)
class Chain:
    """A regular chain a Service port owns (affinity Services only): its name and rule bodies
    (the text after ``add rule ip clew <name>``)."""

    name: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetDecl:
    """A named set or map a Service port owns (affinity sets): ``add set ip clew <name> { <spec> }``."""

    name: str
    spec: str
    is_map: bool = False


@dataclass(frozen=True, slots=True)
class PortNft:
    """Everything one Service port contributes to clew's table."""

    key: str  # "<spn>/<proto>", as `PortRules.key` in iptables mode
    service_key: str  # "ns/name"
    spn: str
    elements: tuple[Element, ...]
    groups: frozenset[Group] = frozenset()
    chains: tuple[Chain, ...] = ()
    sets: tuple[SetDecl, ...] = ()


@dataclass(frozen=True, slots=True)
class PortText:
    """One port's share of a full script as nft text (`render.port_text`): its ``add set`` /
    ``add map`` / ``add chain`` lines, its ``add rule`` lines, and one element text per element of
    `PortNft.elements` (same order: ``<key> comment "<spn>" : <value>``). Made once per rendered
    port and kept with it by the sync engine, so a full resync of unchanged Services does not
    format 78k elements again (10k Services)."""

    declarations: tuple[str, ...]
    rules: tuple[str, ...]
    elements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A Service port the layout cannot express: left out, with the reason (counted and logged)."""

    key: str
    service_key: str
    reason: str


@dataclass(frozen=True, slots=True)
class NftRendered:
    """A full nftables-mode render. ``fixed`` is the table, base and fixed chains, fixed sets and
    maps and their rules, as nft commands, for the ``groups`` in use; ``ports`` in render order."""

    fixed: tuple[str, ...]
    groups: frozenset[Group]
    ports: tuple[PortNft, ...]
    rejected: tuple[Rejected, ...] = field(default=())
