"""One check's answer, and the report (JSON contract ``clew.doctor/v1`` and the text table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

API_VERSION = "clew.doctor/v1"
STATUSES = ("fail", "warn", "skip", "ok")  # the text table's order: failures first


@dataclass(frozen=True, slots=True)
class Finding:
    """``status`` is ok | warn | fail | skip; ``fix`` is the exact command or setting (failures
    and warnings), ``evidence`` the values read that led to the status."""

    id: str
    status: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "summary": self.summary,
            "evidence": self.evidence,
            "fix": self.fix,
        }


def ok(id: str, summary: str, **evidence: Any) -> Finding:
    return Finding(id, "ok", summary, evidence)


def warn(id: str, summary: str, fix: str, **evidence: Any) -> Finding:
    return Finding(id, "warn", summary, evidence, fix)


def fail(id: str, summary: str, fix: str, **evidence: Any) -> Finding:
    return Finding(id, "fail", summary, evidence, fix)


def skip(id: str, reason: str, **evidence: Any) -> Finding:
    return Finding(id, "skip", reason, evidence)


def report(node: str, findings: list[Finding]) -> dict[str, Any]:
    """The ``--json`` document (checks in the registry's order)."""
    return {"apiVersion": API_VERSION, "node": node, "checks": [f.as_json() for f in findings]}


def table(node: str, findings: list[Finding]) -> str:
    """The text form: one row per check, failures first, each failure/warning followed by its fix."""
    ordered = sorted(findings, key=lambda f: STATUSES.index(f.status))
    width = max((len(f.id) for f in ordered), default=2)
    lines = [f"node {node}", f"{'STATUS':6}  {'CHECK':{width}}  SUMMARY"]
    for f in ordered:
        lines.append(f"{f.status.upper():6}  {f.id:{width}}  {f.summary}")
        if f.fix and f.status in ("fail", "warn"):
            lines.append(f"{'':6}  {'':{width}}  fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.status == s) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def exit_code(findings: list[Finding]) -> int:
    """1 when a check failed, else 0 (warnings and skips do not fail the node)."""
    return 1 if any(f.status == "fail" for f in findings) else 0
