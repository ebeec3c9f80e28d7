"""``proxy.sync``: is the Service proxy syncing? Read from its /metrics (kube-proxy's names,
which clew's agent serves too): a sync queued and not done for over a minute (what kube-proxy's
/healthz calls unhealthy, 2 × the default 30 s syncPeriod), no sync at all for over two minutes,
restore failures (iptables and IPVS modes: ``…_iptables_restore_failures_total``; nftables mode:
``…_nftables_sync_failures_total`` and ``…_nftables_cleanup_failures_total``, the last one
counting failed removals of the other mode's rules), and a proxy that accepts the connection but
never answers (hung)."""

from __future__ import annotations

from clew.doctor.checks.proxy_mode import modes
from clew.doctor.facts import METRICS_URL, NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn
from clew.doctor.proxy_state import NFTABLES_MODES

ID = "proxy.sync"
LAST = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
IPTABLES_FAILURES = (
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
)
NFTABLES_FAILURES = (
    "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
    "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total",
)


def failure_metrics(found: list[str]) -> tuple[str, ...]:
    """The failure counters of the modes on the node (kube-proxy serves its mode's only)."""
    names: tuple[str, ...] = ()
    if any(m in NFTABLES_MODES for m in found):
        names += NFTABLES_FAILURES
    if any(m not in NFTABLES_MODES for m in found):
        names += IPTABLES_FAILURES
    return names


QUEUED_LIMIT_S = 60.0
IDLE_LIMIT_S = 120.0
CURL_REFUSED, CURL_TIMEOUT = 7, 28


def check(f: NodeFacts) -> Finding:
    m = f.metrics
    if m is None:
        return skip(ID, "the proxy's /metrics was not read (no curl, or a dump without proxy-metrics.txt)")
    found = modes(f)
    if not found:
        return skip(ID, "no Service proxy rules on this node (see proxy.mode)")
    restart = "restart the proxy (clew agent / kube-proxy) and read its log"
    if m.curl_exit == CURL_REFUSED:
        return skip(ID, f"nothing listens on {METRICS_URL} (metricsBindAddress elsewhere?)", url=METRICS_URL)
    if m.curl_exit == CURL_TIMEOUT:
        return fail(
            ID,
            f"the proxy accepts {METRICS_URL} but does not answer in 2 s: hung or stopped",
            restart,
            url=METRICS_URL,
            curl_exit=m.curl_exit,
        )
    if m.curl_exit != 0 or LAST not in m.values:
        return skip(ID, f"{METRICS_URL} gave no {LAST} (curl exit {m.curl_exit})", url=METRICS_URL)
    try:
        now = float(f.host["collected_at"])
    except (KeyError, ValueError):
        return skip(ID, "the collection time is unknown (host.txt)")
    last, queued = m.values[LAST], m.values.get(QUEUED, 0.0)
    failures = {name.split("_rules_")[1]: int(m.values.get(name, 0)) for name in failure_metrics(found)}
    evidence = {
        "last_sync_age_s": round(now - last, 1),
        "queued_unsynced_s": round(now - queued, 1) if queued > last else 0.0,
        "failures": failures,
        "syncs": {
            kind: int(m.values.get(f"kubeproxy_sync_{kind}_proxy_rules_duration_seconds_count", 0))
            for kind in ("full", "partial")
        },
    }
    if queued > last and now - queued > QUEUED_LIMIT_S:
        return fail(
            ID,
            f"a sync queued {now - queued:.0f}s ago has not run (last sync {now - last:.0f}s ago)",
            restart,
            **evidence,
        )
    if now - last > IDLE_LIMIT_S:
        return fail(
            ID, f"no successful sync for {now - last:.0f}s (syncPeriod is 30 s by default)", restart, **evidence
        )
    if any(failures.values()):
        return warn(
            ID,
            f"sync failures since the proxy started: {failures}",
            "read the proxy's log for the failing iptables-restore / nft transaction",
            **evidence,
        )
    return ok(ID, f"last sync {now - last:.0f}s ago, no sync failure", **evidence)
