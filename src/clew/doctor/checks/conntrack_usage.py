"""``conntrack.usage``: entries vs the table's maximum. When full, the kernel drops new flows
(``nf_conntrack: table full, dropping packet``). Warn from 80 %, fail from 95 %."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn

ID = "conntrack.usage"
WARN, FAIL = 0.80, 0.95


def check(f: NodeFacts) -> Finding:
    count, limit = f.sysctl("net.netfilter.nf_conntrack_count"), f.sysctl("net.netfilter.nf_conntrack_max")
    if count is None or limit is None:
        return skip(ID, "conntrack counters not readable (nf_conntrack not loaded, or sysctls not collected)")
    used, most = int(count), int(limit)
    share = used / most if most else 1.0
    evidence = {"count": used, "max": most, "share": round(share, 4)}
    fix = f"sysctl -w net.netfilter.nf_conntrack_max={max(most * 2, 131072)} (kube-proxy: conntrack.maxPerCore)"
    if share >= FAIL:
        return fail(ID, f"conntrack table {share:.0%} full ({used}/{most}): new flows are dropped", fix, **evidence)
    if share >= WARN:
        return warn(ID, f"conntrack table {share:.0%} full ({used}/{most})", fix, **evidence)
    return ok(ID, f"conntrack table {share:.0%} full ({used}/{most})", **evidence)
