"""Lab tests build whole clusters (namespaces, agents, pods); skip them without root or tools."""

from __future__ import annotations

import os
import shutil

import pytest

TOOLS = ("ip", "bridge", "iptables", "iptables-restore", "iptables-save", "sysctl", "ping")


def lab_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (they build clusters of network namespaces running clew agents)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"lab tests need {', '.join(missing)} (install: bash scripts/install)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = lab_skip_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
