"""pytest (rootdir-relative imports, no packages) refuses two test modules with one basename in
different folders: the whole run stops at collection. Caught here, in the unit suite, by name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name.startswith("test_"))
    assert [n for n, c in names.items() if c > 1] == []
