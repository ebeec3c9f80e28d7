"""clew's Service proxy in either mode on a topology node, for kernel tests that run the same
packets through iptables mode and nftables mode.

`load` renders the same Kubernetes objects for a node with the same `decide` and loads them the
way each mode does: iptables mode through the real applier (``full_sync``: filter and nat
replaced, the mangle canary, ``route_localnet`` with localhost NodePorts); nftables mode as the
renderer's full script, ``nft -f`` inside the node's namespace in one transaction (the script
deletes clew's table first if it is there, so a reload replaces it, as a full resync does).

Also here, because both the feature suite and the parity test read the kernel the same way in
both modes: `conntrack_entries` (``conntrack -L`` in a namespace, parsed) and `Counters`, a
table of the test's own (``ip pt_probe``) that counts matching packets at a hook, independent of
the mode under test (iptables-nft and nft tables coexist: each base chain sees every packet).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from topology import Topology

from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.apply import full_sync
from clew.proxy.iptables.render import render as render_iptables
from clew.proxy.nftables.render import render as render_nft
from clew.proxy.nftables.render import script
from clew.proxy.policy import PortPolicy, decide

MODES = ("iptables", "nftables")
NFT_TABLE = "ip clew"


def with_mode(config: ProxyConfig, mode: str) -> ProxyConfig:
    """``config`` in ``mode``. nftables mode has no localhost NodePorts (kube-proxy's neither)."""
    if mode not in MODES:
        raise ValueError(f"unknown proxy mode {mode!r}")
    if mode == "nftables":
        return replace(config, mode=mode, localhost_nodeports=False)
    return replace(config, mode=mode)


def policies_for(objects: Sequence[dict[str, Any]], config: ProxyConfig) -> list[PortPolicy]:
    snapshot = build_snapshot(objects)
    assert snapshot.rejections == (), snapshot.rejections
    return decide(snapshot, config)


def nft_script(policies: Sequence[PortPolicy], config: ProxyConfig) -> str:
    """The nftables renderer's full script (it replaces clew's table, or creates it)."""
    rendered = render_nft(list(policies), config)
    assert rendered.rejected == (), rendered.rejected
    return script(rendered)


def load(topo: Topology, node: str, objects: Sequence[dict[str, Any]], config: ProxyConfig) -> None:
    """Render ``objects`` for ``node`` with ``config`` and load them in ``config.mode``."""
    policies = policies_for(objects, config)
    if config.mode == "iptables":
        full_sync(topo.ns(node), render_iptables(policies, config))
    else:
        topo.run(node, ["nft", "-f", "-"], input=nft_script(policies, config))


def nft_ruleset(topo: Topology, node: str) -> str:
    """clew's table as ``nft list`` prints it (handles and counters left out)."""
    return topo.run(node, ["nft", "list", "table", *NFT_TABLE.split()]).stdout


# ---------------------------------------------------------------------------- conntrack


@dataclass(frozen=True)
class Flow:
    """One conntrack entry: the original direction and the reply direction's source (the DNAT
    target when the flow was DNATed) and destination (the masquerade address when SNATed)."""

    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_sport: int
    reply_dst: str
    reply_dport: int

    @property
    def dnat(self) -> str | None:
        target = f"{self.reply_src}:{self.reply_sport}"
        return None if target == f"{self.dst}:{self.dport}" else target

    @property
    def snat(self) -> bool:
        """Source-NATed to another address. (A port alone is no sign: conntrack changes the
        source port of a DNATed flow whose new tuple clashes with an existing one, masquerade or
        not; so masquerading to the client's own address does not show here.)"""
        return self.reply_dst != self.src


_TUPLE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


def conntrack_entries(topo: Topology, who: str, args: Sequence[str] = ()) -> list[Flow]:
    """``conntrack -L ARGS`` in ``who``'s namespace (tcp and udp entries)."""
    out = topo.run(who, ["conntrack", "-L", *args]).stdout
    flows = []
    for line in out.splitlines():
        words = line.split()
        if not words or words[0] not in ("tcp", "udp"):
            continue
        tuples = _TUPLE.findall(line)
        if len(tuples) < 2:
            continue
        (s, d, sp, dp), (rs, rd, rsp, rdp) = tuples[0], tuples[1]
        flows.append(Flow(words[0], s, d, int(sp), int(dp), rs, int(rsp), rd, int(rdp)))
    return flows


# ---------------------------------------------------------------------------- counting packets


class Counters:
    """Named packet counters at one hook of a node, in a table of the test's own."""

    TABLE = "pt_probe"

    def __init__(self, topo: Topology, node: str, hook: str, priority: int, rules: dict[str, str]) -> None:
        self.topo, self.node, self.rules = topo, node, rules
        body = "\n".join(f"    {match} counter comment {name!r}".replace("'", '"') for name, match in rules.items())
        self.topo.run(
            node,
            ["nft", "-f", "-"],
            input=f"table ip {self.TABLE} {{\n  chain c {{\n    type filter hook {hook} priority {priority};\n"
            f"{body}\n  }}\n}}\n",
        )

    def read(self) -> dict[str, int]:
        out = self.topo.run(self.node, ["nft", "list", "table", "ip", self.TABLE]).stdout
        found = {}
        for line in out.splitlines():
            m = re.search(r'counter packets (\d+) bytes \d+ comment "([^"]+)"', line)
            if m:
                found[m.group(2)] = int(m.group(1))
        assert set(found) == set(self.rules), out
        return found

    def close(self) -> None:
        self.topo.run(self.node, ["nft", "delete", "table", "ip", self.TABLE])


@contextmanager
def counting(topo: Topology, node: str, hook: str, priority: int, rules: dict[str, str]) -> Iterator[Counters]:
    c = Counters(topo, node, hook, priority, rules)
    try:
        yield c
    finally:
        c.close()
