"""The node facts every check reads: plain values parsed from the files a dump holds.

The same file names are read live (`collect`) or from a ``clew dump`` folder (`dump_files`), so
the two give the same facts. A value that was not collected is ``None`` (a tool missing, an old
dump): the checks that need it answer ``skip`` rather than guess.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

from clew.doctor.nft_probe import Ruleset as NftRuleset
from clew.doctor.nft_probe import fill_devices, ruleset_from_json
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import Ruleset
from clew.trace.node_view import Address, Route, addresses_from_json, routes_from_json

# files beyond the trace's (clew.kernel.snapshot.COMMANDS) that the doctor reads
SYSCTL_FILE = "sysctl.txt"
LEGACY_FILE = "iptables-legacy-save.txt"
NFT_SAVE_FILE = "iptables-nft-save.txt"
NFT_RULESET_FILE = "nft-ruleset.txt"
NFT_JSON_FILE = "nft-ruleset.json"  # nft -j list ruleset: native tables, read by forward.policy
CONNTRACK_STAT_FILE = "conntrack-stat.txt"
CONNTRACK_AFTER_FILE = "conntrack-stat-after.txt"  # the same, read again after the sample
SAMPLE_FILE = "cpu-sample.txt"  # "interval_s S" then /proc/stat's cpu line before and after
CONNTRACK_UDP_FILE = "conntrack-udp.txt"  # conntrack -L -p udp
METRICS_FILE = "proxy-metrics.txt"  # "# curl exit N" then the proxy's /metrics text
METRICS_URL = "http://127.0.0.1:10249/metrics"  # kube-proxy's default metricsBindAddress
ETHTOOL_FILE = "ethtool-k.txt"  # "# dev NAME" then ``ethtool -k NAME``, for each vxlan device
POD_LINKS_FILE = "pod-links.json"  # {nsid: {"netns": NAME | null, "links": ip -j link of it | null}}
HEALTHZ_FILE = "proxy-healthz.txt"  # "# curl exit N", "# http CODE", then the proxy's /healthz body
HEALTHZ_URL = "http://127.0.0.1:10256/healthz"  # kube-proxy's default healthzBindAddress (0.0.0.0:10256)
HOST_FILE = "host.txt"  # "key value" lines: kernel, cpus, neighbour gc thresholds (host-wide)
BIRD_FILE = "bird.txt"  # the namespace's BIRD (clew.kernel.bird.state_text): "# show protocols", "# show route all"


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Two reads of /proc/stat's ``cpu`` line ``interval_s`` apart (fields in USER_HZ ticks)."""

    interval_s: float
    before: tuple[int, ...]
    after: tuple[int, ...]

    def share(self, field: int) -> float:
        """The share of all CPU time spent in ``field`` (7 = steal) over the sample."""
        deltas = [b - a for a, b in zip(self.before, self.after, strict=False)]
        total = sum(deltas[:8])  # user … steal; guest times are already counted in user/nice
        return deltas[field] / total if total > 0 and len(deltas) > field else 0.0


@dataclass(frozen=True, slots=True)
class Link:
    """A link as the doctor needs it: MTU, bridge port state (hairpin), vxlan settings."""

    name: str
    kind: str
    mtu: int
    master: str | None = None
    hairpin: bool | None = None  # None: not a bridge port, or not reported
    vxlan_port: int | None = None
    vxlan_local: str | None = None
    vxlan_dev: str | None = None  # the underlay device the vxlan device sends on
    up: bool = True
    peer_nsid: int | None = None  # a veth's peer namespace (as this namespace numbers it)
    peer_index: int | None = None  # the peer's ifindex there


@dataclass(frozen=True, slots=True)
class PodNs:
    """A bridge port's peer namespace: its name (None: unnamed, not readable) and its links by
    ifindex as ``(name, mtu)`` (None: named but its links could not be read)."""

    netns: str | None
    links: dict[int, tuple[str, int]] | None


@dataclass(frozen=True, slots=True)
class NodeObject:
    """A Node object of the cluster (``--objects``): name, pod subnet, internal IP."""

    name: str
    pod_cidr: str | None
    internal_ip: str | None


@dataclass(frozen=True, slots=True)
class Objects:
    """The cluster objects the doctor compares with: Nodes, and Services that get rules."""

    nodes: tuple[NodeObject, ...] = ()
    services: frozenset[str] = frozenset()  # "namespace/name" of Services with a ClusterIP


@dataclass(slots=True)
class NodeFacts:
    name: str
    sysctls: dict[str, str] | None = None
    links: dict[str, Link] = field(default_factory=dict)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    fdb: list[dict[str, Any]] = field(default_factory=list)
    ruleset: Ruleset | None = None  # what the default iptables shows
    default_backend: str | None = None  # "legacy" | "nf_tables", from iptables-save's header (None: unknown)
    legacy_save: str | None = None
    nft_save: str | None = None
    nft_ruleset: str | None = None
    nft: NftRuleset | None = None  # nft -j list ruleset (None: not collected)
    conntrack_stats: dict[str, int] | None = None  # summed over CPUs
    conntrack_after: dict[str, int] | None = None  # the same after the sample
    cpu_sample: CpuSample | None = None
    udp_flows: list[Flow] | None = None
    metrics: Metrics | None = None
    offloads: dict[str, dict[str, str]] | None = None  # device → feature → "on" / "off"
    healthz: Healthz | None = None
    bird: Bird | None = None  # None: not collected (an older dump)
    pod_links: dict[int, PodNs] | None = None  # the peer namespaces of bridge ports, by nsid
    host: dict[str, str] = field(default_factory=dict)
    objects: Objects | None = None
    warnings: list[str] = field(default_factory=list)

    def sysctl(self, key: str) -> str | None:
        return None if self.sysctls is None else self.sysctls.get(key)

    def dev_sysctl(self, dev: str, key: str) -> str | None:
        """``net.ipv4.conf.<dev>.<key>`` (sysctl spells a dot in a device name as ``/``)."""
        return self.sysctl(f"net.ipv4.conf.{dev.replace('.', '/')}.{key}")

    def bridges(self) -> list[Link]:
        return [link for link in self.links.values() if link.kind == "bridge"]

    def ports(self, bridge: str) -> list[Link]:
        return sorted((link for link in self.links.values() if link.master == bridge), key=lambda x: x.name)

    def vxlans(self) -> list[Link]:
        return [link for link in self.links.values() if link.kind == "vxlan"]

    def pod_bridge(self) -> tuple[Link, ipaddress.IPv4Network] | None:
        """The bridge holding the node's pod subnet (the first bridge with an IPv4 address)."""
        for bridge in sorted(self.bridges(), key=lambda b: (b.name != "cni0", b.name)):
            for a in self.addresses:
                if a.dev == bridge.name:
                    return bridge, ipaddress.IPv4Network(f"{a.ip}/{a.prefixlen}", strict=False)
        return None

    def underlay(self, vxlan: Link | None = None) -> Link | None:
        """The device the node's traffic leaves on: the vxlan device's, else the default route's."""
        if vxlan is not None:
            if vxlan.vxlan_dev in self.links:
                return self.links[vxlan.vxlan_dev]
            for a in self.addresses:
                if a.ip == vxlan.vxlan_local and a.dev in self.links:
                    return self.links[a.dev]
        for r in self.routes:
            if r.table == "main" and r.dst.prefixlen == 0 and r.dev in self.links:
                return self.links[r.dev]
        return None


def links_from_json(doc: list[dict[str, Any]]) -> dict[str, Link]:
    """``ip -j -d link`` → links (the trace's view lacks bridge-port and vxlan-device details)."""
    out = {}
    for link in doc:
        info = link.get("linkinfo", {})
        kind = info.get("info_kind", "loopback" if link.get("link_type") == "loopback" else "")
        data = info.get("info_data", {}) if kind == "vxlan" else {}
        slave = info.get("info_slave_data", {}) if info.get("info_slave_kind") == "bridge" else {}
        hairpin = slave.get("hairpin")
        out[link["ifname"]] = Link(
            name=link["ifname"],
            kind=kind,
            mtu=int(link.get("mtu", 1500)),
            master=link.get("master"),
            hairpin=bool(hairpin) if hairpin is not None else None,
            vxlan_port=data.get("port"),
            vxlan_local=data.get("local"),
            vxlan_dev=data.get("link"),
            up="UP" in link.get("flags", []),
            peer_nsid=link.get("link_netnsid") if isinstance(link.get("link_netnsid"), int) else None,
            peer_index=link.get("link_index") if isinstance(link.get("link_index"), int) else None,
        )
    return out


def pod_links_from_json(doc: dict[str, Any]) -> dict[int, PodNs]:
    """`POD_LINKS_FILE` → nsid → the peer namespace's name and links."""
    out = {}
    for nsid, entry in doc.items():
        links = entry.get("links")
        by_index = None
        if isinstance(links, list):
            by_index = {int(x["ifindex"]): (str(x["ifname"]), int(x.get("mtu", 1500))) for x in links}
        out[int(nsid)] = PodNs(entry.get("netns"), by_index)
    return out


def sysctls_from_text(text: str) -> dict[str, str]:
    """``sysctl -a`` lines ``key = value``."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def conntrack_stats_from_text(text: str) -> dict[str, int] | None:
    """``/proc/net/stat/nf_conntrack``: a header, then one line of hex counters per CPU (summed;
    ``entries`` is per table, so it is taken once)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    header, rows = lines[0], lines[1:]
    try:
        values = [[int(v, 16) for v in row] for row in rows]
    except ValueError:
        return None
    out = {name: sum(row[i] for row in values if i < len(row)) for i, name in enumerate(header)}
    if "entries" in out:
        out["entries"] = values[0][header.index("entries")]
    return out


@dataclass(frozen=True, slots=True)
class Flow:
    """One conntrack entry: the original and the reply direction (ip, port each)."""

    orig_src: str
    orig_dst: str
    orig_dport: int
    reply_src: str
    reply_sport: int
    timeout: int


def flows_from_text(text: str) -> list[Flow]:
    """``conntrack -L`` lines → flows (lines without two full tuples are skipped)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        pairs = [f.split("=", 1) for f in fields if "=" in f]
        src = [v for k, v in pairs if k == "src"]
        dst = [v for k, v in pairs if k == "dst"]
        sport = [v for k, v in pairs if k == "sport"]
        dport = [v for k, v in pairs if k == "dport"]
        if len(src) < 2 or len(dst) < 2 or len(sport) < 2 or len(dport) < 2:
            continue
        try:
            out.append(Flow(src[0], dst[0], int(dport[0]), src[1], int(sport[1]), int(fields[2])))
        except (ValueError, IndexError):
            continue
    return out


@dataclass(frozen=True, slots=True)
class Healthz:
    """The proxy's /healthz as read: curl's exit code, the HTTP status (0: none), the JSON body
    (None: not JSON)."""

    curl_exit: int
    http: int
    body: dict[str, Any] | None


def healthz_from_text(text: str) -> Healthz | None:
    head: dict[str, int] = {}
    rest = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[:2] == ["#", "http"] and parts[2].isdigit():
            head["http"] = int(parts[2])
        elif len(parts) == 4 and parts[:3] == ["#", "curl", "exit"] and parts[3].lstrip("-").isdigit():
            head["curl"] = int(parts[3])
        else:
            rest.append(line)
    if "curl" not in head:
        return None
    try:
        body = json.loads("\n".join(rest))
    except ValueError:
        body = None
    return Healthz(head["curl"], head.get("http", 0), body if isinstance(body, dict) else None)


@dataclass(frozen=True, slots=True)
class Metrics:
    """The proxy's /metrics as read: curl's exit code (0 answered, 7 refused, 28 timed out) and
    the unlabelled samples (labelled ones summed per name)."""

    curl_exit: int
    values: dict[str, float]


def metrics_from_text(text: str) -> Metrics | None:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# curl exit "):
        return None
    try:
        code = int(lines[0].removeprefix("# curl exit "))
    except ValueError:
        return None
    values: dict[str, float] = {}
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        name = name.split("{", 1)[0]
        if "}" in rest:  # a label value with a space
            rest = rest.rsplit("}", 1)[1]
        try:
            values[name] = values.get(name, 0.0) + float(rest.split()[0])
        except (ValueError, IndexError):
            continue
    return Metrics(code, values)


def offloads_from_text(text: str) -> dict[str, dict[str, str]]:
    """`ETHTOOL_FILE`'s text → device → feature → on/off (``[fixed]`` and the like dropped)."""
    out: dict[str, dict[str, str]] = {}
    features: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("# dev "):
            features = out.setdefault(line.removeprefix("# dev ").strip(), {})
        elif features is not None and ":" in line:
            name, _, value = line.strip().partition(":")
            if value.split():
                features[name] = value.split()[0]
    return out


def cpu_sample_from_text(text: str) -> CpuSample | None:
    """`SAMPLE_FILE`'s text → the sample (None when it is not two ``cpu`` lines)."""
    lines = text.splitlines()
    try:
        interval = float(lines[0].split()[1])
        before, after = (tuple(int(v) for v in line.split()[1:]) for line in lines[1:3])
    except (IndexError, ValueError):
        return None
    return CpuSample(interval, before, after)


def _json_list(files: dict[str, str], name: str, warnings: list[str]) -> list[dict[str, Any]]:
    text = files.get(name, "")
    if not text.strip():
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        warnings.append(f"{name}:{e.lineno}: not valid JSON ({e.msg}); ignored")
        return []
    return [d for d in doc if isinstance(d, dict)] if isinstance(doc, list) else []


@dataclass(frozen=True, slots=True)
class Bird:
    """The node's BIRD as ``bird.txt`` records it: ``pid`` None when no BIRD runs in the
    namespace; ``protocols`` / ``routes``: ``birdc show …`` output, None when birdc failed
    (``error`` says why)."""

    pid: int | None = None
    socket: str | None = None
    protocols: str | None = None
    routes: str | None = None
    error: str | None = None

    def route_prefixes(self) -> dict[str, str]:
        """prefix → the protocol it came from (``n_peer_…``, ``own_subnet``), from ``show route``."""
        found = {}
        for line in (self.routes or "").splitlines():
            cols = line.split()
            if len(cols) >= 3 and not line[0].isspace() and "/" in cols[0] and cols[2].startswith("["):
                found[cols[0]] = cols[2].lstrip("[")
        return found


def bird_to_text(pid: int | None, socket: str | None, sections: dict[str, str | None], error: str | None) -> str:
    """``bird.txt``'s text as `clew.kernel.bird.state_text` writes it (for tests that write faults)."""
    if pid is None:
        return "# bird none\n"
    parts = [f"# bird pid {pid} socket {socket}\n"]
    if error is not None:
        parts.append(f"# error {error}\n")
    for what, text in sections.items():
        if text is not None:
            parts.append(f"# show {'route all' if what == 'route' else what}\n{text.rstrip()}\n")
    return "".join(parts)


def bird_from_text(text: str) -> Bird:
    head, *lines = text.splitlines() or [""]
    m = re.fullmatch(r"# bird pid (\d+) socket (.+)", head)
    if m is None:
        return Bird()
    sections: dict[str, list[str]] = {}
    error, current = None, None
    for line in lines:
        if line.startswith("# error "):
            error = line[len("# error ") :]
        elif line.startswith("# show "):
            current = line[len("# show ") :]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    got = {k: "\n".join(v) for k, v in sections.items()}
    return Bird(int(m.group(1)), m.group(2), got.get("protocols"), got.get("route all", got.get("route")), error)


def from_files(files: dict[str, str], *, name: str, objects: Objects | None = None) -> NodeFacts:
    """The facts from a dump's files (names: `clew.kernel.snapshot.COMMANDS` and this module's)."""
    warnings: list[str] = []
    facts = NodeFacts(name=name, objects=objects, warnings=warnings)
    if SYSCTL_FILE in files:
        facts.sysctls = sysctls_from_text(files[SYSCTL_FILE])
    try:
        facts.links = links_from_json(_json_list(files, "ip-link.json", warnings))
        facts.addresses = addresses_from_json(_json_list(files, "ip-addr.json", warnings))
        facts.routes = routes_from_json(_json_list(files, "ip-route.json", warnings))
    except (KeyError, TypeError, ValueError) as e:
        warnings.append(f"a link, address or route file has an unexpected shape ({e!r})")
    facts.neighbours = _json_list(files, "ip-neigh.json", warnings)
    facts.fdb = _json_list(files, "bridge-fdb.json", warnings)
    if "iptables-save.txt" in files:
        facts.ruleset = parse(files["iptables-save.txt"], origin="iptables-save.txt")
        m = re.search(r"^# Generated by iptables-save v\S+ \((legacy|nf_tables)\)", files["iptables-save.txt"], re.M)
        facts.default_backend = m.group(1) if m else None
    facts.legacy_save = files.get(LEGACY_FILE)
    facts.nft_save = files.get(NFT_SAVE_FILE)
    facts.nft_ruleset = files.get(NFT_RULESET_FILE)
    if files.get(NFT_JSON_FILE, "").strip():
        try:
            facts.nft = ruleset_from_json(json.loads(files[NFT_JSON_FILE]))
            fill_devices(facts.nft, files.get(NFT_RULESET_FILE, ""))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            warnings.append(f"{NFT_JSON_FILE}: not an nft -j ruleset ({e!r}); ignored")
    if CONNTRACK_STAT_FILE in files:
        facts.conntrack_stats = conntrack_stats_from_text(files[CONNTRACK_STAT_FILE])
    if CONNTRACK_AFTER_FILE in files:
        facts.conntrack_after = conntrack_stats_from_text(files[CONNTRACK_AFTER_FILE])
    if ETHTOOL_FILE in files:
        facts.offloads = offloads_from_text(files[ETHTOOL_FILE])
    if files.get(POD_LINKS_FILE, "").strip():
        try:
            facts.pod_links = pod_links_from_json(json.loads(files[POD_LINKS_FILE]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            warnings.append(f"{POD_LINKS_FILE}: unexpected shape ({e!r}); ignored")
    if HEALTHZ_FILE in files:
        facts.healthz = healthz_from_text(files[HEALTHZ_FILE])
    if METRICS_FILE in files:
        facts.metrics = metrics_from_text(files[METRICS_FILE])
    if CONNTRACK_UDP_FILE in files:
        facts.udp_flows = flows_from_text(files[CONNTRACK_UDP_FILE])
    if BIRD_FILE in files:
        facts.bird = bird_from_text(files[BIRD_FILE])
    if SAMPLE_FILE in files:
        facts.cpu_sample = cpu_sample_from_text(files[SAMPLE_FILE])
    facts.host = dict(line.split(" ", 1) for line in files.get(HOST_FILE, "").splitlines() if " " in line)
    return facts
