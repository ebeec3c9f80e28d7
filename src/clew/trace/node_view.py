"""A node as the tracer sees it: rules, addresses, routes, links, neighbours, FDB — plain data.

Built from the JSON that ``ip -j`` prints and the text of ``iptables-save`` (pure parsers here),
read live from a network namespace (`from_netns`, the only kernel access of the tracer) or from
a folder written by ``clew dump`` (`from_dump`), so a colleague's node can be traced offline.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clew.iproute2.routes import parse_routes
from clew.netfilter.nft_json import NftRuleset
from clew.netfilter.rules import Ruleset
from clew.trace.index import ChainIndex

IPv4Net = ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class Address:
    dev: str
    ip: str
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Route:
    """One route. ``type`` is unicast, local, broadcast, blackhole, unreachable or prohibit."""

    dst: IPv4Net
    type: str = "unicast"
    dev: str | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    table: str = "main"
    onlink: bool = False
    metric: int = 0
    protocol: str = "boot"  # who added it: kernel, boot, static, bird (BGP-learned), …


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    kind: str  # veth, bridge, vxlan, loopback, …; "" for a plain device
    mtu: int = 1500
    master: str | None = None
    mac: str | None = None
    vxlan_id: int | None = None
    vxlan_port: int | None = None
    vxlan_local: str | None = None
    up: bool = True


@dataclass(frozen=True, slots=True)
class Neighbour:
    ip: str
    dev: str
    mac: str | None
    state: str = ""


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: str
    dev: str
    dst: str | None  # the remote VTEP for vxlan entries


@dataclass(slots=True)
class NodeView:
    """Everything a trace reads. ``node_names`` maps underlay IPs to node names, when known."""

    ruleset: Ruleset = field(default_factory=Ruleset)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)
    neighbours: list[Neighbour] = field(default_factory=list)
    fdb: list[FdbEntry] = field(default_factory=list)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    node_names: dict[str, str] = field(default_factory=dict)
    bgp_origins: dict[str, str] = field(default_factory=dict)  # prefix → who announced it (bird.txt)
    name: str = ""
    sysctls: dict[str, str] | None = None  # net.ipv4 keys routing decides by (None: not read)
    other_backend: Ruleset | None = None  # iptables-legacy's rules when both backends hold rules
    other_backend_name: str = ""
    ipvs_mode: bool | None = field(default=None, repr=False)  # cache of `ipvs.is_ipvs_node` (None: not yet)
    warnings: list[str] = field(default_factory=list)
    indexes: dict[tuple[str, str], ChainIndex | None] = field(default_factory=dict, repr=False)
    nft: NftRuleset | None = None  # ``nft -j list ruleset``: native tables walked with iptables'

    def local_ips(self) -> set[str]:
        return {a.ip for a in self.addresses}

    def is_local(self, ip: str) -> bool:
        """addrtype LOCAL: 127.0.0.0/8 (always, routes given or not), an address of the node, or
        inside a local-type route."""
        addr = ipaddress.IPv4Address(ip)
        if addr.is_loopback or ip in self.local_ips():
            return True
        return any(r.type == "local" and addr in r.dst for r in self.routes)

    def sysctl(self, key: str, dev: str | None = None) -> int | None:
        """``net.ipv4.conf.<dev|all>.<key>`` (or ``net.ipv4.<key>``) as a number; None when not read.
        For rp_filter and route_localnet the kernel uses the larger of ``all`` and the device's."""
        if self.sysctls is None:
            return None
        if key == "ip_forward":
            value = self.sysctls.get("net.ipv4.ip_forward")
            return int(value) if value is not None and value.isdigit() else None
        values = [self.sysctls.get(f"net.ipv4.conf.{d}.{key}") for d in ("all", dev) if d]
        numbers = [int(v) for v in values if v is not None and v.isdigit()]
        if not numbers:
            return None
        if key == "forwarding":  # the input device's own setting decides
            own = self.sysctls.get(f"net.ipv4.conf.{dev}.forwarding")
            return int(own) if own is not None and own.isdigit() else numbers[0]
        return max(numbers)

    def addresses_of(self, dev: str) -> list[Address]:
        return [a for a in self.addresses if a.dev == dev]


def _net(text: str) -> IPv4Net:
    if text == "default":
        return IPv4Net("0.0.0.0/0")
    return IPv4Net(text if "/" in text else text + "/32", strict=False)


def addresses_from_json(doc: list[dict[str, Any]]) -> list[Address]:
    """``ip -j addr`` → IPv4 addresses."""
    out = []
    for link in doc:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                out.append(Address(link["ifname"], info["local"], int(info.get("prefixlen", 32))))
    return out


def routes_from_json(doc: list[dict[str, Any]]) -> list[Route]:
    """``ip -j route show table all`` → IPv4 routes (other families skipped), read by the one
    ``ip -j route`` parser (`clew.iproute2.routes`, which the kernel layer uses too)."""
    return [
        Route(
            dst=r.dst,
            type=r.type,
            dev=r.dev,
            gateway=str(r.gateway) if r.gateway is not None else None,
            prefsrc=r.prefsrc,
            table=r.table,
            onlink=r.onlink,
            metric=r.metric,
            protocol=r.protocol,
        )
        for r in parse_routes(doc)
    ]


def links_from_json(doc: list[dict[str, Any]]) -> dict[str, Link]:
    """``ip -j -d link`` → links with their kind, MTU, bridge master and vxlan settings."""
    out = {}
    for link in doc:
        info = link.get("linkinfo", {})
        kind = info.get("info_kind", "loopback" if link.get("link_type") == "loopback" else "")
        data = info.get("info_data", {})
        out[link["ifname"]] = Link(
            name=link["ifname"],
            kind=kind,
            mtu=int(link.get("mtu", 1500)),
            master=link.get("master"),
            mac=link.get("address"),
            vxlan_id=data.get("id") if kind == "vxlan" else None,
            vxlan_port=data.get("port") if kind == "vxlan" else None,
            vxlan_local=data.get("local") if kind == "vxlan" else None,
            up="UP" in link.get("flags", []),
        )
    return out


def neighbours_from_json(doc: list[dict[str, Any]]) -> list[Neighbour]:
    """``ip -j neigh`` → IPv4 neighbours."""
    return [
        Neighbour(n["dst"], n.get("dev", ""), n.get("lladdr"), ",".join(n.get("state", [])))
        for n in doc
        if ":" not in n.get("dst", ":")
    ]


def fdb_from_json(doc: list[dict[str, Any]]) -> list[FdbEntry]:
    """``bridge -j fdb`` → entries (the vxlan ones carry ``dst``)."""
    return [FdbEntry(e["mac"], e.get("ifname", e.get("dev", "")), e.get("dst")) for e in doc if "mac" in e]


LEGACY_FILE, NFT_SAVE_FILE = "iptables-legacy-save.txt", "iptables-nft-save.txt"


def has_rules(text: str) -> bool:
    """Whether iptables-save text holds a rule or a policy other than ACCEPT (an empty table is none)."""
    return any(line.startswith("-A ") or (line.startswith(":") and " DROP " in line) for line in text.splitlines())


def _other_backend(view: NodeView, files: dict[str, str]) -> None:
    """When both iptables backends hold rules, both are walked: ``iptables-save.txt`` is the main one
    (whichever ``iptables`` is), the other backend's save is kept in ``other_backend``."""
    from clew.netfilter.iptables_save import parse

    main = files.get("iptables-save.txt", "")
    legacy, nft = files.get(LEGACY_FILE, ""), files.get(NFT_SAVE_FILE, "")
    if not (has_rules(legacy) and has_rules(nft)):
        return
    main_is_legacy = "(nf_tables)" not in main.split("\n", 1)[0]  # legacy says "(legacy)" or nothing
    name, text = ("iptables-nft", nft) if main_is_legacy else ("iptables-legacy", legacy)
    view.other_backend = parse(text, origin=name)
    view.other_backend_name = name
    view.warnings.append(
        f"both iptables backends hold rules: {name}'s tables are walked too, after the same table of the other "
        "(at equal priority the kernel runs them in the order they were registered)"
    )


def sysctls_from_text(text: str) -> dict[str, str]:
    """``sysctl -a`` lines ``key = value``."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def ipsets_from_save(text: str) -> dict[str, list[str]]:
    """``ipset save`` → members of each set."""
    sets: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "create":
            sets.setdefault(parts[1], [])
        elif len(parts) >= 3 and parts[0] == "add":
            sets.setdefault(parts[1], []).append(parts[2])
    return sets


def _json(files: dict[str, str], name: str, warnings: list[str]) -> list[dict[str, Any]]:
    text = files.get(name)
    if text is None or not text.strip():
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        warnings.append(f"{name}:{e.lineno}: not valid JSON ({e.msg}); ignored")
        return []
    if not isinstance(doc, list):
        warnings.append(f"{name}: expected a JSON list; ignored")
        return []
    return [d for d in doc if isinstance(d, dict)]


def from_files(files: dict[str, str], *, name: str = "", node_names: dict[str, str] | None = None) -> NodeView:
    """A NodeView from a dump's files (see `clew.kernel.snapshot.COMMANDS` for the names)."""
    from clew.netfilter.iptables_save import parse

    warnings: list[str] = []
    ruleset = parse(files.get("iptables-save.txt", ""), origin="iptables-save.txt")
    view = NodeView(
        ruleset=ruleset,
        name=name,
        node_names=dict(node_names or {}),
        warnings=warnings,
    )
    try:
        view.addresses = addresses_from_json(_json(files, "ip-addr.json", warnings))
        view.routes = routes_from_json(_json(files, "ip-route.json", warnings))
        view.links = links_from_json(_json(files, "ip-link.json", warnings))
        view.neighbours = neighbours_from_json(_json(files, "ip-neigh.json", warnings))
        view.fdb = fdb_from_json(_json(files, "bridge-fdb.json", warnings))
    except (KeyError, TypeError, ValueError) as e:
        warnings.append(f"a dump file has an unexpected shape ({e!r}); the view may be incomplete")
    view.ipsets = ipsets_from_save(files.get("ipset.txt", ""))
    _other_backend(view, files)
    if files.get("sysctl.txt", "").strip():
        view.sysctls = sysctls_from_text(files["sysctl.txt"])
    rules_warning = policy_rules_warning(_json(files, "ip-rule.json", warnings))
    if rules_warning:
        warnings.append(rules_warning)
    view.bgp_origins = bgp_origins_from_text(files.get("bird.txt", ""))
    warnings.extend(ruleset.warnings)
    view.nft = _nft(files.get("nft-ruleset.json", ""), warnings)
    return view


def _nft(text: str, warnings: list[str]) -> NftRuleset | None:
    """The dump's ``nft -j list ruleset`` (None when absent or empty: iptables only)."""
    from clew.netfilter.nft_json import NftError, parse

    if not text.strip():
        return None
    try:
        nft = parse(text, origin="nft-ruleset.json")
    except NftError as e:
        warnings.append(f"{e}; nftables tables ignored")
        return None
    warnings.extend(nft.warnings)
    return nft if nft.tables else None


DUMP_FILES = ("iptables-save.txt", "ip-addr.json", "ip-route.json", "ip-link.json", "ip-neigh.json",
              "bridge-fdb.json", "ipset.txt", "ip-rule.json", "sysctl.txt", LEGACY_FILE, NFT_SAVE_FILE,
              "nft-ruleset.json", "bird.txt")  # fmt: skip
DEFAULT_RULE_TABLES = {"local", "main", "default"}


def policy_rules_warning(doc: list[dict[str, Any]]) -> str | None:
    """``ip -j rule`` beyond the default three (local, main, default): the trace's route lookup
    follows only those, so say it."""
    extra = [
        r
        for r in doc
        if str(r.get("table", "")) not in DEFAULT_RULE_TABLES or r.get("fwmark") or r.get("src", "all") != "all"
    ]
    if not extra:
        return None
    shown = "; ".join(
        f"{r.get('priority', '?')}: " + " ".join(f"{k} {r[k]}" for k in ("src", "fwmark", "iif", "table") if k in r)
        for r in extra[:4]
    )
    return (
        f"ip rule: {len(extra)} policy routing rule(s) beyond local/main/default ({shown}): the trace looks up "
        "local, main and default only"
    )


def bgp_origins_from_text(text: str) -> dict[str, str]:
    """From BIRD's ``show route all`` (a dump's ``bird.txt``): each BGP route's origin — the
    announcing node's address (``BGP.originator_id`` behind a route reflector, else
    ``BGP.next_hop``: the node itself in a mesh, an external peer's own address with eBGP)."""
    found: dict[str, dict[str, str]] = {}
    prefix = None
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            cols = line.split()
            prefix = cols[0] if "/" in cols[0] and len(cols) > 2 and cols[1] == "unicast" else None
        elif prefix is not None and line.strip().startswith(("BGP.next_hop:", "BGP.originator_id:")):
            key, _, value = line.strip().partition(": ")
            found.setdefault(prefix, {})[key] = value.split()[0] if value.split() else ""
    return {p: a.get("BGP.originator_id") or a.get("BGP.next_hop", "") for p, a in found.items()}


def from_dump(folder: str | Path) -> NodeView:
    """A NodeView from a folder written by ``clew dump``."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a dump folder")
    files = {n: (root / n).read_text(encoding="utf-8") for n in DUMP_FILES if (root / n).is_file()}
    if "iptables-save.txt" not in files:
        raise FileNotFoundError(f"{root}: no iptables-save.txt in it (written by clew dump?)")
    meta: dict[str, Any] = {}
    if (root / "meta.json").is_file():
        try:
            meta = json.loads((root / "meta.json").read_text())
        except json.JSONDecodeError:
            meta = {}
    return from_files(files, name=str(meta.get("netns", root.name)), node_names=meta.get("node_names") or {})


def from_netns(netns: str | None, *, node_names: dict[str, str] | None = None) -> NodeView:
    """A NodeView read live from a network namespace (read-only; needs root): a name, a namespace
    file's path (``/proc/PID/ns/net``), or None for the namespace this process runs in."""
    from clew.kernel.namespace import Namespace
    from clew.kernel.snapshot import capture

    where = Namespace.of(netns)
    try:
        there = where.exists()
    except ValueError:
        there = False
    if not there:
        raise FileNotFoundError(f"network namespace {netns!r} does not exist")
    return from_files(capture(where), name=netns or "this namespace", node_names=node_names)
