"""The doctor's reader: the files of a ``clew dump``, read live from a network namespace.

The only module of the doctor that touches the kernel (through ``clew.kernel``'s one runner and
one namespace value). Read-only: every command here only prints state. ``clew dump`` writes
what `capture` returns, so ``clew doctor --from-dump`` sees what the live run saw.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from clew.doctor import facts
from clew.kernel import runner, snapshot
from clew.kernel.errors import CommandFailed
from clew.kernel.namespace import Where

# the sysctls the checks read (a superset of the trace's, clew.kernel.snapshot.SYSCTLS), by name:
# ``sysctl -a -r REGEX`` reads every sysctl of the namespace (6,346 files with 40 pods: 0.15-0.4 s,
# growing with the devices); naming the keys reads only these
SYSCTL_GLOBAL = (
    "net.ipv4.ip_forward",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_max",
)
SYSCTL_PER_DEVICE = ("rp_filter", "route_localnet", "accept_local", "src_valid_mark", "forwarding")
# what the checks read beyond the trace's files; all optional (a tool may be missing)
EXTRA: dict[str, list[str]] = {
    facts.LEGACY_FILE: ["iptables-legacy-save"],
    facts.NFT_SAVE_FILE: ["iptables-nft-save"],
    facts.NFT_RULESET_FILE: ["nft", "list", "ruleset"],
    facts.NFT_JSON_FILE: ["nft", "-j", "list", "ruleset"],
    facts.CONNTRACK_STAT_FILE: ["cat", "/proc/net/stat/nf_conntrack"],
    facts.CONNTRACK_UDP_FILE: ["conntrack", "-L", "-p", "udp"],
}


# host-wide values (one kernel for every namespace): read from this process's /proc
HOST_FILES = {
    "gc_thresh1": "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
    "gc_thresh2": "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
    "gc_thresh3": "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
}


def capture(ns: Where, *, sample_s: float = 1.0) -> dict[str, str]:
    """Every file the trace and the doctor read, for ``ns`` (optional tools that fail are left out).

    With ``sample_s`` > 0 the CPU times (steal) and conntrack counters are read again after that
    long, for the checks that look at what grows (node.steal, conntrack.errors)."""
    files = snapshot.capture(ns, skip={facts.SYSCTL_FILE})
    for name, argv in EXTRA.items():
        if name in files:  # the snapshot read it already (both iptables saves, nft -j)
            continue
        out = _optional(ns, argv)
        if out is not None:
            files[name] = out
    out = _optional(ns, ["sysctl", "-e", *sysctl_keys(files.get("ip-link.json", ""))])
    if out is not None:
        files[facts.SYSCTL_FILE] = out
    files[facts.HOST_FILE] = _host()
    offloads = _offloads(ns, files.get("ip-link.json", ""))
    if offloads is not None:
        files[facts.ETHTOOL_FILE] = offloads
    pod_links = _pod_links(ns, files.get("ip-link.json", ""))
    if pod_links is not None:
        files[facts.POD_LINKS_FILE] = pod_links
    healthz = _healthz(ns)
    if healthz is not None:
        files[facts.HEALTHZ_FILE] = healthz
    metrics = _metrics(ns)
    if metrics is not None:
        files[facts.METRICS_FILE] = metrics
    if sample_s > 0:
        before = _cpu_line()
        start = time.monotonic()
        time.sleep(sample_s)  # the measurement interval itself, not a wait for something to happen
        after = _cpu_line()
        files[facts.SAMPLE_FILE] = f"interval_s {time.monotonic() - start:.3f}\n{before}\n{after}\n"
        out = _optional(ns, EXTRA[facts.CONNTRACK_STAT_FILE])
        if out is not None:
            files[facts.CONNTRACK_AFTER_FILE] = out
    return files


def sysctl_keys(links_json: str) -> list[str]:
    """The sysctl names the checks and the trace read: the global ones, and each device's (and
    ``all``'s, ``default``'s) IPv4 settings; sysctl spells a dot in a device name as ``/``."""
    try:
        devices = [str(x["ifname"]) for x in json.loads(links_json or "[]")]
    except (ValueError, KeyError, TypeError):
        devices = []
    names = ["all", "default", *devices]
    per_device = [f"net.ipv4.conf.{d.replace('.', '/')}.{key}" for d in names for key in SYSCTL_PER_DEVICE]
    return [*SYSCTL_GLOBAL, *per_device]


def _optional(ns: Where, argv: list[str]) -> str | None:
    try:
        done = runner.run(ns, argv, check=False, timeout=10.0)
    except CommandFailed:  # not installed, or timed out
        return None
    return done.stdout if done.returncode == 0 else None


def _offloads(ns: Where, links_json: str) -> str | None:
    """``ethtool -k`` of each vxlan device (None without ethtool or without a vxlan device)."""
    try:
        vxlans = [x.name for x in facts.links_from_json(json.loads(links_json or "[]")).values() if x.kind == "vxlan"]
    except (ValueError, KeyError, TypeError):
        return None
    parts = []
    for dev in vxlans:
        out = _optional(ns, ["ethtool", "-k", dev])
        if out is None:
            return None
        parts.append(f"# dev {dev}\n{out}")
    return "".join(parts) if parts else None


_LIST_ID = re.compile(r"^nsid (\d+) \(iproute2 netns name: (.+)\)$")


def _pod_links(ns: Where, links_json: str) -> str | None:
    """The links of each bridge port's peer namespace (each pod's eth0 and its MTU), found by the
    nsid the node gives the peer and ``ip netns list-id``'s name for it; an unnamed namespace is
    recorded as such (not entered by pid: a dump holds what ``ip`` can name). None without ports."""
    try:
        doc = json.loads(links_json or "[]")
    except ValueError:
        return None
    nsids = sorted({x["link_netnsid"] for x in doc if x.get("master") and isinstance(x.get("link_netnsid"), int)})
    if not nsids:
        return None
    names: dict[int, str] = {}
    for line in (_optional(ns, ["ip", "netns", "list-id"]) or "").splitlines():
        m = _LIST_ID.match(line.strip())
        if m:
            names[int(m.group(1))] = m.group(2)
    read = _links_of(ns, sorted({names[n] for n in nsids if n in names}))
    out: dict[str, dict[str, object]] = {}
    for nsid in nsids:
        name = names.get(nsid)
        out[str(nsid)] = {"netns": name, "links": read.get(name) if name is not None else None}
    return json.dumps(out)


_LINKS_OF = 'for n in "$@"; do echo "# netns $n"; ip -n "$n" -j link show 2>/dev/null || echo null; done'


def _links_of(ns: Where, names: list[str]) -> dict[str, list[dict[str, object]] | None]:
    """Each named namespace's links (``ifindex``, ``ifname``, ``mtu``: what podnet.mtu reads), in
    one shell for all of them: one ``ip -n`` each (~4 ms) instead of one runner call each (~10-40
    ms under load: 110 pods would cost seconds). None for a namespace that could not be read."""
    if not names:
        return {}
    text = _optional(ns, ["sh", "-c", _LINKS_OF, "sh", *names]) or ""
    out: dict[str, list[dict[str, object]] | None] = dict.fromkeys(names)
    current = None
    for line in text.splitlines():
        if line.startswith("# netns "):
            current = line[len("# netns ") :]
            continue
        if current is None or not line.strip():
            continue
        try:
            doc = json.loads(line)
            out[current] = [{k: x.get(k) for k in ("ifindex", "ifname", "mtu")} for x in doc] if doc else None
        except (ValueError, AttributeError, TypeError):
            out[current] = None
    return out


def _metrics(ns: Where) -> str | None:
    """The proxy's /metrics with curl's exit code first (refused and hung differ); None without curl."""
    argv = ["curl", "-s", "-m", "2", facts.METRICS_URL]
    try:
        done = runner.run(ns, argv, check=False, timeout=10.0)
    except CommandFailed:
        return None
    return f"# curl exit {done.returncode}\n{done.stdout}"


def _healthz(ns: Where) -> str | None:
    """The proxy's /healthz: curl's exit code, the HTTP status, the body; None without curl."""
    argv = ["curl", "-s", "-m", "2", "-w", "\n# http %{http_code}\n", facts.HEALTHZ_URL]
    try:
        done = runner.run(ns, argv, check=False, timeout=10.0)
    except CommandFailed:
        return None
    return f"# curl exit {done.returncode}\n{done.stdout}"


def _cpu_line() -> str:
    return Path("/proc/stat").read_text().splitlines()[0]


def _host() -> str:
    lines = [f"kernel {os.uname().release}", f"cpus {os.cpu_count() or 0}", f"collected_at {time.time():.3f}"]
    for key, path in HOST_FILES.items():
        try:
            lines.append(f"{key} {Path(path).read_text().strip()}")
        except OSError:
            continue
    return "\n".join(lines) + "\n"
