"""``node.steal``: CPU time the hypervisor gave to other guests over a short sample (the
seed's noisy neighbours: every sync and packet takes longer). Warn from 5 %, fail from 20 %."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn

ID = "node.steal"
STEAL = 7  # /proc/stat cpu line: user nice system idle iowait irq softirq steal (proc(5))
WARN, FAIL = 0.05, 0.20


def check(f: NodeFacts) -> Finding:
    s = f.cpu_sample
    if s is None:
        return skip(ID, "no CPU sample taken (--sample 0, or a dump without cpu-sample.txt)")
    share = s.share(STEAL)
    evidence = {"steal_share": round(share, 4), "interval_s": s.interval_s}
    fix = "move the node to a host or instance type without CPU contention (dedicated / non-burstable)"
    if share >= FAIL:
        return fail(ID, f"{share:.0%} of CPU time stolen by the hypervisor over {s.interval_s:g}s", fix, **evidence)
    if share >= WARN:
        return warn(ID, f"{share:.0%} of CPU time stolen by the hypervisor over {s.interval_s:g}s", fix, **evidence)
    return ok(ID, f"{share:.1%} CPU steal over {s.interval_s:g}s", **evidence)
