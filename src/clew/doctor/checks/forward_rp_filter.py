"""``forward.rp_filter``: strict reverse-path filtering (1) on the vxlan device, the pod bridge
or pod veths drops pod traffic whose source is routed elsewhere. The kernel applies the larger
of ``all`` and the device's value; loose (2) is fine."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip

ID = "forward.rp_filter"


def check(f: NodeFacts) -> Finding:
    if f.sysctls is None:
        return skip(ID, "sysctls not collected (no sysctl.txt)")
    devices = [v.name for v in f.vxlans()]
    for b in f.bridges():
        devices.append(b.name)
        devices.extend(p.name for p in f.ports(b.name))
    if not devices:
        return skip(ID, "no vxlan device, bridge or pod veth on this node")
    all_value = int(f.sysctl("net.ipv4.conf.all.rp_filter") or "0")
    effective = {d: max(all_value, int(f.dev_sysctl(d, "rp_filter") or "0")) for d in devices}
    strict = [d for d, v in effective.items() if v == 1]
    evidence = {"all": all_value, "effective": effective}
    if strict:
        keys = ["net.ipv4.conf.all.rp_filter=2"] if all_value == 1 else []
        keys += [
            f"net.ipv4.conf.{d.replace('.', '/')}.rp_filter=2" for d in strict if f.dev_sysctl(d, "rp_filter") == "1"
        ]
        return fail(
            ID,
            f"strict reverse-path filtering on {', '.join(strict)}",
            f"sysctl -w {' '.join(keys)} (loose; or 0)",
            **evidence,
        )
    return ok(ID, f"no strict reverse-path filtering on {len(devices)} pod network devices", **evidence)
