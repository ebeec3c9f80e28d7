"""Wait for a condition with a deadline instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    predicate: Callable[[], T],
    deadline_s: float,
    interval: float = 0.05,
    what: str | None = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Raises ``TimeoutError`` naming ``what`` (or the predicate) and the last value seen if it is
    still falsy after ``deadline_s`` seconds. An exception from the predicate propagates.
    """
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            name = what or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(f"{name} still false after {deadline_s:g}s (last value: {value!r})")
        time.sleep(interval)
