"""A progress line on stderr for commands that take more than a moment (benches, big renders).

Shown only when stderr is a terminal, and only once the work has taken a second (quick runs
draw nothing); cleared when done (rich's transient display). Redirected output, logs and tests
see nothing of it, and stdout is never touched: lines the command writes to stderr meanwhile
are printed above the spinner.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Step = Callable[[str], None]
F = TypeVar("F", bound=Callable[..., Any])
DELAY_S = 1.0


def _quiet(what: str) -> None:
    """Not a terminal: nothing to draw."""


@contextmanager
def progress(title: str) -> Iterator[Step]:
    """A spinner with ``title``, the current step and the time elapsed; yields ``step(what)``."""
    if not sys.stderr.isatty():
        yield _quiet
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=True,
    )
    task = bar.add_task(title, total=None)
    timer = threading.Timer(DELAY_S, bar.start)
    timer.daemon = True
    timer.start()

    def step(what: str) -> None:
        bar.update(task, description=f"{title}: {what}")

    try:
        yield step
    finally:
        timer.cancel()
        timer.join()
        bar.stop()  # a no-op when it never started


def shows_progress(title: str) -> Callable[[F], F]:
    """A command decorator: `progress` for the whole command (typer reads the wrapped signature)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with progress(title):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap
