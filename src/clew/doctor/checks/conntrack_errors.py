"""``conntrack.errors``: ``insert_failed`` and ``drop`` counters growing over the sample.

A failed insert drops the packet that lost a race for the same tuple — with UDP DNS through a
Service, the client retries after 5 s (kubernetes #56903); ``drop`` counts packets dropped
because the table was full. Growth during the sample is a warning for insert_failed, a failure
for drop; the totals since the namespace began are evidence only."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn

ID = "conntrack.errors"
COUNTERS = ("insert_failed", "drop", "early_drop")


def check(f: NodeFacts) -> Finding:
    before, after = f.conntrack_stats, f.conntrack_after
    if before is None or after is None or f.cpu_sample is None:
        return skip(ID, "no conntrack counter sample (--sample 0, or /proc/net/stat/nf_conntrack unreadable)")
    grew = {c: after.get(c, 0) - before.get(c, 0) for c in COUNTERS}
    evidence = {"interval_s": f.cpu_sample.interval_s, "grew": grew, "totals": {c: after.get(c, 0) for c in COUNTERS}}
    if grew["drop"] > 0:
        return fail(
            ID,
            f"conntrack dropped {grew['drop']} packets in {f.cpu_sample.interval_s:g}s (table full)",
            "raise net.netfilter.nf_conntrack_max (see conntrack.usage)",
            **evidence,
        )
    if grew["insert_failed"] > 0:
        return warn(
            ID,
            f"{grew['insert_failed']} conntrack inserts failed in {f.cpu_sample.interval_s:g}s "
            "(races: the DNS 5-second delays)",
            "use --random-fully on MASQUERADE, NodeLocal DNSCache, or TCP for DNS (options single-request-reopen)",
            **evidence,
        )
    return ok(ID, f"no conntrack insert failure or drop over {f.cpu_sample.interval_s:g}s", **evidence)
