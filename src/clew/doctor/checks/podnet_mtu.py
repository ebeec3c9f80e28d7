"""``podnet.mtu``: underlay → vxlan device (underlay − 50) → bridge → every pod veth. A pod
made before an MTU change keeps its old MTU: every port of the pod bridge must equal the pod
network's MTU, or big packets to or from it vanish (veth drops what exceeds its peer's MTU).

The pod side too: each port's peer (the pod's eth0) is read in the peer's namespace, found by the
nsid the node gives it and ``ip netns list-id``'s name (`collect._pod_links`, saved in the dump
as ``pod-links.json``). An unnamed peer namespace is not entered: it is listed as not read."""

from __future__ import annotations

from clew.doctor.facts import Link, NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "podnet.mtu"
VXLAN_OVERHEAD = 50


def check(f: NodeFacts) -> Finding:
    if not f.links:
        return skip(ID, "links not collected")
    vxlans = f.vxlans()
    vxlan = vxlans[0] if vxlans else None
    underlay = f.underlay(vxlan)
    pod = f.pod_bridge()
    if vxlan is None and pod is None:
        return skip(ID, "no vxlan device and no pod bridge on this node")
    evidence: dict[str, object] = {"underlay": {underlay.name: underlay.mtu} if underlay else None}
    problems: list[tuple[str, str]] = []
    net_mtu: int | None = None
    if vxlan is not None:
        evidence["vxlan"] = {vxlan.name: vxlan.mtu}
        net_mtu = vxlan.mtu
        if underlay is not None and vxlan.mtu > underlay.mtu - VXLAN_OVERHEAD:
            want = underlay.mtu - VXLAN_OVERHEAD
            problems.append(
                (
                    f"{vxlan.name} MTU {vxlan.mtu} > {underlay.name} {underlay.mtu} − {VXLAN_OVERHEAD}",
                    f"ip link set {vxlan.name} mtu {want} (and FLANNEL_MTU={want})",
                )
            )
    elif underlay is not None:
        net_mtu = underlay.mtu
    if pod is not None:
        bridge = pod[0]
        evidence["bridge"] = {bridge.name: bridge.mtu}
        if net_mtu is None:
            net_mtu = bridge.mtu
        elif bridge.mtu > net_mtu:
            problems.append(
                (
                    f"{bridge.name} MTU {bridge.mtu} > pod network MTU {net_mtu}",
                    f"ip link set {bridge.name} mtu {net_mtu}",
                )
            )
        off = {p.name: p.mtu for p in f.ports(bridge.name) if p.mtu != net_mtu}
        evidence["pod_veths"] = len(f.ports(bridge.name))
        evidence["veths_off"] = off
        pod_off = _pod_side(f, f.ports(bridge.name), net_mtu, evidence)
        if pod_off:
            first = next(iter(pod_off))
            problems.append(
                (
                    f"{len(pod_off)} pod(s) whose eth0 MTU ≠ {net_mtu} ({first}: {pod_off[first]}; "
                    "made before an MTU change?)",
                    f"recreate those pods (or: ip -n {first.replace('/', ' link set ')} mtu {net_mtu})",
                )
            )
        if off:
            first = next(iter(off))
            problems.append(
                (
                    f"{len(off)} pod veth(s) with MTU ≠ {net_mtu} ({first}: {off[first]}; "
                    "pods made before an MTU change?)",
                    f"recreate those pods (their eth0 keeps the old MTU); meanwhile ip link set {first} mtu {net_mtu}",
                )
            )
    evidence["pod_network_mtu"] = net_mtu
    if problems:
        return fail(ID, "; ".join(p for p, _ in problems), "; ".join(x for _, x in problems), **evidence)
    return ok(ID, f"MTU chain consistent (pod network {net_mtu})", **evidence)


def _pod_side(f: NodeFacts, ports: list[Link], net_mtu: int, evidence: dict[str, object]) -> dict[str, int]:
    """``netns/ifname`` → MTU of each pod-side veth whose MTU is off (evidence: what was read)."""
    if f.pod_links is None:
        evidence["pod_side"] = "not read (no pod-links.json: an older dump, or no bridge port has a peer namespace)"
        return {}
    off: dict[str, int] = {}
    unread: dict[str, str] = {}
    read = 0
    for port in ports:
        if port.peer_nsid is None or port.peer_index is None:
            unread[port.name] = "peer namespace not reported"
            continue
        peer = f.pod_links.get(port.peer_nsid)
        if peer is None or peer.netns is None:
            unread[port.name] = f"nsid {port.peer_nsid} has no name here (not entered)"
            continue
        if peer.links is None or port.peer_index not in peer.links:
            unread[port.name] = f"links of {peer.netns} not read"
            continue
        read += 1
        name, mtu = peer.links[port.peer_index]
        if mtu != net_mtu:
            off[f"{peer.netns}/{name}"] = mtu
    evidence["pod_side_read"] = read
    evidence["pod_side_off"] = off
    if unread:
        evidence["pod_side_not_read"] = unread
    return off
