"""proxy.healthz: the proxy's /healthz on 10256, as load balancers see it — 503 (unhealthy or the
node drained), unreachable (refused or hung), or stale (an answer whose clock is off the node's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clew.doctor import dump_files, facts, objects
from clew.doctor.checks import run_all
from clew.doctor.finding import Finding

NODE = Path(__file__).parent / "doctor_node"  # collected_at 2026-12-06T10:06:26.174Z
NOW = "2026-12-06T10:06:26.1Z"


def run_with(healthz: str | None) -> dict[str, Finding]:
    files = dump_files.read(NODE)[1]
    if healthz is None:
        del files["proxy-healthz.txt"]
    else:
        files["proxy-healthz.txt"] = healthz
    cluster = objects.load(NODE / "objects")
    return {f.id: f for f in run_all(facts.from_files(files, name="node-1", objects=cluster))}


def answer(code: int, *, healthy: bool = True, eligible: bool = True, now: str = NOW) -> str:
    body = (
        f'{{"lastUpdated":"{now}","currentTime":"{now}","nodeEligible":{str(eligible).lower()},'
        f'"healthy":{str(healthy).lower()},"status":{{"IPv4":{{"lastUpdated":"2026-12-06T10:04:00Z",'
        f'"healthy":{str(healthy).lower()}}}}}}}'
    )
    return f"# curl exit 0\n{body}\n# http {code}\n"


CASES = [
    ("unhealthy 503", answer(503, healthy=False), "fail", "queued update"),
    ("node not eligible", answer(503, eligible=False), "warn", "not eligible"),
    ("refused", "# curl exit 7\n\n# http 000\n", "warn", "nothing listens"),
    ("hung", "# curl exit 28\n\n# http 000\n", "fail", "does not answer"),
    ("stale answer", answer(200, now="2026-12-06T09:56:26Z"), "warn", "-600s off"),
]


@pytest.mark.parametrize(("text", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_healthz_fault_is_reported_by_proxy_healthz_only(text: str, status: str, words: str) -> None:
    found = run_with(text)
    assert {i: f.status for i, f in found.items() if f.status != "ok"} == {"proxy.healthz": status}
    assert words in found["proxy.healthz"].summary and found["proxy.healthz"].fix


def test_a_healthy_answer_gives_the_update_age_as_evidence_only() -> None:
    found = run_with(answer(200))["proxy.healthz"]
    assert found.status == "ok" and found.evidence["last_updated_age_s"] == 146.1


def test_not_read_or_no_proxy_skips_with_the_reason() -> None:
    assert "not read" in run_with(None)["proxy.healthz"].summary
    files = dump_files.read(NODE)[1]
    files["iptables-save.txt"] = "".join(x for x in files["iptables-save.txt"].splitlines(True) if "KUBE-" not in x)
    assert run_all(facts.from_files(files, name="n"))[4].status == "skip"
