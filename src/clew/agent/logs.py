"""Structured logs: one logfmt line per event (``time=… level=info logger=clew.agent msg="…"
key=value…``), so a log pipeline can filter on fields such as ``sync=partial`` or
``object="Service ns/name"`` without parsing prose. Fields come from ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import logging
import time
from typing import Any


def _value(v: Any) -> str:
    text = str(v)
    if not text or any(c in text for c in ' ="\\\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"time={stamp}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={_value(record.getMessage())}"]  # fmt: skip
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts += [f"{k}={_value(v)}" for k, v in fields.items()]
        if record.exc_info:
            parts.append(f"error={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup(level: int = logging.INFO) -> None:
    """Route the agent's logs to stderr as logfmt."""
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
