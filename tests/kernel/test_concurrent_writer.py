"""Item 2: a full sync loses no concurrent write. A writer thread adds and deletes rules of its
own in filter and nat (built-in chains and a chain of its own) while full syncs run at 1,500
Services (``clew.bench.writer``; the 10k × 20 figure is in the notes)."""

from __future__ import annotations

import os
import secrets

import pytest

from clew.bench import writer

pytestmark = pytest.mark.kernel


@pytest.fixture
def ns() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    return f"clewc-{secrets.token_hex(2)}"  # writer.run creates and deletes it


def test_periodic_full_syncs_keep_exactly_the_writers_rules(ns: str) -> None:
    result = writer.run(1500, 6, "periodic", ns)
    assert result.adds > 20 and result.deletes > 5, result
    assert (result.lost, result.resurrected, result.failed_deletes) == (0, 0, 0), result
    assert result.writer_chains_left
    assert result.full == 6 and result.wrote == 0  # checked each time; the tables were not replaced


def test_a_replacing_full_sync_reports_the_writes_it_may_have_lost(ns: str) -> None:
    """When the tables must be replaced (clew's part is known to differ), a write inside the
    window can still be lost; the generation fence then always reports it."""
    result = writer.run(1500, 4, "replace", ns)
    assert result.wrote == 4
    if result.lost or result.resurrected or result.failed_deletes:
        assert result.foreign_commits > 0, result
