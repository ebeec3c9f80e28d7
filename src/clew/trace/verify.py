"""The kernel's path beside the prediction: ``nft monitor trace`` lines read back into steps.

Pure. A step is ``(table, chain, verdict)`` for what decided something: a jump or goto, a
return, an accept or drop by a rule (NAT targets accept in the nat table), or a base chain's
policy when it drops. Rules that let the packet go on (``verdict continue``: a mark, a log) and
accepting policies are left out on both sides, since the prediction does not list them either.
The prediction of each outcome is turned into the same steps from its hops; the kernel's path
agrees when it equals one outcome's, else the first step where it parts from the closest one
is shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from clew.trace.packet import Outcome, TraceResult

_LINE = re.compile(r"^trace id \S+ (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) (?P<rest>.*)$")
_VERDICT = re.compile(r"\(verdict (?P<verdict>[^)]*)\)\s*$")

Step = tuple[str, str, str]


def kernel_steps(lines: list[str]) -> list[Step]:
    """``nft monitor trace`` lines → the decisive steps, in order."""
    out: list[Step] = []
    for line in lines:
        m = _LINE.match(line.strip())
        if m is None or m.group("rest").startswith("packet:"):
            continue
        rest = m.group("rest").strip()
        if rest.startswith("policy "):
            verdict = rest.split()[1]
            if verdict != "accept":
                out.append((m.group("table"), m.group("chain"), verdict))
            continue
        v = _VERDICT.search(rest)
        verdict = v.group("verdict") if v else (rest.split()[1] if rest.startswith("verdict ") else "")
        if verdict and verdict != "continue":
            out.append((m.group("table"), m.group("chain"), verdict))
    return out


def _step_of(table: str, chain: str, action: str) -> str | None:
    word = action.split(":")[0].split(" (")[0]
    if word.startswith(("jump ", "goto ")):
        return word
    first = word.split()[0] if word else ""
    if first in ("ACCEPT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
        return "accept"
    if first in ("DROP", "REJECT"):
        return "drop"
    if first == "RETURN":
        return "return"
    return None


def predicted_steps(o: Outcome) -> list[Step]:
    out: list[Step] = []
    for h in o.hops:
        if h.hook == "routing" or h.table.startswith("legacy "):  # nftables tracing cannot see legacy xtables
            continue
        table = h.table.split(" ", 1)[-1] if h.table.startswith(("ip ", "inet ")) else h.table  # nft: "ip fw"
        if h.rule.startswith("policy "):
            verdict = h.rule.split()[1].lower()
            if verdict != "accept":
                out.append((table, h.chain, verdict))
            continue
        step = _step_of(table, h.chain, h.action)
        if step is not None:
            out.append((table, h.chain, step))
    return out


@dataclass
class Comparison:
    agree: bool
    outcome: int  # 1-based number of the outcome compared with
    predicted: list[Step]
    kernel: list[Step]
    parted_at: int | None  # index of the first differing step


def compare(result: TraceResult, lines: list[str]) -> Comparison:
    kernel = kernel_steps(lines)
    best: Comparison | None = None
    for n, o in enumerate(result.outcomes, 1):
        pred = predicted_steps(o)
        if pred == kernel:
            return Comparison(True, n, pred, kernel, None)
        common = next(
            (i for i, (a, b) in enumerate(zip(pred, kernel, strict=False)) if a != b), min(len(pred), len(kernel))
        )
        if best is None or (best.parted_at or 0) < common:
            best = Comparison(False, n, pred, kernel, common)
    return best or Comparison(not kernel, 0, [], kernel, 0 if kernel else None)


def _fmt(step: Step | None) -> str:
    return f"{step[0]}/{step[1]} {step[2]}" if step else "—"


def format_comparison(c: Comparison, via: str, sender: str) -> str:
    lines = [f"Verified by the kernel (nftables trace), sent {via}:"]
    if not c.kernel:
        lines.append("  the kernel traced no decisive step (no rule acted, or the packet never reached netfilter)")
    width = max([len(_fmt(s)) for s in c.predicted] + [20])
    lines.append(f"  {'predicted (outcome ' + str(c.outcome) + ')':<{width}}   kernel")
    for i in range(max(len(c.predicted), len(c.kernel))):
        p = c.predicted[i] if i < len(c.predicted) else None
        k = c.kernel[i] if i < len(c.kernel) else None
        mark = "  " if p == k else "≠ "
        lines.append(f"{mark}{_fmt(p):<{width}}   {_fmt(k)}")
    if c.agree:
        lines.append(f"  agree: the kernel took the path of outcome {c.outcome}")
    else:
        lines.append(f"  DISAGREE: they part at step {(c.parted_at or 0) + 1}")
    if sender:
        lines.append(f"  the sender saw: {_said(sender)}")
    return "\n".join(lines) + "\n"


def _said(sender: str) -> str:
    """The prober's JSON in words: an answer (from whom, seen as which source), refused, no answer."""
    try:
        attempt = json.loads(sender)["attempts"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return sender
    if attempt.get("ok"):
        return f"an answer from {attempt.get('server')}, which saw the client as {attempt.get('seen')}"
    error = str(attempt.get("error") or "no answer")
    return {"timeout": "no answer (timed out)", "refused": "refused (RST or ICMP port unreachable)"}.get(error, error)
