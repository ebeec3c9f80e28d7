"""kube-proxy's proxy health (``/healthz``, ``/livez``) as a small pure class with an injected clock.

The rule (pkg/proxy/healthcheck/proxy_health.go): the proxy is healthy unless an update has been
queued (a change that needs a sync) and has stayed unsynced for longer than ``2 × syncPeriod``.
Idle, starting or caught up is healthy; a sync that fails keeps the queued update pending, so a
proxy that keeps failing turns unhealthy after the timeout. ``/livez`` reports only that;
``/healthz`` is also 503 while the node is not eligible (the Node is missing, being deleted, or
tainted ``ToBeDeletedByClusterAutoscaler``) so that load balancers drain it first, and (clew's
addition) while the agent's source cannot be read: its rules are the last good ones, frozen.

The body is kube-proxy's JSON (v1.33+): ``{"lastUpdated", "currentTime", "nodeEligible" (healthz
only), "healthy", "status": {"IPv4": {"lastUpdated", "healthy"}}}``, compact, with Go's RFC 3339
timestamps; when healthy the top-level ``lastUpdated`` is *now*, as kube-proxy keeps for the
older clients that read it as "the sync loop is running".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

IP_FAMILY = "IPv4"  # clew proxies IPv4 only: one proxier, one family
HEADERS = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}


def go_time(t: float | None) -> str:
    """A Unix time as Go's ``time.Time`` marshals to JSON (RFC 3339, trailing zeros trimmed).

    None is Go's zero time, ``0001-01-01T00:00:00Z``.
    """
    if t is None:
        return "0001-01-01T00:00:00Z"
    dt = datetime.fromtimestamp(t, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


class ProxyHealth:
    """Queued / updated bookkeeping and the two probe responses; safe to share with server threads."""

    def __init__(
        self,
        sync_period: float,
        *,
        clock: Callable[[], float] = time.time,
        node_eligible: Callable[[], bool] = lambda: True,
    ) -> None:
        self.timeout = 2 * sync_period  # kube-proxy's healthTimeout
        self.clock = clock
        self.node_eligible = node_eligible
        self._lock = threading.Lock()
        self.last_updated: float | None = None
        self.oldest_queued: float | None = None
        self.source_problem: str | None = None  # set by the agent while its source cannot be read

    def queued_update(self) -> None:
        """A change needs a sync: start the clock unless an older change is already waiting."""
        with self._lock:
            if self.oldest_queued is None:
                self.oldest_queued = self.clock()

    def updated(self) -> None:
        """The rules reflect every change so far (a successful sync, or the sync loop starting)."""
        with self._lock:
            self.oldest_queued = None
            self.last_updated = self.clock()

    def set_source_problem(self, problem: str | None) -> None:
        """The agent's source cannot be read (why), or can again (None)."""
        with self._lock:
            self.source_problem = problem

    def healthy(self, now: float | None = None) -> bool:
        with self._lock:
            return self._healthy(self.clock() if now is None else now)

    def _healthy(self, now: float) -> bool:
        if self.last_updated is None or self.oldest_queued is None:
            return True  # starting up, or fully synced
        return now - self.oldest_queued < self.timeout

    def livez(self) -> tuple[int, bytes]:
        """Status code and body of ``/livez``: the proxy's own health."""
        return self._probe(with_node=False)

    def healthz(self) -> tuple[int, bytes]:
        """Status code and body of ``/healthz``: the proxy's health and the node's eligibility."""
        return self._probe(with_node=True)

    def _probe(self, *, with_node: bool) -> tuple[int, bytes]:
        eligible = self.node_eligible() if with_node else True
        with self._lock:
            now = self.clock()
            proxy_ok = self._healthy(now)
            last = self.last_updated
            source_ok = self.source_problem is None or not with_node  # a restart would not help: livez stays
        ok = proxy_ok and eligible and source_ok
        body: dict[str, Any] = {"lastUpdated": go_time(now if ok else last), "currentTime": go_time(now)}
        if with_node:
            body["nodeEligible"] = eligible
        body["healthy"] = proxy_ok
        if last is not None:
            body["status"] = {IP_FAMILY: {"lastUpdated": go_time(last), "healthy": proxy_ok}}
        return (200 if ok else 503), json.dumps(body, separators=(",", ":")).encode()
