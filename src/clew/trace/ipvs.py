"""kube-proxy in IPVS mode: recognised and said, because its balancing happens outside netfilter.

An IPVS-mode node holds Service addresses on the dummy device ``kube-ipvs0`` and matches them with
ipsets (``KUBE-CLUSTER-IP``, ``KUBE-NODE-PORT-*``) in its few iptables rules; the choice of an
endpoint is made by IPVS after INPUT, which the iptables walk does not see. So a trace that
reaches local delivery of a Service address on such a node says that IPVS takes over there, and
the outcome rests on that (an `Assumption`): the endpoint and the masquerade seen by it are
IPVS's, read with ``ipvsadm -Ln``.
"""

from __future__ import annotations

from clew.trace.matches import member_matches
from clew.trace.node_view import NodeView
from clew.trace.packet import Assumption, Outcome, Packet
from clew.trace.state import State

IPVS_DEVICE = "kube-ipvs0"
SERVICE_SETS = ("KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-LOAD-BALANCER", "KUBE-NODE-PORT-TCP",
                "KUBE-NODE-PORT-UDP", "KUBE-NODE-PORT-SCTP-HASH", "KUBE-EXTERNAL-IP-LOCAL")  # fmt: skip
NOTE = (
    "this node runs kube-proxy in IPVS mode: Service connections are balanced by IPVS after INPUT, outside "
    "netfilter; the endpoint is IPVS's choice (ipvsadm -Ln), not traced here"
)


def is_ipvs_node(view: NodeView) -> bool:
    """kube-ipvs0 among the links, or kube-proxy's IPVS ipsets in the nat table's rules (decided once
    per view: KUBE-SERVICES is 10,000 rules on a big iptables-mode node)."""
    if view.ipvs_mode is None:
        view.ipvs_mode = _is_ipvs_node(view)
    return view.ipvs_mode


def _is_ipvs_node(view: NodeView) -> bool:
    if IPVS_DEVICE in view.links or any(a.dev == IPVS_DEVICE for a in view.addresses):
        return True
    chain = view.ruleset.chain("nat", "KUBE-SERVICES")
    for rule in chain.rules if chain else []:
        m = rule.match("set")
        opt = m.get("--match-set") if m else None
        if opt is not None and opt.value in SERVICE_SETS:
            return True
    return False


def _service_address(view: NodeView, packet: Packet) -> bool | None:
    """Whether the packet's destination is an IPVS virtual service here (None: cannot tell)."""
    if any(a.dev == IPVS_DEVICE and a.ip == packet.dst for a in view.addresses):
        return True
    probe = State(src=packet.src, dst=packet.dst, proto=packet.proto, sport=packet.sport, dport=packet.dport)
    known = [name for name in SERVICE_SETS if name in view.ipsets]
    for name in known:
        flags = ["dst", "dst"] if not name.startswith("KUBE-NODE-PORT") else ["dst"]
        if any(member_matches(m, flags, probe) for m in view.ipsets[name]):
            return True
    return False if known else None


def annotate(view: NodeView, packet: Packet, outcomes: list[Outcome], warnings: list[str]) -> None:
    """On an IPVS node: say so once, and mark locally delivered Service connections."""
    if not is_ipvs_node(view):
        return
    warnings.append(NOTE)
    is_service = _service_address(view, packet)
    for o in outcomes:
        if o.verdict != "ACCEPT" or o.egress is None or o.egress.kind != "local" or is_service is False:
            continue
        what = (
            f"{packet.dst}:{packet.dport} is an IPVS virtual service: IPVS then sends it to one of its real servers"
            if is_service
            else f"if {packet.dst}:{packet.dport} is an IPVS virtual service (the ipsets are not known), IPVS then "
            "sends it to one of its real servers; otherwise a process on this node gets it"
        )
        o.add_assumptions([Assumption(what, origin="IPVS (outside netfilter)")])
        o.notes.append(NOTE)
