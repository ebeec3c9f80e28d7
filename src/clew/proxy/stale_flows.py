"""kube-proxy's UDP conntrack cleanup, shared by both proxy modes: after a sync, UDP flows to a
Service IP or NodePort whose endpoint went away would keep their DNAT mapping (and black-hole a
DNS client) until they time out, so they are deleted. Which flows is decided here (pure); each
mode's syncer deletes them through its kernel seam."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clew.model.objects import Protocol
from clew.proxy.policy import PortPolicy


@dataclass(frozen=True, slots=True)
class StaleFlows:
    """UDP flows DNATed to ``dst_nat`` whose original destination is ``orig_dst`` (a Service IP)
    or whose original destination port is ``orig_port`` (a NodePort)."""

    dst_nat: str
    orig_dst: str | None = None
    orig_port: int | None = None


def stale_udp_flows(before: Mapping[str, PortPolicy], after: Mapping[str, PortPolicy]) -> list[StaleFlows]:
    """The flows to delete when the ports ``before`` (by port key) became ``after`` (only the
    ports present in ``before`` are looked at: a new port has no stale flows)."""
    out: list[StaleFlows] = []
    for key, old in before.items():
        if old.protocol is not Protocol.UDP:
            continue
        new = after.get(key)
        keep = {e.key for e in new.all_reachable} if new else set()
        for ep in old.all_reachable:
            if ep.key in keep:
                continue
            out += [
                StaleFlows(ep.ip, orig_dst=vip) for vip in (old.cluster_ip, *old.external_ips, *old.load_balancer_ips)
            ]
            if old.node_port:
                out.append(StaleFlows(ep.ip, orig_port=old.node_port))
    return out


def delete_stale(flows: list[StaleFlows], delete: Callable[..., int]) -> int:
    """Delete ``flows`` with ``delete(dst_nat=…, orig_dst=…, orig_port=…)`` (the seam's
    ``delete_udp_flows``); how many entries went."""
    n = 0
    for f in flows:
        if f.orig_port is not None:
            n += delete(orig_port=f.orig_port, dst_nat=f.dst_nat)
        else:
            n += delete(orig_dst=f.orig_dst, dst_nat=f.dst_nat)
    return n
