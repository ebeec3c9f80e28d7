"""CNI errors: the spec's error codes and the error object printed on stdout.

A plugin that fails exits non-zero and prints ``{"cniVersion", "code", "msg", "details"}`` on
stdout (libcni only looks at stderr when stdout is empty). Codes 0–99 are the spec's; the Go
libraries add 8 (invalid netns) and 999 (internal). ``msg`` is one line for a human; ``details``
adds context, never a traceback.
"""

from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999


class CniError(Exception):
    """A failure the plugin reports with a spec code."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CniError({self.code}, {self.msg!r})"
