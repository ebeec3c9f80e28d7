"""Trace a packet through a node: hooks in order, routing between them, every outcome.

Paths (IPv4, first packet of a connection unless told otherwise)::

    arriving:  PREROUTING → route → INPUT (local)            → delivered
                                  → FORWARD → POSTROUTING    → leaves (bridge, vxlan, route)
    local:     route → OUTPUT → (re-route after DNAT) → POSTROUTING → leaves, or INPUT if local

A locally generated packet without a route fails in connect() before netfilter sees it.
"""

from __future__ import annotations

from clew.trace import gates, ipvs
from clew.trace.matches import Warn
from clew.trace.node_view import NodeView
from clew.trace.packet import Assumption, Egress, Hop, Outcome, Packet, TraceResult
from clew.trace.routes import classify, lookup, source_address
from clew.trace.state import State
from clew.trace.walk_iptables import Walker

NO_ROUTES = Assumption(
    "routes not given: the destination is taken as forwarded unless it is one of the node's addresses",
    origin="routes",
)


def _gated(view: NodeView, st: State, finals: list[Outcome], checks: tuple[gates.Check, ...]) -> bool:
    """Run routing's sysctl gates (`gates`); a drop ends the branch (True)."""
    for check in checks:
        drop, assumption = check(view, st)
        if assumption is not None:
            st.assume(assumption)
        if drop is not None:
            st.hops.append(Hop("routing", "", "", f"route lookup for {st.dst}", drop))
            finals.append(_final(st, "DROP", None, f"routing: {drop}"))
            return True
    return False


def _oif(st: State, route_dev: str | None, unknown: bool) -> str | None:
    """The output interface: --oif when given, the route's device, or "?" (not known)."""
    if st.oif_given:
        return st.oif_given
    return "?" if unknown else route_dev


def _state(packet: Packet, iif: str | None, recent: frozenset[str]) -> State:
    return State(
        src=packet.src,
        dst=packet.dst,
        proto=packet.proto,
        sport=packet.sport,
        dport=packet.dport,
        ctstate=packet.ctstate,
        iif=iif,
        recent=recent,
        oif_given=packet.oif,
    )


def entry(view: NodeView, packet: Packet) -> tuple[str | None, str]:
    """(iif, sentence): given, a local source (None), or the interface of the route back."""
    if packet.iif:
        return packet.iif, f"arrives on {packet.iif}"
    if packet.src in view.local_ips():
        return None, f"is sent by a process on this node from {packet.src}"
    if not view.routes:
        return "?", f"arrives from {packet.src} (routes not given: interface unknown; --iif sets it)"
    back = lookup(view, packet.src)
    if back is None or back.dev is None:
        return "?", f"arrives from {packet.src} (no route back to it: interface unknown)"
    link = view.links.get(back.dev)
    what = {"bridge": "a pod on bridge", "vxlan": "the overlay device"}.get(link.kind if link else "", "interface")
    return back.dev, f"arrives from {packet.src} on {back.dev} ({what} {back.dev}, by its return route)"


def trace(view: NodeView, packet: Packet, *, recent: frozenset[str] = frozenset()) -> TraceResult:
    """Every distinct outcome of ``packet`` with its probability (they sum to 1)."""
    warn = Warn()
    iif, how = entry(view, packet)
    walker = Walker(view, warn)
    st = _state(packet, iif, recent)
    finals: list[Outcome] = []
    if iif is None:
        _local(walker, st, finals)
    else:
        st.bridged = bool(view.links.get(iif or "") and view.links[iif or ""].kind == "bridge")
        _arriving(walker, st, finals)
    merged: dict[tuple[object, ...], Outcome] = {}
    for o in finals:
        if o.key() in merged:
            merged[o.key()].probability += o.probability
            merged[o.key()].add_assumptions(o.assumptions)
        else:
            merged[o.key()] = o
    # most probable first; equally probable ones in the order of the rules that decided them
    outcomes = sorted(merged.values(), key=lambda o: (-round(o.probability, 9), [h.line for h in o.hops], o.dnat or ""))
    if not recent:
        _returning_clients(view, packet, outcomes)
    for o in outcomes:
        note = _reply_bypass(view, packet, o)
        if note:
            o.notes.append(note)
    if packet.ctstate != "NEW":
        warn("packet of an existing connection: nat tables skipped; conntrack's stored mapping is not known here")
    parse_warnings = [w for w in view.ruleset.warnings if w not in view.warnings]
    warnings = [*view.warnings, *parse_warnings, *warn.items]
    ipvs.annotate(view, packet, outcomes, warnings)
    if view.other_backend is not None:
        order = Assumption(
            f"both iptables backends hold rules: at each priority the main backend's table is taken to run before "
            f"{view.other_backend_name}'s (the kernel runs them in the order they were registered)",
            origin=view.other_backend_name,
        )
        for o in outcomes:
            o.add_assumptions([order])
    return TraceResult(packet, how, outcomes, warnings)


def _returning_clients(view: NodeView, packet: Packet, outcomes: list[Outcome]) -> None:
    """ClientIP affinity: say where the same client goes next time, within the timeout."""
    for o in outcomes:
        if not o.affinity:
            continue
        again = trace(view, packet, recent=frozenset(o.affinity))
        where = ", ".join(f"{a.dnat or a.verdict} ({a.probability:.0%})" for a in again.outcomes)
        o.notes.append(f"ClientIP affinity: a returning client (in recent list {o.affinity[-1]}) goes to {where}")


def _reply_bypass(view: NodeView, packet: Packet, o: Outcome) -> str | None:
    """A DNATed, unmasqueraded connection whose endpoint reaches the client without this node:
    the reply is never un-NATed here, so the client drops it (an asymmetric return path)."""
    if o.verdict != "ACCEPT" or not o.dnat or o.masquerade or not view.routes:
        return None
    endpoint = o.dnat.rsplit(":", 1)[0]
    to_client, to_endpoint = lookup(view, packet.src), lookup(view, endpoint)
    if to_client is None or to_endpoint is None or to_client.type != "unicast" or to_endpoint.type != "unicast":
        return None
    link = view.links.get(to_endpoint.dev or "")
    if link is not None and link.kind == "bridge":
        return None  # the reply crosses this node's bridge, and its netfilter un-NATs it
    if (to_client.dev, to_client.gateway) != (to_endpoint.dev, to_endpoint.gateway):
        return None
    via = f"via {to_client.gateway} " if to_client.gateway else ""
    return (
        f"the reply will not return through this node: endpoint {endpoint} and client {packet.src} are both "
        f"reached {via}on {to_client.dev}, so the endpoint answers the client directly, un-NATed, and the "
        "client drops it (asymmetric return path; masquerading would avoid it)"
    )


def _arriving(walker: Walker, st: State, finals: list[Outcome]) -> None:
    for s, verdict in walker.run_hook("PREROUTING", st):
        if verdict != "ACCEPT":
            finals.append(_ended(s, verdict))
            continue
        if _gated(walker.view, s, finals, (gates.loopback_from_outside, gates.reverse_path)):
            continue
        route = lookup(walker.view, s.dst)
        egress = classify(walker.view, s.dst, route)
        if egress.kind != "local" and _gated(walker.view, s, finals, (gates.forwarding,)):
            continue
        if egress.kind == "local":
            _deliver(walker, s, finals, egress)
            continue
        if route is None or egress.kind in ("unreachable", "blackhole", "prohibit"):
            s.hops.append(Hop("routing", "", "", f"route lookup for {s.dst}", egress.detail))
            finals.append(_final(s, "DROP", egress, f"routing: {egress.detail}"))
            continue
        s.oif = _oif(s, route.dev, egress.kind == "unknown")
        if egress.kind == "unknown":
            s.assume(NO_ROUTES)
        s.hops.append(Hop("routing", "", "", f"route lookup for {s.dst}", f"forward: {egress.detail}"))
        s.bridged = s.bridged and s.oif == s.iif
        for s2, v2 in walker.run_hook("FORWARD", s):
            if v2 != "ACCEPT":
                finals.append(_ended(s2, v2))
                continue
            _postrouting(walker, s2, route_src=source_address(walker.view, route), egress=egress, finals=finals)


def _local(walker: Walker, st: State, finals: list[Outcome]) -> None:
    route = lookup(walker.view, st.dst)
    if route is None or route.type in ("blackhole", "unreachable", "prohibit"):
        egress = classify(walker.view, st.dst, route)
        st.hops.append(Hop("routing", "", "", f"route lookup for {st.dst}", egress.detail))
        finals.append(_final(st, "DROP", egress, f"connect() fails before netfilter: {egress.detail}"))
        return
    st.oif = _oif(st, route.dev, route.type == "unknown")
    for s, verdict in walker.run_hook("OUTPUT", st):
        if verdict != "ACCEPT":
            finals.append(_ended(s, verdict))
            continue
        r2 = lookup(walker.view, s.dst) if s.dnat else route
        egress = classify(walker.view, s.dst, r2)
        if r2 is None or egress.kind in ("unreachable", "blackhole", "prohibit"):
            finals.append(_final(s, "DROP", egress, f"routing after DNAT: {egress.detail}"))
            continue
        s.oif = _oif(s, r2.dev, r2.type == "unknown")
        if egress.kind == "unknown":
            s.assume(NO_ROUTES)
        if s.dnat:
            s.hops.append(Hop("routing", "", "", f"re-route for {s.dst}", egress.detail))
        _postrouting(walker, s, route_src=source_address(walker.view, r2), egress=egress, finals=finals)


def _postrouting(walker: Walker, st: State, *, route_src: str | None, egress: Egress, finals: list[Outcome]) -> None:
    walker.masquerade_src = route_src
    for s, verdict in walker.run_hook("POSTROUTING", st):
        if verdict != "ACCEPT":
            finals.append(_ended(s, verdict))
        elif egress.kind == "local":
            _deliver(walker, s, finals, egress)
        else:
            finals.append(_final(s, "ACCEPT", egress, _story(s, egress)))


def _deliver(walker: Walker, st: State, finals: list[Outcome], egress: Egress) -> None:
    for s, verdict in walker.run_hook("INPUT", st):
        if verdict != "ACCEPT":
            finals.append(_ended(s, verdict))
        else:
            finals.append(_final(s, "ACCEPT", egress, _story(s, egress)))


def _ended(st: State, verdict: str) -> Outcome:
    last = st.hops[-1] if st.hops else None
    where = f"{last.table}/{last.chain} ({last.hook})" if last else "netfilter"
    rule = last.rule if last else ""
    reason = (
        f"{verdict} by {rule!r} in {where}"
        if rule and not rule.startswith("policy")
        else (f"{verdict} by the {last.chain} {rule} in {last.table} ({last.hook})" if last else verdict)
    )
    return _final(st, verdict, None, reason)


def _final(st: State, verdict: str, egress: Egress | None, reason: str) -> Outcome:
    notes = list(st.notes)
    return Outcome(
        probability=st.probability,
        verdict=verdict,
        dnat=st.dnat,
        masquerade=st.masquerade,
        service=st.service,
        egress=egress,
        hops=list(st.hops),
        reason=reason,
        source_seen=st.src if verdict == "ACCEPT" else None,
        masquerade_reason=st.masquerade_reason,
        masquerade_skipped=st.masquerade_skipped,
        notes=notes,
        affinity=st.affinity_sets,
        assumptions=list(st.assumptions),
        # a policy dropped it: no rule decided, so say which accepting rules it missed, and why
        not_accepted_by=list(st.missed) if st.hops and st.hops[-1].rule.startswith("policy ") else [],
    )


def _story(st: State, egress: Egress) -> str:
    parts = []
    if st.service:
        parts.append(f"Service {st.service}")
    if st.dnat:
        parts.append(f"DNAT to {st.dnat}")
    parts.append(f"masqueraded to {st.src}" if st.masquerade else f"source {st.src} kept")
    parts.append(egress.detail)
    return "; ".join(parts)
