"""``proxy.healthz``: the proxy's /healthz (127.0.0.1:10256, kube-proxy's healthzBindAddress
default), which cloud load balancers probe to decide whether this node gets Service traffic.

* unreachable: refused → warn (load balancers that probe it drop the node; or the port is moved),
  no answer in 2 s → fail (hung, as proxy.sync's /metrics);
* 503 with ``healthy: false`` → fail: an update queued for over 2 × syncPeriod is not in the rules;
  503 with only ``nodeEligible: false`` → warn: the node is drained on purpose (Node deleted or
  tainted for the autoscaler) — or, for clew's agent, its source cannot be read;
* stale: a 200 whose ``currentTime`` is over a minute off the node's clock at collection (a
  cached or frozen answerer, or clock skew) → warn. An old ``status.IPv4.lastUpdated`` alone is
  not stale: kube-proxy stays healthy while idle (its age is evidence; proxy.sync judges syncs).
"""

from __future__ import annotations

from datetime import datetime

from clew.doctor.checks.proxy_mode import modes
from clew.doctor.facts import HEALTHZ_URL, NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip, warn

ID = "proxy.healthz"
CURL_REFUSED, CURL_TIMEOUT = 7, 28
SKEW_LIMIT_S = 60.0
RESTART = "restart the proxy (clew agent / kube-proxy) and read its log"


def _seconds(text: object) -> float | None:
    """Go's RFC 3339 time (``2026-12-06T10:42:05.01157Z``) as Unix seconds."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check(f: NodeFacts) -> Finding:
    h = f.healthz
    if h is None:
        return skip(ID, "the proxy's /healthz was not read (no curl, or a dump without proxy-healthz.txt)")
    if not modes(f):
        return skip(ID, "no Service proxy rules on this node (see proxy.mode)")
    evidence: dict[str, object] = {"url": HEALTHZ_URL, "curl_exit": h.curl_exit, "http": h.http}
    if h.curl_exit == CURL_REFUSED:
        return warn(
            ID,
            f"nothing listens on {HEALTHZ_URL}: load balancers probing it take this node out",
            "set the proxy's healthzBindAddress to 0.0.0.0:10256 (kube-proxy's default), or point the probes elsewhere",
            **evidence,
        )
    if h.curl_exit == CURL_TIMEOUT:
        return fail(
            ID, f"the proxy accepts {HEALTHZ_URL} but does not answer in 2 s: hung or stopped", RESTART, **evidence
        )
    if h.curl_exit != 0 or h.body is None:
        return skip(ID, f"{HEALTHZ_URL} gave no JSON answer (curl exit {h.curl_exit}, HTTP {h.http})", **evidence)
    body = h.body
    evidence["healthy"] = body.get("healthy")
    evidence["node_eligible"] = body.get("nodeEligible")
    current = _seconds(body.get("currentTime"))
    status = body.get("status")
    family = status.get("IPv4") if isinstance(status, dict) else None
    last = _seconds(family.get("lastUpdated")) if isinstance(family, dict) else None
    if current is not None and last is not None:
        evidence["last_updated_age_s"] = round(current - last, 1)
    if h.http == 503:
        if body.get("healthy") is False:
            return fail(
                ID,
                "/healthz is 503: a queued update has not reached the rules for over 2 × syncPeriod",
                RESTART + " (and proxy.sync's evidence)",
                **evidence,
            )
        if body.get("nodeEligible") is False:
            return warn(
                ID,
                "/healthz is 503: the node is not eligible (Node missing, being deleted, or tainted "
                "ToBeDeletedByClusterAutoscaler): load balancers drain it",
                "kubectl get node NODE -o yaml (deletionTimestamp, taints); expected while a node is drained",
                **evidence,
            )
        return fail(ID, "/healthz is 503 (the proxy's source or sync is unhealthy)", RESTART, **evidence)
    if h.http != 200:
        return fail(ID, f"/healthz answered HTTP {h.http}", RESTART, **evidence)
    try:
        now = float(f.host["collected_at"])
    except (KeyError, ValueError):
        now = None
    if now is not None and current is not None:
        skew = current - now
        evidence["clock_offset_s"] = round(skew, 1)
        if abs(skew) > SKEW_LIMIT_S:
            return warn(
                ID,
                f"/healthz is 200 but its currentTime is {skew:+.0f}s off the node's clock: a stale answer",
                "check what answers on :10256 (ss -ltnp 'sport = :10256') and the node's clock (chronyc tracking)",
                **evidence,
            )
    return ok(ID, "/healthz is 200 (healthy)", **evidence)
