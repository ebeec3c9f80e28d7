"""User-facing failures: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """Bad input or an impossible request; ``exit_code`` 2 like a usage error."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int = 2) -> NoReturn:
    print(f"clew: error: {message}", file=sys.stderr)
    raise SystemExit(exit_code)
