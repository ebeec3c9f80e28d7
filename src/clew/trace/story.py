"""Words for a trace: the story an expert would tell, hook by hook.

Pure formatting of a `TraceResult`; the JSON form is `TraceResult.to_json()`. `format_trace` is
the full story (every hop); `format_short` fits a terminal: one line per outcome, most probable
first, each saying whether it rests on assumptions (``clew trace`` prints it unless ``-v``).
"""

from __future__ import annotations

import re

from clew.trace.packet import Outcome, TraceResult

WIDTH = 100


_COMMENT = re.compile(r'-m comment --comment (?:"((?:[^"\\]|\\.)*)"|(\S+)) ?')


def _short(rule: str, width: int = WIDTH) -> str:
    """The rule with its comment first (it names the Service), cut to ``width``."""
    m = _COMMENT.search(rule)
    if m:
        text = m.group(1) if m.group(1) is not None else m.group(2)
        rule = f"/* {text} */ " + (rule[: m.start()] + rule[m.end() :]).strip()
    return rule if len(rule) <= width else rule[: width - 1] + "…"


def _pct(p: float) -> str:
    return f"{p * 100:.1f}%" if p < 0.9995 else "100%"


def format_trace(result: TraceResult) -> str:
    p = result.packet
    state = "first packet of a new connection" if p.ctstate == "NEW" else f"a packet in state {p.ctstate}"
    lines = [
        f"Packet {p.proto} {p.src}:{p.sport} → {p.dst}:{p.dport}, {state}.",
        f"It {result.entry}.",
    ]
    total = len(result.outcomes)
    for n, o in enumerate(result.outcomes, 1):
        lines.append("")
        lines.extend(_outcome(o, n, total))
    if result.warnings:
        lines.append("")
        lines.append("Warnings (the trace made these assumptions):")
        lines.extend(f"  ! {w}" for w in result.warnings)
    return "\n".join(lines) + "\n"


def _headline(o: Outcome) -> str:
    service = f"Service {o.service}" if o.service else "no Service"
    if o.verdict == "ACCEPT":
        to = f" → {o.dnat}" if o.dnat else ""
        return f"{service}{to}: delivered"
    if o.verdict == "REJECT":
        return f"{service}: {rejected(o)}"
    word = {"DROP": "dropped (the client times out)"}
    return f"{service}: {word.get(o.verdict, o.verdict)}"


_REJECT_WITH = (
    re.compile(r"--reject-with\s+(?:icmp-)?([\w-]+)"),  # iptables: icmp-host-prohibited, tcp-reset
    re.compile(r"\breject with (?:icmpx|icmp|icmpv6)(?: type)? ([\w-]+)"),  # nft: icmpx admin-prohibited
    re.compile(r"\breject with (tcp) reset"),
)


def reject_with(o: Outcome) -> str:
    """What the REJECT rule that decided ``o`` answers with: ``port-unreachable`` (both tools'
    default), ``tcp-reset``/``tcp``, ``admin-prohibited``, ``host-prohibited``, ``net-unreachable``…"""
    rule = next((h.rule for h in reversed(o.hops) if h.action == "REJECT"), "")
    for pattern in _REJECT_WITH:
        found = pattern.search(rule)
        if found:
            return "tcp-reset" if found.group(1) == "tcp" else found.group(1)
    return "port-unreachable"


def rejected(o: Outcome) -> str:
    """The headline of a REJECT outcome, with what the client sees: a port unreachable or a TCP reset is
    "connection refused"; the other ICMP errors (prohibited, host/net unreachable) "no route to host"."""
    kind = reject_with(o)
    if kind == "port-unreachable":
        return "refused at once (REJECT: ICMP port unreachable)"
    if kind == "tcp-reset":
        return "refused at once (REJECT: TCP reset)"
    return f"rejected: no route to host (REJECT with ICMP {kind})"


def _if(o: Outcome) -> str:
    """The headline's qualifier: an outcome resting on assumptions is never a plain statement."""
    if o.certain:
        return ""
    n = len(o.assumptions)
    return f" — only if {'the assumption' if n == 1 else f'the {n} assumptions'} below hold{'s' if n == 1 else ''}"


def _outcome(o: Outcome, n: int, total: int) -> list[str]:
    lines = [f"Outcome {n} of {total}, {_pct(o.probability)}: {_headline(o)}{_if(o)}"]
    for h in o.hops:
        if h.quiet and o.verdict == "ACCEPT":
            continue
        if h.hook == "routing":
            lines.append(f"  {'routing':<11} {h.action}")
            continue
        where = f"{h.table}/{h.chain}"
        lines.append(f"  {h.hook:<11} {where:<34} {h.action}")
        lines.append(f"  {'':<11}   {_short(h.rule)}")
    if o.verdict == "ACCEPT":
        if o.masquerade:
            why = f", because of: {_short(o.masquerade_reason or '')}" if o.masquerade_reason else ""
            lines.append(f"  masquerade: yes, the destination sees {o.source_seen}{why}")
        else:
            why = f" ({_short(o.masquerade_skipped)} did not match)" if o.masquerade_skipped else ""
            lines.append(f"  masquerade: no, the destination sees {o.source_seen}{why}")
        if o.egress is not None:
            lines.append(f"  leaves: {o.egress.detail}")
    else:
        lines.append(f"  why: {o.reason}")
        for missed in o.not_accepted_by:
            lines.append(f"  not accepted by {missed}")
    for note in o.notes:
        lines.append(f"  note: {note}")
    for a in o.assumptions:
        lines.append(f"  assumed: {a.location}: {a.what}")
    return lines


def _short_outcome(o: Outcome) -> str:
    n = len(o.assumptions)
    parts = [("" if o.certain else f"IF {n} assumption{'s hold' if n > 1 else ' holds'}: ") + _headline(o)]
    if o.verdict == "ACCEPT":
        parts.append(f"seen from {o.source_seen}" + (" (masqueraded)" if o.masquerade else ""))
        if o.egress is not None and o.egress.kind == "unknown":
            parts.append("leaves the node (routes not given)")
        elif o.egress is not None and o.egress.kind != "local":
            where = o.egress.node or o.egress.via or o.egress.dev
            parts.append(f"leaves by {o.egress.kind}{' to ' + where if where else ''}")
    else:
        last = next((h for h in reversed(o.hops) if h.hook != "routing"), None)
        parts.append(f"by {last.table}/{last.chain} line {last.line}" if last and last.line else o.reason)
    return "; ".join(parts)


def format_short(result: TraceResult, width: int = WIDTH) -> str:
    """One line per outcome (most probable first), then a count of warnings; -v gives the hops."""
    p = result.packet
    state = "new connection" if p.ctstate == "NEW" else p.ctstate
    lines = [f"{p.proto} {p.src}:{p.sport} → {p.dst}:{p.dport} ({state}): it {result.entry}."]
    for o in result.outcomes:
        line = f"  {_pct(o.probability):>6}  {_short_outcome(o)}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    extra = f"{len(result.warnings)} warning(s); " if result.warnings else ""
    lines.append(f"({extra}-v for every hop, the assumptions and the warnings)")
    return "\n".join(lines) + "\n"
