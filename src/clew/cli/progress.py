"""A progress line on stderr for commands that take more than a moment (benches, big renders).

Shown only when stderr is a terminal, and cleared when done (rich's transient display), so
redirected output, logs and tests see nothing of it; stdout is never touched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Step = Callable[[str], None]


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
    )
    with bar:
        task = bar.add_task(title, total=None)

        def step(what: str) -> None:
            bar.update(task, description=f"{title}: {what}")

        yield step
