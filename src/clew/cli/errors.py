"""User-facing failures: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

_ALIASES: dict[str, str] = {}  # a temporary path → what the user gave (stdin's "-")


class UserError(Exception):
    """Bad input or an impossible request; ``exit_code`` 2 like a usage error."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def shown(message: str) -> str:
    """``message`` with temporary paths replaced by what the user gave (see `alias`)."""
    for path, given in _ALIASES.items():
        message = message.replace(path, given)
    return message


def fail(message: str, exit_code: int = 2) -> NoReturn:
    print(f"clew: error: {shown(message)}", file=sys.stderr)
    raise SystemExit(exit_code)


def alias(path: str, given: str) -> None:
    """From now on, lines printed through `shown` and `fail` say ``given`` for ``path`` (a file
    holding standard input says ``-``). Kept for the process's life: errors print after the
    command, and its files, are gone."""
    _ALIASES[path] = given
