"""``-`` for standard input wherever a command reads a file (``--objects -``, ``--ruleset -``).

The readers take paths (a folder of manifests, a file whose name errors quote), so standard
input is copied to a file named ``stdin`` in a private temporary folder, removed when the
process exits; error lines show ``-`` in place of that path (`clew.cli.errors.alias`). Only
one option of a command can read standard input.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TypeVar

from clew.cli.errors import UserError, alias

STDIN = "-"
P = TypeVar("P", str, Path, str | None, Path | None)
_taken: list[str] = []  # the option that read standard input in this command, once one has


def reset() -> None:
    """A new command starts (`clew.cli.main.main` may run several in one process, in tests)."""
    _taken.clear()


def stdin_path(flag: str, value: P) -> P:
    """``value``, or when it is ``-``, the path of a file holding standard input."""
    if value is None or str(value) != STDIN:
        return value
    if _taken:
        raise UserError(f"only one option can read standard input ('-'): {_taken[0]} already does, not {flag}")
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError(f"{flag} -: standard input is a terminal; pipe the file in (… | clew …)")
    _taken.append(flag)
    folder = tempfile.mkdtemp(prefix="clew-stdin-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "stdin"
    path.write_bytes(sys.stdin.buffer.read())
    alias(str(path), STDIN)
    return path if isinstance(value, Path) else str(path)
