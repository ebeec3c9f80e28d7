"""What the API server enforces *across* Services, enforced again for input that did not come
through it (a folder, the lab): clusterIPs inside the service range, no clusterIP that is a
Node's address, no clusterIP or NodePort held by two Services.

* **Who wins** a clusterIP or NodePort is decided as the API server's allocators decide it: the
  Service created first keeps it — ``metadata.creationTimestamp``, then namespace/name; a
  Service without a timestamp counts as created after every one with one. The other is a
  `Rejection` naming the holder, and holds nothing, so it never costs a third Service its
  place. Greedy in creation order, as the allocators were. (``healthCheckNodePort`` comes from
  the same allocator but is not checked: it is a listener, not a rule, and kube-proxy's own
  test fixtures, which clew renders as kube-proxy does, give one the number of another
  Service's NodePort.)
* **The service range** is known only from ``networking.k8s.io/v1`` ``ServiceCIDR`` objects in
  the input (what the API server serves since 1.33, and what the lab publishes). kube-proxy has
  no such setting. Without one the range is unknown: nothing is checked against it and a note
  says so. As the allocator, a range's network address (and an IPv4 range's broadcast address)
  is not inside it.
* **A Node's address as clusterIP** is refused: the API server would not stop it (its ranges are
  disjoint from node addresses by configuration), but the rules would take over traffic meant
  for the node.

`Admission` keeps the index across updates, so a source that knows what changed (a watch) pays
for the change, not for the cluster: adding or removing a Service is O(its claims); only the
Services sharing a contested claim are ordered again (normally none); a change of the Nodes'
addresses or of the range checks every Service again (rare, and a full sync follows anyway).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from clew.model.objects import Node, Rejection, Service

Claim = tuple[str, int | str]  # ("clusterIP", "10.96.0.10") or ("nodePort", 30080)
Networks = tuple[ipaddress.IPv4Network, ...]


def node_addresses(nodes: Iterable[Node]) -> dict[str, str]:
    """Every Node address (InternalIP and ExternalIP) → the Node's name."""
    found: dict[str, str] = {}
    for n in nodes:
        for ip in (*n.internal_ips, *n.external_ips):
            found.setdefault(ip, n.name)
    return found


def _order(svc: Service) -> tuple[bool, str, str, str]:
    return (not svc.created, svc.created, svc.namespace, svc.name)


def _claims(svc: Service) -> dict[Claim, str]:
    """What the Service holds, each with the field that asks for it."""
    held: dict[Claim, str] = {}
    if svc.cluster_ip is not None:
        held[("clusterIP", svc.cluster_ip)] = "spec.clusterIP"
    for i, p in enumerate(svc.ports):
        if p.node_port:
            held.setdefault(("nodePort", p.node_port), f"spec.ports[{i}].nodePort")
    return held


def _in_range(ip: str, ranges: Networks) -> bool:
    addr = ipaddress.IPv4Address(ip)
    for net in ranges:
        if addr in net:
            return addr != net.network_address and (net.prefixlen >= 31 or addr != net.broadcast_address)
    return False


def static_rejection(svc: Service, nodes: Mapping[str, str], ranges: Networks | None) -> Rejection | None:
    """Checks of one Service against the Nodes and the range (no other Service involved)."""
    ip = svc.cluster_ip
    if ip is None:
        return None
    if ranges is not None and not _in_range(ip, ranges):
        shown = ", ".join(map(str, ranges)) or "none"
        why = f"{ip} is not in the service range ({shown}, from the ServiceCIDR objects)"
        return Rejection(f"Service {svc.key}", "spec.clusterIP", why)
    if ip in nodes:
        why = f"{ip} is Node {nodes[ip]}'s address: the rules would take over the node's own traffic"
        return Rejection(f"Service {svc.key}", "spec.clusterIP", why)
    return None


@dataclass
class Admission:
    """Which Services the API server's allocators would have let in; updated incrementally."""

    nodes: dict[str, str] = field(default_factory=dict)  # node address → Node name
    ranges: Networks | None = None  # None: the service range is unknown
    rejected: dict[str, Rejection] = field(default_factory=dict)  # Service key → why it is out
    _services: dict[str, Service] = field(default_factory=dict)
    _static: dict[str, Rejection] = field(default_factory=dict)
    _wants: dict[Claim, set[str]] = field(default_factory=dict)  # claim → the Services asking for it
    _contested: set[Claim] = field(default_factory=set)

    def update(
        self,
        removed: Iterable[str],
        added: Iterable[Service],
        nodes: Mapping[str, str] | None = None,
        ranges: Networks | Literal[False] | None = False,
    ) -> set[str]:
        """Forget the Services ``removed`` (keys), take in ``added`` (a changed Service may be in
        both); ``nodes`` (None: unchanged) and ``ranges`` (False: unchanged; None: unknown) when
        they changed. Returns the keys whose standing changed (let in, refused, or refused for
        another reason)."""
        before = dict(self.rejected)
        fresh = list(added)
        for key in removed:
            self._drop(key)
        for svc in fresh:
            self._drop(svc.key)
            self._services[svc.key] = svc
        nodes_changed = nodes is not None and nodes != self.nodes
        if nodes_changed or (ranges is not False and ranges != self.ranges):
            self.nodes = dict(nodes) if nodes is not None else self.nodes
            self.ranges = self.ranges if ranges is False else ranges
            self._static.clear()
            self._wants.clear()
            self._contested.clear()
            fresh = list(self._services.values())
        for svc in fresh:
            if self._services.get(svc.key) is svc:
                self._place(svc)
        self.rejected = {**self._static, **self._conflicts()}
        return {k for k in before.keys() | self.rejected.keys() if before.get(k) != self.rejected.get(k)}

    def _drop(self, key: str) -> None:
        svc = self._services.pop(key, None)
        if svc is None:
            return
        if self._static.pop(key, None) is not None:
            return
        for claim in _claims(svc):
            wanting = self._wants.get(claim)
            if wanting is None:
                continue
            wanting.discard(key)
            if len(wanting) <= 1:
                self._contested.discard(claim)
            if not wanting:
                del self._wants[claim]

    def _place(self, svc: Service) -> None:
        why = static_rejection(svc, self.nodes, self.ranges)
        if why is not None:
            self._static[svc.key] = why
            return
        for claim in _claims(svc):
            wanting = self._wants.setdefault(claim, set())
            wanting.add(svc.key)
            if len(wanting) > 1:
                self._contested.add(claim)

    def _conflicts(self) -> dict[str, Rejection]:
        """Greedy in creation order over the Services that share a claim (normally none)."""
        if not self._contested:
            return {}
        keys = {k for c in self._contested for k in self._wants[c]}
        involved = sorted((self._services[k] for k in keys), key=_order)
        holder: dict[Claim, str] = {}
        out: dict[str, Rejection] = {}
        for svc in involved:
            claims = _claims(svc)
            taken = next((c for c in claims if c in holder), None)
            if taken is not None:
                what = "IP" if taken[0] == "clusterIP" else "port"
                why = f"{taken[1]}: provided {what} is already allocated to Service {holder[taken]}, created first"
                out[svc.key] = Rejection(f"Service {svc.key}", claims[taken], why)
                continue
            for claim in claims:
                holder[claim] = svc.key
        return out
