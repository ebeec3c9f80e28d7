"""kube-proxy's bounded-frequency sync runner, with an injected clock.

``request()`` asks for a sync (coalescing: many requests before the next sync are one sync).
``due(now)`` says whether to sync now: a requested sync waits until ``min_interval`` has passed
since the previous one *ended*; without requests a sync still happens every ``max_interval``
(kube-proxy's syncPeriod: re-asserting the rules); after a failure the next try comes after
``retry_interval``. Pure bookkeeping: the loop that sleeps and syncs lives with the caller, so
tests drive it with a fake clock and never sleep.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SyncRunner:
    min_interval: float = 1.0  # kube-proxy minSyncPeriod
    max_interval: float = 30.0  # kube-proxy syncPeriod
    retry_interval: float = 30.0
    last_end: float | None = None
    pending: bool = True  # the first sync is always due
    failed: bool = False
    requested_after_end: bool = False  # a request came in after the last sync ended

    def request(self) -> None:
        self.pending = True
        self.requested_after_end = True

    def due(self, now: float) -> bool:
        if self.last_end is None:
            return True
        since = now - self.last_end
        if self.pending and self.requested_after_end:
            return since >= self.min_interval  # a new change runs soon, failure or not (kube-proxy)
        if self.failed:
            return since >= min(self.retry_interval, self.max_interval)
        if self.pending:
            return since >= self.min_interval
        return since >= self.max_interval

    def next_due(self, now: float) -> float:
        """Seconds until `due` turns true (0 if it is)."""
        if self.last_end is None:
            return 0.0
        if self.pending and self.requested_after_end:
            wait = self.min_interval
        elif self.failed:
            wait = min(self.retry_interval, self.max_interval)
        elif self.pending:
            wait = self.min_interval
        else:
            wait = self.max_interval
        return max(0.0, self.last_end + wait - now)

    def done(self, end: float, *, ok: bool) -> None:
        """Record a sync that ended at ``end``."""
        self.last_end = end
        self.failed = not ok
        self.requested_after_end = False
        if ok:
            self.pending = False
