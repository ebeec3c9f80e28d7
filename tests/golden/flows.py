"""Flow tables: packets made from kube-proxy's decisions, traced through clew's rules.

Three pieces, kept apart on purpose:

* **a node** (`Node`, `node_for`): a `NodeView` of the render loaded as ``iptables-restore``
  would (``text(standalone=True)``, parsed like ``iptables-save``), the node's IPv4 addresses on
  ``eth0`` and 127.0.0.1 on ``lo``, and a small routing table: local routes in table ``local``,
  the connected subnets, the node's pod range on the pod bridge (``cni0``) and a default route
  via a gateway on ``eth0``;
* **an oracle** (`Oracle`): what kube-proxy does to a packet, written from its documented
  semantics and a `PortPolicy` (its per-port decisions) alone — it never looks at rules;
* **the comparison** (`run`, `table`): the tracer's outcomes folded into rows of (verdict, DNAT
  target, probability, masquerade) and set-compared with the oracle's rows, every check one row
  of a table that a failure message prints.

The oracle, per packet kind (``internal`` = ClusterIP, ``external`` = NodePort, externalIP, LB IP):

* internal: the filter verdict (REJECT: no endpoints anywhere; DROP: iTP=Local without a local
  endpoint), else each endpoint of the internal set (local ones for iTP=Local) with 1/n;
  masquerade if ``masqueradeAll``, or if a local-traffic detector exists and does not call the
  packet pod traffic;
* external: REJECT without endpoints (not for the node's own packets to addresses elsewhere:
  KUBE-EXTERNAL-SERVICES hangs off INPUT and FORWARD only); LB traffic from a source outside
  loadBalancerSourceRanges → DROP (KUBE-PROXY-FIREWALL); eTP=Local: the node's own traffic
  and detected pod traffic short-circuit to the cluster-wide endpoints (only the node's is
  masqueraded), other traffic goes to local endpoints unmasqueraded, or is dropped when there
  is none; eTP=Cluster: cluster endpoints, masqueraded;
* NodePorts answer only on addresses nodePortAddresses admits (all local addresses when empty;
  127.0.0.1 only with localhost NodePorts); elsewhere a NodePort without usable endpoints is
  still refused by the filter rule (it matches any local destination), else nothing happens;
* hairpin: a packet DNATed back to its own source is masqueraded;
* a port or protocol no Service uses on a ClusterIP: no Service, delivered as it is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from scenario import Scenario

from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig
from clew.netfilter.iptables_save import parse
from clew.proxy.iptables.render import render
from clew.proxy.policy import Endpoint, PortPolicy, decide
from clew.sources.manifests import load_objects
from clew.trace.engine import trace
from clew.trace.node_view import Address, Link, NodeView, Route
from clew.trace.packet import Packet, TraceResult

Net = ipaddress.IPv4Network
OUTSIDE = "203.0.113.9"  # TEST-NET-3: a client on the internet, arriving on eth0
OUTSIDE_CANDIDATES = ("203.0.113.9", "198.51.100.7", "192.0.2.77", "203.0.113.200", "100.64.7.7")
LOOPBACK = "127.0.0.1"
PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_POD_NET = "10.0.0.0/8"


def _v4(text: str) -> bool:
    return ":" not in text


def _net(text: str) -> Net:
    return Net(text.strip(), strict=False)


# ---------------------------------------------------------------------------------------------
# The node


@dataclass(frozen=True)
class Node:
    """A node's view plus the facts the packet generator needs about it."""

    view: NodeView
    config: ProxyConfig
    node_ips: tuple[str, ...]  # IPv4, primary first
    pod_net: Net
    pod_dev: str
    pod_src: str  # a pod on this node that is no endpoint

    @property
    def primary(self) -> str:
        return self.node_ips[0]

    def iif_for(self, src: str) -> str | None:
        """None for the node's own addresses (locally generated), the pod device for pod
        sources, eth0 for everything else."""
        if src in self.view.local_ips():
            return None
        if ipaddress.IPv4Address(src) in self.pod_net:
            return self.pod_dev
        return "eth0"


def pod_device(config: ProxyConfig) -> tuple[str, str]:
    """(name, kind) of the interface pods arrive on, as the local-traffic detector names it."""
    if config.detect_local is DetectLocal.BRIDGE_INTERFACE:
        return config.bridge_interface, "bridge"
    if config.detect_local is DetectLocal.INTERFACE_NAME_PREFIX:
        return f"{config.interface_name_prefix}0", "veth"
    return "cni0", "bridge"


def pod_network(config: ProxyConfig, node_pod_cidr: str | None) -> Net:
    """The node's pod range, else the detector's CIDR, else kube-proxy's tests' 10.0.0.0/8."""
    if node_pod_cidr and _v4(node_pod_cidr):
        return _net(node_pod_cidr)
    for cidr in config.local_cidrs:
        if _v4(cidr):
            return _net(cidr)
    return _net(DEFAULT_POD_NET)


def _free_hosts(net: Net, taken: set[str], avoid: Sequence[Net]) -> Iterator[str]:
    for host in net.hosts():
        text = str(host)
        if text not in taken and not any(host in a for a in avoid):
            yield text


def build_node(
    rules: str,
    config: ProxyConfig,
    *,
    node_ips: Sequence[str],
    prefixes: dict[str, int] | None = None,
    pod_net: Net,
    taken: Iterable[str] = (),
) -> Node:
    """A `Node` from restore text (standalone render) and addressing facts.

    ``taken`` are addresses the pod source and bridge address must not use (endpoints)."""
    ips = tuple(ip for ip in node_ips if _v4(ip))
    assert ips, "a node needs an IPv4 address"
    prefixes = prefixes or {}
    dev, kind = pod_device(config)
    subnets: dict[Net, str] = {}
    for ip in ips:
        subnets.setdefault(Net(f"{ip}/{prefixes.get(ip, 24)}", strict=False), ip)
    hosts = _free_hosts(pod_net, {*ips, *taken}, list(subnets))
    bridge_ip = next(hosts) if kind == "bridge" else None
    pod_src = next(hosts)
    primary_net = next(iter(subnets))
    gateway = next(_free_hosts(primary_net, set(ips), []))

    addresses = [Address("lo", LOOPBACK, 8)] + [Address("eth0", ip, prefixes.get(ip, 24)) for ip in ips]
    routes = [Route(Net("127.0.0.0/8"), "local", "lo", table="local")]
    routes += [Route(Net(f"{ip}/32"), "local", "eth0", table="local") for ip in ips]
    routes += [Route(net, dev="eth0", prefsrc=src) for net, src in subnets.items()]
    if bridge_ip is not None:
        addresses.append(Address(dev, bridge_ip, pod_net.prefixlen))
        routes.append(Route(Net(f"{bridge_ip}/32"), "local", dev, table="local"))
    routes.append(Route(pod_net, dev=dev, prefsrc=bridge_ip))
    routes.append(Route(Net("0.0.0.0/0"), dev="eth0", gateway=gateway))
    links = {"lo": Link("lo", "loopback"), "eth0": Link("eth0", ""), dev: Link(dev, kind)}
    view = NodeView(ruleset=parse(rules, origin="render"), addresses=addresses, routes=routes, links=links)
    return Node(view, config, ips, pod_net, dev, pod_src)


def snapshot_of(scenario: Scenario) -> Snapshot:
    """The scenario's objects as scenario.render() reads them."""
    snapshot = build_snapshot(load_objects(scenario.folder / "objects.yaml"))
    assert snapshot.rejections == (), f"{scenario.name}: {snapshot.rejections}"
    return snapshot


def node_for(scenario: Scenario) -> tuple[Node, list[PortPolicy]]:
    """The scenario's node (its standalone render, addresses, routes) and its decisions."""
    config = scenario.config()
    policies = decide(snapshot_of(scenario), config)
    prefixes: dict[str, int] = {}
    for entries in (scenario.doc.get("interface_addresses") or {}).values():
        for entry in entries:
            ip, _, length = str(entry).partition("/")
            if _v4(ip) and length:
                prefixes[ip] = int(length)
    node = build_node(
        scenario.render().text(standalone=True),
        config,
        node_ips=config.node_ips,
        prefixes=prefixes,
        pod_net=pod_network(config, scenario.doc.get("node_pod_cidr")),
        taken=[e.ip for p in policies for e in p.endpoints],
    )
    return node, policies


def node_from_objects(objects: list[object], config: ProxyConfig, prefixes: dict[str, int] | None = None) -> Node:
    """A `Node` for objects built in a test (no scenario folder)."""
    snapshot = build_snapshot(objects)
    assert snapshot.rejections == (), snapshot.rejections
    policies = decide(snapshot, config)
    return build_node(
        render(policies, config).text(standalone=True),
        config,
        node_ips=config.node_ips,
        prefixes=prefixes,
        pod_net=pod_network(config, None),
        taken=[e.ip for p in policies for e in p.endpoints],
    )


# ---------------------------------------------------------------------------------------------
# Rows: what a packet's outcomes look like, from the oracle or from the tracer


@dataclass(frozen=True, order=True)
class Row:
    """One way a packet ends. ``dnat`` is "" when the destination was not rewritten."""

    verdict: str
    dnat: str
    probability: float
    masq: bool


Rows = frozenset[Row]


def ended(verdict: str) -> Rows:
    return frozenset({Row(verdict, "", 1.0, False)})


UNTOUCHED = ended("ACCEPT")  # no Service: the packet goes on as it is


def spread(endpoints: Sequence[Endpoint] | Sequence[str], *, masq: bool, src: str) -> Rows:
    """Each endpoint with probability 1/n; masquerade as given, or for a hairpin."""
    keys = [e if isinstance(e, str) else e.key for e in endpoints]
    assert keys, "the oracle chose an empty endpoint set"
    n = len(keys)
    return frozenset(Row("ACCEPT", k, round(1 / n, 6), masq or k.rpartition(":")[0] == src) for k in keys)


def observed(result: TraceResult) -> Rows:
    """The tracer's outcomes folded into rows (probabilities of equal rows added)."""
    total: dict[tuple[str, str, bool], float] = {}
    for o in result.outcomes:
        key = (o.verdict, o.dnat or "", o.masquerade if o.verdict == "ACCEPT" else False)
        total[key] = total.get(key, 0.0) + o.probability
    return frozenset(Row(v, d, round(p, 6), m) for (v, d, m), p in total.items())


# ---------------------------------------------------------------------------------------------
# Packets and checks


@dataclass(frozen=True)
class Flow:
    """One packet and what should become of it."""

    kind: str  # "ClusterIP from a pod", …
    service: str  # the Service port it is about ("" for none)
    src: str
    iif: str | None  # None: sent by the node itself
    dst: str
    dport: int
    proto: str
    expected: Rows
    note: str = ""  # provenance (known cases) or a remark

    def packet(self) -> Packet:
        return Packet(src=self.src, dst=self.dst, proto=self.proto, dport=self.dport, iif=self.iif)


@dataclass
class Check:
    flow: Flow
    got: Rows
    result: TraceResult
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(node: Node, flow: Flow) -> Check:
    result = trace(node.view, flow.packet())
    got = observed(result)
    c = Check(flow, got, result)
    total = sum(o.probability for o in result.outcomes)
    if abs(total - 1.0) > 1e-6:
        c.problems.append(f"probabilities sum to {total:.6f}, not 1")
    if {r.verdict for r in got} != {r.verdict for r in flow.expected}:
        c.problems.append("verdicts differ")
    exp_dnat = {(r.dnat, r.probability) for r in flow.expected if r.verdict == "ACCEPT"}
    got_dnat = {(r.dnat, r.probability) for r in got if r.verdict == "ACCEPT"}
    if exp_dnat != got_dnat:
        c.problems.append("DNAT targets or probabilities differ")
    elif got != flow.expected:
        c.problems.append("masquerade differs")
    return c


def run(node: Node, flows: Iterable[Flow]) -> list[Check]:
    return [check(node, f) for f in flows]


# ---------------------------------------------------------------------------------------------
# The oracle


@dataclass(frozen=True)
class Sender:
    name: str  # "a pod", "the node", "outside", …
    ip: str
    iif: str | None
    local: bool  # an address of this node (addrtype --src-type LOCAL)


Detector = Callable[[str, "str | None"], bool]


def detector(config: ProxyConfig) -> Detector | None:
    """kube-proxy's local-traffic detector as a predicate on (source, input interface)."""
    mode = config.detect_local
    if mode in (DetectLocal.CLUSTER_CIDR, DetectLocal.NODE_CIDR):
        nets = [_net(c) for c in config.local_cidrs if _v4(c)][:1]  # the first CIDR of the family
        if not nets:
            return None
        return lambda src, iif: ipaddress.IPv4Address(src) in nets[0]
    if mode is DetectLocal.BRIDGE_INTERFACE and config.bridge_interface:
        bridge = config.bridge_interface
        return lambda src, iif: iif == bridge
    if mode is DetectLocal.INTERFACE_NAME_PREFIX and config.interface_name_prefix:
        prefix = config.interface_name_prefix
        return lambda src, iif: iif is not None and iif.startswith(prefix)
    return None


class Oracle:
    """kube-proxy's per-packet behaviour from a `PortPolicy` and the proxy's settings."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.config = node.config
        self.detect = detector(node.config)

    # -- who sends ---------------------------------------------------------------------------
    def pod(self) -> Sender:
        return Sender("a pod", self.node.pod_src, self.node.pod_dev, False)

    def host(self) -> Sender:
        return Sender("the node", self.node.primary, None, True)

    def localhost(self) -> Sender:
        return Sender("localhost", LOOPBACK, None, True)

    def outside(self, ip: str = OUTSIDE) -> Sender:
        return Sender("outside", ip, "eth0", False)

    def hairpin(self, endpoints: Sequence[Endpoint]) -> Sender | None:
        """An endpoint of this Service that is a pod on this node's pod range (local first)."""
        node_ips = set(self.node.node_ips)

        def on_this_node(e: Endpoint) -> bool:
            in_range = ipaddress.IPv4Address(e.ip) in self.node.pod_net and e.ip not in node_ips
            return in_range and (self.detect is None or self.detect(e.ip, self.node.pod_dev))

        fits = [e for e in endpoints if on_this_node(e)]
        fits.sort(key=lambda e: not e.is_local)
        return Sender("its own endpoint (hairpin)", fits[0].ip, self.node.pod_dev, False) if fits else None

    def is_pod_traffic(self, s: Sender) -> bool:
        return self.detect is not None and self.detect(s.ip, s.iif)

    # -- what happens ------------------------------------------------------------------------
    def internal(self, p: PortPolicy, s: Sender) -> Rows:
        """A packet to the ClusterIP:port."""
        if p.internal_verdict is not None:
            return ended(p.internal_verdict.value)
        endpoints = p.local_endpoints if p.internal_policy_local else p.cluster_endpoints
        masq = self.config.masquerade_all or (self.detect is not None and not self.detect(s.ip, s.iif))
        return spread(endpoints, masq=masq, src=s.ip)

    def admitted(self, p: PortPolicy, src: str) -> bool:
        """loadBalancerSourceRanges (none: everyone). A source equal to an LB IP is admitted too
        when a range holds a node IP (node traffic that the cloud SNATs to the LB IP)."""
        if not p.source_ranges:
            return True
        ranges = [_net(r) for r in p.source_ranges if _v4(r)]
        addr = ipaddress.IPv4Address(src)
        if any(addr in r for r in ranges):
            return True
        holds_node = any(ipaddress.IPv4Address(ip) in r for r in ranges for ip in self.node.node_ips)
        return holds_node and src in p.load_balancer_ips

    def external(self, p: PortPolicy, s: Sender, dst: str, *, load_balancer: bool = False) -> Rows:
        """A packet to a NodePort that answers, an externalIP or a LoadBalancer IP."""
        if not p.has_endpoints:
            # KUBE-EXTERNAL-SERVICES REJECTs, but it hangs off INPUT and FORWARD only: the node's
            # own packet to an address elsewhere (the real load balancer) leaves untouched.
            if s.local and not self.node.view.is_local(dst):
                return UNTOUCHED
            return ended("REJECT")
        if load_balancer and not self.admitted(p, s.ip):
            return ended("DROP")  # KUBE-PROXY-FIREWALL
        if not p.external_policy_local:
            return spread(p.cluster_endpoints, masq=True, src=s.ip)
        if s.local or self.is_pod_traffic(s):  # eTP=Local short-circuits
            return spread(p.cluster_endpoints, masq=s.local, src=s.ip)
        if p.external_verdict is not None:
            return ended(p.external_verdict.value)  # DROP: no local endpoint
        return spread(p.local_endpoints, masq=False, src=s.ip)

    def serves_nodeports_on(self, ip: str) -> bool:
        """Does kube-proxy DNAT NodePorts addressed to this local address?"""
        loopback = ipaddress.IPv4Address(ip).is_loopback
        if loopback and not self.config.localhost_nodeports:
            return False
        cidrs = [_net(c) for c in self.config.nodeport_addresses if _v4(c)]
        if not cidrs or any(c.prefixlen == 0 for c in cidrs):
            return True
        return any(ipaddress.IPv4Address(ip) in c for c in cidrs)

    def nodeport(self, p: PortPolicy, s: Sender, dst: str) -> Rows:
        if self.serves_nodeports_on(dst):
            return self.external(p, s, dst)
        # Not DNATed here; the no-endpoint filter rule matches any local destination.
        return ended(p.external_verdict.value) if p.external_verdict is not None else UNTOUCHED

    # -- the packets -------------------------------------------------------------------------
    def flows(self, p: PortPolicy) -> Iterator[Flow]:
        spn, proto = p.spn, p.proto

        def flow(kind: str, s: Sender, dst: str, port: int, rows: Rows) -> Flow:
            return Flow(f"{kind} from {s.name}", spn, s.ip, s.iif, dst, port, proto, rows)

        internal_set = p.local_endpoints if p.internal_policy_local else p.cluster_endpoints
        hairpin = self.hairpin(internal_set)
        for s in (self.pod(), self.host(), self.outside(), hairpin):
            if s is not None:
                yield flow("ClusterIP", s, p.cluster_ip, p.port, self.internal(p, s))
        if p.node_port:
            for ip in self.node.node_ips:
                s = self.outside()
                yield flow(f"NodePort on {ip}", s, ip, p.node_port, self.nodeport(p, s, ip))
            ext_hairpin = self.hairpin(p.cluster_endpoints if p.external_policy_local else ())
            for s in (self.pod(), self.host(), ext_hairpin):
                if s is not None:
                    yield flow("NodePort", s, self.node.primary, p.node_port, self.nodeport(p, s, self.node.primary))
            s = self.localhost()
            yield flow("NodePort on 127.0.0.1", s, LOOPBACK, p.node_port, self.nodeport(p, s, LOOPBACK))
        for ip in p.external_ips:
            for s in (self.outside(), self.pod(), self.host()):
                yield flow(f"externalIP {ip}", s, ip, p.port, self.external(p, s, ip))
        for ip in p.load_balancer_ips:
            for s in (*self.lb_clients(p), self.pod(), self.host()):
                yield flow(f"LB IP {ip}", s, ip, p.port, self.external(p, s, ip, load_balancer=True))

    def lb_clients(self, p: PortPolicy) -> list[Sender]:
        """Outside clients for an LB IP: the usual one, and with source ranges one inside the
        first range and one outside every range."""
        clients = [self.outside()]
        if not p.source_ranges:
            return clients
        local = self.node.view.local_ips()
        first = _net(p.source_ranges[0])
        hosts = [str(h) for h in reversed(list(first.hosts()) or [first.network_address])]
        inside = next((h for h in hosts if h not in local and h not in p.load_balancer_ips), None)
        if inside is not None and inside != OUTSIDE:
            clients.append(Sender("outside, in loadBalancerSourceRanges", inside, "eth0", False))
        blocked = next((ip for ip in OUTSIDE_CANDIDATES if not self.admitted(p, ip)), None)
        if blocked is not None and blocked != OUTSIDE:
            clients.append(Sender("outside, not in loadBalancerSourceRanges", blocked, "eth0", False))
        return clients

    def stray_flows(self, policies: Sequence[PortPolicy]) -> Iterator[Flow]:
        """Per ClusterIP: a port no Service uses there, and a protocol not used on a used port."""
        used: dict[str, set[tuple[int, str]]] = {}
        for p in policies:
            used.setdefault(p.cluster_ip, set()).add((p.port, p.proto))
        s = self.pod()
        for ip, pairs in used.items():
            ports = {port for port, _ in pairs}
            port, proto = min(pairs)
            wrong = next(q for q in (port + 1, *range(1, 65536)) if q not in ports and q <= 65535)
            yield Flow("ClusterIP, unused port, from a pod", "", s.ip, s.iif, ip, wrong, proto, UNTOUCHED)
            other = next((x for x in PROTOCOLS if (port, x) not in pairs), None)
            if other is not None:
                yield Flow("ClusterIP, unused protocol, from a pod", "", s.ip, s.iif, ip, port, other, UNTOUCHED)

    def baseline_flows(self, policies: Sequence[PortPolicy]) -> Iterator[Flow]:
        """Packets no Service is about: pod to pod, and outside to the node on a port that is
        no NodePort (kube-proxy's "no match" row)."""
        s = self.pod()
        taken = {s.ip, *self.node.view.local_ips(), *(e.ip for p in policies for e in p.endpoints)}
        peer = next(_free_hosts(self.node.pod_net, taken, []))
        yield Flow("pod to pod, no Service", "", s.ip, s.iif, peer, 80, "tcp", UNTOUCHED)
        nodeports = {p.node_port for p in policies}
        port = next(q for q in (22, *range(1024, 65536)) if q not in nodeports)
        o = self.outside()
        yield Flow("node IP, no NodePort, from outside", "", o.ip, o.iif, self.node.primary, port, "tcp", UNTOUCHED)


def scenario_flows(node: Node, policies: Sequence[PortPolicy]) -> list[Flow]:
    oracle = Oracle(node)
    flows = [f for p in policies for f in oracle.flows(p)]
    flows += list(oracle.stray_flows(policies))
    flows += list(oracle.baseline_flows(policies))
    return flows


# ---------------------------------------------------------------------------------------------
# The table


def describe(rows: Rows) -> str:
    """Rows in words: "10.180.0.4:80, 10.180.0.5:80 · masq no", "DROP", "ACCEPT, no DNAT"."""
    dnat = sorted(r for r in rows if r.verdict == "ACCEPT" and r.dnat)
    rest = sorted(r for r in rows if not (r.verdict == "ACCEPT" and r.dnat))
    alone = len(rows) == 1
    uniform = not rest and all(abs(r.probability - round(1 / len(dnat), 6)) < 1e-6 for r in dnat)
    parts = []
    if dnat:
        eps = ", ".join(r.dnat + ("" if uniform else f" {r.probability:.1%}") for r in dnat)
        masq = {r.masq for r in dnat}
        only = "only " + ", ".join(r.dnat for r in dnat if r.masq)
        said = {frozenset({True}): "yes", frozenset({False}): "no"}.get(frozenset(masq), only)
        parts.append(f"{eps} · masq {said}")
    for r in rest:
        word = "ACCEPT, no DNAT" if r.verdict == "ACCEPT" else r.verdict
        parts.append(word + ("" if alone else f" {r.probability:.1%}") + (" · masq yes" if r.masq else ""))
    return " | ".join(parts)


def table(checks: Sequence[Check], *, title: str = "") -> str:
    """Every check as one row; failing rows are marked and explained under the table."""
    head = ("#", "packet", "about", "source", "destination", "expected", "traced", "")
    body = []
    for n, c in enumerate(checks, 1):
        f = c.flow
        src = f"{f.src} ({f.iif})" if f.iif else f"{f.src} (local)"
        body.append(
            (
                str(n),
                f.kind,
                f.service or "-",
                src,
                f"{f.dst}:{f.dport}/{f.proto}",
                describe(f.expected),
                "same" if c.got == f.expected else describe(c.got),
                "ok" if c.ok else "FAIL",
            )
        )
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]
    lines = [title] if title else []
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    failing = [(n, c) for n, c in enumerate(checks, 1) if not c.ok]
    if failing:
        lines.append("")
        lines.append(f"{len(failing)} of {len(checks)} checks fail:")
        for n, c in failing:
            why = "; ".join(c.problems)
            extra = f" [{c.flow.note}]" if c.flow.note else ""
            lines.append(f"  #{n}: {why}{extra}")
            for o in c.result.outcomes:
                lines.append(f"      {o.probability:.4f} {o.verdict} dnat={o.dnat} masq={o.masquerade}: {o.reason}")
    return "\n".join(lines)
