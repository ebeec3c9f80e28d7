"""Small stand-ins for the nftables sync's unit tests: a strict in-memory interpreter of the nft
commands the sync writes (`MiniNft`: refuses what the kernel refuses — a missing chain, set or
element, deleting a referenced chain or set, re-adding a key with another value — and applies
a transaction all or nothing), and a tiny renderer in clew's layout (`MiniRenderer`: dst groups,
hairpin, no-endpoint sets, one affinity chain and set, a rejected port named ``bad``).

They pin the *sync engine*'s behaviour independently of the real renderer's details."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clew.kernel.errors import KernelError
from clew.model.proxy_config import ProxyConfig
from clew.proxy.nftables.layout import Chain, Element, Group, NftRendered, PortNft, Rejected, SetDecl
from clew.proxy.policy import PortPolicy

_ELEM = re.compile(r"^(add|delete) element ip clew (\S+) \{ (.*?)(?: comment \"([^\"]*)\")?(?: : (.*?))? \}$")


@dataclass
class _Table:
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)  # name → spec
    elements: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)


@dataclass
class MiniNft:
    table: _Table | None = None
    log: list[str] = field(default_factory=list)  # every script run
    fail_next: str | None = None
    gen: int = 0

    # -- NftKernel
    def run(self, script: str) -> None:
        if self.fail_next is not None:
            why, self.fail_next = self.fail_next, None
            raise KernelError(None, "nft", why)
        saved = copy.deepcopy(self.table)
        try:
            for line in script.splitlines():
                if line.strip():
                    self._one(line.strip())
        except KernelError:
            self.table = saved
            raise
        self.log.append(script)
        self.gen += 1

    def check(self, script: str) -> None:
        saved = copy.deepcopy(self.table)
        try:
            self.run(script)
        finally:
            self.table = saved

    def list_json(self, what: str = "ruleset") -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        if self.table is not None:
            items.append({"table": {"family": "ip", "name": "clew"}})
            items += [{"chain": {"family": "ip", "table": "clew", "name": c}} for c in self.table.chains]
        return {"nftables": items}

    def has_table(self, family: str, name: str) -> bool:
        return self.table is not None and (family, name) == ("ip", "clew")

    def close(self) -> None:
        pass

    # -- the interpreter
    def _err(self, line: str, why: str) -> KernelError:
        return KernelError(None, "nft", f"{why}: {line}")

    def _t(self, line: str) -> _Table:
        if self.table is None:
            raise self._err(line, "No such file or directory (table)")
        return self.table

    def _refs(self, name: str, *, chain: bool) -> bool:
        t = self.table
        assert t is not None
        pat = re.compile(rf"(jump|goto) {re.escape(name)}(\s|$)") if chain else re.compile(rf"@{re.escape(name)}(\s|$)")
        if any(pat.search(r) for rules in t.chains.values() for r in rules):
            return True
        return chain and any(v is not None and pat.search(v) for els in t.elements.values() for v, _ in els.values())

    def _one(self, line: str) -> None:
        w = line.split()
        if w[:2] == ["add", "table"]:
            self.table = self.table or _Table()
        elif w[:2] == ["delete", "table"]:
            self._t(line)
            self.table = None
        elif w[:2] == ["add", "chain"]:
            self._t(line).chains.setdefault(w[4], [])
        elif w[:2] == ["flush", "chain"]:
            t = self._t(line)
            if w[4] not in t.chains:
                raise self._err(line, "No such file or directory (chain)")
            t.chains[w[4]] = []
        elif w[:2] == ["delete", "chain"]:
            t = self._t(line)
            if w[4] not in t.chains:
                raise self._err(line, "No such file or directory (chain)")
            if t.chains[w[4]] or self._refs(w[4], chain=True):
                raise self._err(line, "Device or resource busy")
            del t.chains[w[4]]
        elif w[:2] == ["add", "rule"]:
            t = self._t(line)
            if w[4] not in t.chains:
                raise self._err(line, "No such file or directory (chain)")
            body = line.split(" ", 5)[5]
            for ref in re.findall(r"@(\S+)", body):
                if ref not in t.sets:
                    raise self._err(line, f"No such file or directory (set {ref})")
            for ref in re.findall(r"(?:jump|goto) (\S+)", body):
                if ref not in t.chains:
                    raise self._err(line, f"No such file or directory (chain {ref})")
            t.chains[w[4]].append(body)
        elif w[0] == "add" and w[1] in ("set", "map"):
            t = self._t(line)
            spec = line.split("{", 1)[1].rsplit("}", 1)[0].strip()
            if t.sets.get(w[4], spec) != spec:
                raise self._err(line, "File exists (another spec)")
            t.sets[w[4]] = spec
            t.elements.setdefault(w[4], {})
        elif w[0] == "delete" and w[1] in ("set", "map"):
            t = self._t(line)
            if w[4] not in t.sets:
                raise self._err(line, "No such file or directory (set)")
            if self._refs(w[4], chain=False):
                raise self._err(line, "Device or resource busy")
            del t.sets[w[4]], t.elements[w[4]]
        elif w[1] == "element":
            m = _ELEM.match(line)
            assert m, line
            op, name, key, comment, value = m.groups()
            t = self._t(line)
            if name not in t.sets:
                raise self._err(line, "No such file or directory (set)")
            els = t.elements[name]
            if op == "delete":
                if key not in els:
                    raise self._err(line, "No such file or directory (element)")
                del els[key]
            else:
                if key in els and els[key][0] != value:
                    raise self._err(line, "Device or resource busy (key with another value)")
                for ref in re.findall(r"goto (\S+)", value or ""):
                    if ref not in t.chains:
                        raise self._err(line, f"No such file or directory (chain {ref})")
                els.setdefault(key, (value, comment or ""))
        else:
            raise self._err(line, "syntax error")

    def state(self) -> Any:
        """Comparable content (chains' rules in order, sets' specs, elements with values and comments)."""
        if self.table is None:
            return None
        t = self.table
        return (dict(t.chains), dict(t.sets), {k: dict(v) for k, v in t.elements.items()})


FIXED_CHAINS = ("services", "dst", "masquerading")
FIXED_SETS = {
    "hairpin": "type ipv4_addr . ipv4_addr",
    "no-endpoint-reject": "type ipv4_addr . inet_proto . inet_service",
}
FIXED_MAPS = {"service-ips": "type ipv4_addr . inet_proto . inet_service : verdict"}


class MiniRenderer:
    """A toy renderer in clew's layout (ClusterIPs only)."""

    calls: int = 0

    def render_port(self, policy: PortPolicy, config: ProxyConfig) -> PortNft | Rejected:
        self.calls += 1
        key = f"{policy.spn}/{policy.proto}"
        if policy.port_name == "bad":
            return Rejected(key, policy.service_key, "port name 'bad' cannot be expressed")
        eps = policy.cluster_endpoints
        spn, proto, vip = policy.spn, policy.proto, policy.cluster_ip
        elements: list[Element] = []
        groups: frozenset[Group] = frozenset()
        chains: tuple[Chain, ...] = ()
        sets: tuple[SetDecl, ...] = ()
        if not eps:
            elements.append(Element("no-endpoint-reject", f"{vip} . {proto} . {policy.port}", None, spn))
        elif policy.affinity_timeout:
            name = f"service-{policy.namespace}/{policy.name}/{proto}/{policy.port_name}"
            aff = f"affinity-{policy.namespace}/{policy.name}/{proto}/{policy.port_name}"
            sets = (SetDecl(aff, f"type ipv4_addr ; flags dynamic,timeout ; timeout {policy.affinity_timeout}s"),)
            rules = [f"ip saddr @{aff} dnat to {eps[0].ip}"] + [f'dnat to {e.ip} comment "{e.key}"' for e in eps]
            chains = (Chain(name, tuple(rules)),)
            elements.append(Element("service-ips", f"{vip} . {proto} . {policy.port}", f"goto {name}", spn))
        else:
            g = Group("dst", proto, len(eps))
            groups = frozenset({g})
            elements += [
                Element(g.map_name, f"{vip} . {policy.port} . {i}", f"{e.ip} . {e.port}", spn)
                for i, e in enumerate(eps)
            ]
        elements += [Element("hairpin", f"{e.ip} . {e.ip}") for e in policy.all_reachable]
        return PortNft(key, policy.service_key, spn, tuple(elements), groups, chains, sets)

    def fixed(self, config: ProxyConfig, groups: frozenset[Group]) -> Sequence[str]:
        out = ["add table ip clew"]
        out += [f"add chain ip clew {c}" for c in FIXED_CHAINS]
        out += [f"add set ip clew {n} {{ {s} ; }}" for n, s in FIXED_SETS.items()]
        out += [f"add map ip clew {n} {{ {s} ; }}" for n, s in FIXED_MAPS.items()]
        for g in sorted(groups):
            out.append(
                f"add map ip clew {g.map_name} {{ typeof ip daddr . {g.proto} dport . numgen random mod {g.n} ; }}"
            )
        out.append("add rule ip clew services ip daddr . meta l4proto . th dport vmap @service-ips")
        out.append("add rule ip clew services jump dst")
        for g in sorted(groups):
            key = f"ip daddr . {g.proto} dport . numgen random mod {g.n}"
            out.append(f"add rule ip clew dst dnat ip to {key} map @{g.map_name}")
        out.append("add rule ip clew masquerading ip saddr . ip daddr @hairpin masquerade")
        return out

    def script(self, rendered: NftRendered) -> str:
        out = list(rendered.fixed)
        for p in rendered.ports:
            out += [f"add {'map' if s.is_map else 'set'} ip clew {s.name} {{ {s.spec} }}" for s in p.sets]
            for c in p.chains:
                out.append(f"add chain ip clew {c.name}")
                out += [f"add rule ip clew {c.name} {r}" for r in c.rules]
        seen: set[tuple[str, str]] = set()
        for p in rendered.ports:
            for e in p.elements:
                if (e.set, e.key) not in seen:
                    seen.add((e.set, e.key))
                    out.append(e.add())
        return "\n".join(out) + "\n"
