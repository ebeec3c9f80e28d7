"""JSON on stdout, each document marked with what it is and its version, as kubectl's are.

``apiVersion`` (``clew.<group>/v1``) and ``kind`` come first; the fields below them stay as
they were, so scripts that read them keep working, and a later change of shape can say so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def versioned(doc: Mapping[str, Any], group: str, kind: str) -> dict[str, Any]:
    return {"apiVersion": f"clew.{group}/v1", "kind": kind, **doc}


def print_json(doc: Mapping[str, Any], group: str, kind: str, *, indent: int | None = None) -> None:
    print(json.dumps(versioned(doc, group, kind), indent=indent))
