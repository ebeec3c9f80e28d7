"""``forward.policy``: pod and Service traffic that crosses the node must reach ACCEPT in filter
FORWARD. Docker's, ufw's or a leftover ``policy DROP`` breaks it unless an accept path for the
pod network comes first (flannel's FLANNEL-FWD, kube-proxy's KUBE-FORWARD for marked traffic);
a foreign chain that drops ahead of them breaks it even with policy ACCEPT.

Probes three new packets through FORWARD with `probe.walk`: a local pod to a remote pod, a
remote pod to a local pod, and a NodePort client outside to a local pod (marked for masquerade,
which KUBE-FORWARD accepts). Then the same packets through every native nftables base chain on
the forward hook that is not iptables-nft's (`nft_probe`): in nftables each base chain must let
the packet through, so firewalld's or a hand-made ``policy drop`` chain breaks pod traffic even
when filter FORWARD accepts it. Native tables of the other families are read as well: a
``bridge`` family forward chain sees frames between two ports of the pod bridge (a same-node pod
to pod probe is added for it), and a ``netdev`` (or ``inet``) ingress chain sees everything that
enters its device before any routing (each probe is walked through the ingress chains of its
input device)."""

from __future__ import annotations

import ipaddress

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn
from clew.doctor.nft_probe import BaseChain
from clew.doctor.nft_probe import walk as nft_walk
from clew.doctor.probe import Packet, walk

ID = "forward.policy"
MASQ_MARK = 0x4000  # kube-proxy's KUBE-MARK-MASQ: Service traffic from outside the cluster


def check(f: NodeFacts) -> Finding:
    if f.ruleset is None:
        return skip(ID, "iptables rules not collected")
    pod = f.pod_bridge()
    if pod is None:
        return skip(ID, "no pod bridge with an address on this node: the pod subnet is unknown")
    bridge, subnet = pod
    local_ip = str(subnet.network_address + 2)
    vxlans = f.vxlans()
    out_dev = vxlans[0] if vxlans else f.underlay()
    remote = next(
        (
            r
            for r in f.routes
            if r.table == "main"
            and r.dev == (out_dev.name if out_dev else None)
            and r.dst.prefixlen > 0
            and r.gateway is not None
            and not r.dst.overlaps(subnet)
            and r.dst.is_private
        ),
        None,
    )
    remote_ip = str(remote.dst.network_address + 2) if remote else str(_sibling(subnet))
    oif = out_dev.name if out_dev else None
    probes = {
        f"{local_ip} -> {remote_ip} ({bridge.name} -> {oif})": Packet(local_ip, remote_ip, iif=bridge.name, oif=oif),
        f"{remote_ip} -> {local_ip} ({oif} -> {bridge.name})": Packet(remote_ip, local_ip, iif=oif, oif=bridge.name),
    }
    underlay = f.underlay(vxlans[0] if vxlans else None)
    if underlay is not None:  # a NodePort client outside, DNATed to a local pod and marked for masquerade
        probes[f"NodePort 192.0.2.1 -> {local_ip} ({underlay.name} -> {bridge.name}, mark {MASQ_MARK:#x})"] = Packet(
            "192.0.2.1", local_ip, iif=underlay.name, oif=bridge.name, mark=MASQ_MARK
        )
    chain = f.ruleset.chain("filter", "FORWARD")
    policy = chain.policy if chain else "ACCEPT"
    results = {name: walk(f.ruleset, "FORWARD", p) for name, p in probes.items()}
    evidence: dict[str, object] = {
        "policy": policy,
        "probes": {n: {"verdict": v.verdict, "by": v.by} for n, v in results.items()},
    }
    uncertain = sorted({u for v in results.values() for u in v.uncertain})
    if uncertain:
        evidence["rules_not_evaluated"] = uncertain
    dropped = [n for n, v in results.items() if v.verdict == "DROP"]
    net = _cluster(subnet)
    if dropped:
        by = results[dropped[0]].by
        fix = (
            "iptables -P FORWARD ACCEPT, or accept the pod network first: "
            f"iptables -I FORWARD -s {net} -j ACCEPT; iptables -I FORWARD -d {net} -j ACCEPT"
        )
        if not by.startswith("policy"):
            fix = f"remove or reorder the rule that drops it ({by}), or insert an accept for the pod network above it"
        return fail(ID, f"pod traffic is dropped in filter FORWARD ({dropped[0]}: {by})", fix, **evidence)
    ports = f.ports(bridge.name)
    if ports:  # two pods of this node: bridged port to port, never routed
        other = ports[1].name if len(ports) > 1 else "veth-other"
        peer_ip = str(subnet.network_address + 3)
        bridged = {
            f"{local_ip} -> {peer_ip} ({ports[0].name} -> {other} on {bridge.name})": Packet(
                local_ip, peer_ip, iif=ports[0].name, oif=other
            )
        }
    else:
        bridged = {}
    native = _native(f, probes, bridged, net, evidence)
    if native is not None:
        return native
    return ok(ID, f"pod traffic crosses filter FORWARD (policy {policy})", **evidence)


def _native(
    f: NodeFacts, probes: dict[str, Packet], bridged: dict[str, Packet], net: str, evidence: dict[str, object]
) -> Finding | None:
    """The native nftables base chains on the forward hook (firewalld's, a hand-made table), the
    bridge family's forward chains for ``bridged``, and every probe's input device's ingress
    chains: a packet must pass each of them too. A failure, or None (the evidence gains what was read)."""
    if f.nft is None:
        evidence["nft_tables"] = "not read (no nft-ruleset.json: nft missing, or an older dump)"
        return None
    chains = f.nft.base_chains("forward")
    evidence["nft_forward_chains"] = {b.label: f"policy {b.policy}" for b in chains}
    walks: list[tuple[BaseChain, dict[str, Packet]]] = [(b, probes) for b in chains]
    bridge_chains = f.nft.base_chains("forward", families=("bridge",)) if bridged else []
    if bridge_chains:
        evidence["nft_bridge_forward_chains"] = {b.label: f"policy {b.policy}" for b in bridge_chains}
        walks += [(b, bridged) for b in bridge_chains]
    ingress = f.nft.base_chains("ingress", families=("netdev", "inet"))
    if ingress:
        evidence["nft_ingress_chains"] = {b.label: f"devices {list(b.devices)}, policy {b.policy}" for b in ingress}
        every = {**probes, **bridged}
        for b in ingress:
            entering = {n: p for n, p in every.items() if p.iif in b.devices}
            if entering:
                walks.append((b, entering))
    maybe: Finding | None = None
    for base, seen in walks:
        results = {name: nft_walk(f.nft, base, p) for name, p in seen.items()}
        uncertain = sorted({u for v in results.values() for u in v.uncertain})
        if uncertain:
            listed = evidence.setdefault("rules_not_evaluated", [])
            assert isinstance(listed, list)
            listed.extend(uncertain)
        dropped = [n for n, v in results.items() if v.verdict == "DROP"]
        if not dropped:
            continue
        evidence[f"nft_probes ({base.label})"] = {n: {"verdict": v.verdict, "by": v.by} for n, v in results.items()}
        first = results[dropped[0]]
        fix = _nft_fix(base, first.by, net)
        if first.uncertain:  # a rule passed over might have accepted it: say so, do not guess
            maybe = maybe or warn(
                ID,
                f"pod traffic may be dropped in nftables {base.label} ({dropped[0]}: {first.by} after "
                f"{len(first.uncertain)} rule(s) not evaluated)",
                fix,
                **evidence,
            )
            continue
        return fail(ID, f"pod traffic is dropped in nftables {base.label} ({dropped[0]}: {first.by})", fix, **evidence)
    return maybe


def _nft_fix(base: BaseChain, by: str, net: str) -> str:
    where = f"{base.family} {base.table} {base.name}"
    accept = f"nft insert rule {where} ip saddr {net} accept; nft insert rule {where} ip daddr {net} accept"
    if base.table == "firewalld":
        return f"firewall-cmd --permanent --zone=trusted --add-source={net} && firewall-cmd --reload"
    if by.startswith("policy"):
        return f"{accept} (or: nft chain {where} '{{ policy accept; }}')"
    return f"remove the rule that drops it ({by}), or put accepts for the pod network ahead of it: {accept}"


def _sibling(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """An address of a neighbouring pod subnet (the next block of the same size)."""
    base = int(subnet.network_address) + subnet.num_addresses
    return ipaddress.IPv4Address(base % 2**32 + 2)


def _cluster(subnet: ipaddress.IPv4Network) -> str:
    """The cluster network as far as the node shows it: its pod subnet widened to /16."""
    return str(subnet.supernet(new_prefix=16)) if subnet.prefixlen > 16 else str(subnet)
