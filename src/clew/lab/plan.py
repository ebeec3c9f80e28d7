"""The lab's plan: every name and address of a cluster made of network namespaces. Pure.

Two underlays:

* ``l2`` — every node and the outside client plug into one bridge in the ``<lab>-sw``
  namespace: 192.168.50.0/24, nodes .11, .12, …, the outside client .100. host-gw works.
* ``routed`` — the nodes sit on segments (subnets) behind the ``<lab>-rt`` router namespace:
  segment s is 192.168.(50+s).0/24 with the router at .1 and its nodes at .2, .3, …; the
  outside client is 192.168.100.2. ``per_segment`` nodes share a segment (a bridge ``br<s>`` in
  the switch namespace, the router's port ``s<s>``); with one per segment (the default, except
  for bgp) each node's link goes straight to the router (``n<i>``) and no node address is
  on-link for another, so host-gw must refuse and vxlan must work. The bgp backend defaults to
  two per segment: racks of nodes behind a router, 4 nodes over 2 segments.

Every namespace is named ``<lab>-lab-…`` (``clew-lab-n1``, ``clew-lab-p-web-0``): node i gets
``n<i>`` and pod subnet 10.244.i.0/24 of the cluster network, a pod ``p-<pod>``. Nothing here
touches the kernel.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

MAX_NODES = 9
PROXY_MODES = ("iptables", "nftables")


@dataclass(frozen=True)
class LabConfig:
    name: str = "clew"
    nodes: int = 3
    underlay: str = "l2"  # l2 | routed
    backend: str = "vxlan"  # vxlan | host-gw | bgp
    proxy_mode: str = "iptables"
    service_cidr: str = "10.96.0.0/12"
    cluster_cidr: str = "10.244.0.0/16"
    mtu: int = 1500
    per_segment: int = 0  # routed: nodes per segment; 0: 2 for bgp, else 1
    bgp_router: str = "reflector"  # routed bgp: the router is the nodes' route reflector | ebgp peer
    bfd: bool = False  # bgp: BFD on every session (the router's too)

    @property
    def nodes_per_segment(self) -> int:
        if self.underlay != "routed":
            return self.nodes
        return self.per_segment or (2 if self.backend == "bgp" else 1)

    def validate(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise ValueError(f"nodes: {self.nodes} is out of range 1-{MAX_NODES}")
        if self.underlay not in ("l2", "routed"):
            raise ValueError(f"underlay: {self.underlay!r} is not l2 or routed")
        if self.backend not in ("vxlan", "host-gw", "bgp"):
            raise ValueError(f"backend: {self.backend!r} is not vxlan, host-gw or bgp")
        if not 0 <= self.per_segment <= MAX_NODES:
            raise ValueError(f"per_segment: {self.per_segment} is out of range 1-{MAX_NODES} (0: the default)")
        if self.bgp_router not in ("reflector", "ebgp"):
            raise ValueError(f"bgp_router: {self.bgp_router!r} is not reflector or ebgp")
        if self.proxy_mode not in PROXY_MODES:
            raise ValueError(f"proxy_mode: {self.proxy_mode!r} is not {' or '.join(PROXY_MODES)}")
        if not self.name.replace("-", "").isalnum() or len(self.name) > 8:
            raise ValueError(f"name: {self.name!r} must be ≤ 8 letters, digits or dashes")
        ipaddress.IPv4Network(self.service_cidr)
        ipaddress.IPv4Network(self.cluster_cidr)


@dataclass(frozen=True)
class NodePlan:
    name: str  # the Kubernetes node name: node-1, …
    netns: str
    ip: str  # underlay address
    prefixlen: int
    gateway: str  # default route
    pod_cidr: str
    switch_port: str  # the link's name on the switch / router side


@dataclass(frozen=True)
class LabPlan:
    config: LabConfig
    switch_netns: str
    router_netns: str | None
    ext_netns: str
    ext_ip: str
    ext_prefixlen: int
    ext_gateway: str | None
    nodes: tuple[NodePlan, ...]
    router_addresses: tuple[tuple[str, str], ...] = field(default=())  # (router link, address/prefix)
    segments: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())  # shared: (bridge, node netns)

    def segment_of(self, node: str) -> str:
        """The underlay subnet a node sits on (``192.168.51.0/24``)."""
        n = self.node(node)
        return str(ipaddress.IPv4Interface(f"{n.ip}/{n.prefixlen}").network)

    def pod_netns(self, pod: str) -> str:
        return f"{self.prefix}p-{pod}"

    @property
    def prefix(self) -> str:
        return prefix(self.config.name)

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name or n.netns == name:
                return n
        raise KeyError(name)


def prefix(name: str) -> str:
    """Every namespace of lab ``name`` starts with this (and nothing else does)."""
    return f"{name}-lab-"


def plan(config: LabConfig) -> LabPlan:
    config.validate()
    lab = prefix(config.name).rstrip("-")
    cluster = ipaddress.IPv4Network(config.cluster_cidr)
    subnets = list(cluster.subnets(new_prefix=24))
    nodes = []
    router_addresses: list[tuple[str, str]] = []
    segments: dict[int, list[str]] = {}
    per = config.nodes_per_segment
    for i in range(1, config.nodes + 1):
        if config.underlay == "l2":
            ip, plen, gw = f"192.168.50.{10 + i}", 24, "192.168.50.100"
        else:
            seg, k = (i - 1) // per + 1, (i - 1) % per
            ip, plen, gw = f"192.168.{50 + seg}.{2 + k}", 24, f"192.168.{50 + seg}.1"
            if per == 1:
                router_addresses.append((f"n{i}", f"192.168.{50 + seg}.1/24"))
            elif k == 0:
                router_addresses.append((f"s{seg}", f"192.168.{50 + seg}.1/24"))
            segments.setdefault(seg, []).append(f"{lab}-n{i}")
        nodes.append(NodePlan(f"node-{i}", f"{lab}-n{i}", ip, plen, gw, str(subnets[i]), f"n{i}"))
    if config.underlay == "l2":
        return LabPlan(config, f"{lab}-sw", None, f"{lab}-ext", "192.168.50.100", 24, None, tuple(nodes))
    router_addresses.append(("ext", "192.168.100.1/24"))
    return LabPlan(
        config,
        f"{lab}-sw",
        f"{lab}-rt",
        f"{lab}-ext",
        "192.168.100.2",
        24,
        "192.168.100.1",
        tuple(nodes),
        tuple(router_addresses),
        tuple((f"br{seg}", tuple(ns)) for seg, ns in segments.items()) if per > 1 else (),
    )
