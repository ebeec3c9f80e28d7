"""``forward.ip_forward``: IPv4 forwarding must be on, or no pod traffic leaves the node."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "forward.ip_forward"
KEY = "net.ipv4.ip_forward"


def check(f: NodeFacts) -> Finding:
    value = f.sysctl(KEY)
    if value is None:
        return skip(ID, "sysctls not collected (no sysctl.txt)")
    if value != "1":
        return fail(
            ID,
            "IPv4 forwarding is off: pod and Service traffic cannot cross the node",
            f"sysctl -w {KEY}=1 (and persist it in /etc/sysctl.d/)",
            **{KEY: value},
        )
    return ok(ID, "IPv4 forwarding is on", **{KEY: value})
