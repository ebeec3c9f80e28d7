"""``clew dump`` and ``clew trace --netns`` on a real namespace given as /run/netns/NAME, and
``clew dump`` into a path it cannot write: one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clew.kernel import netns

pytestmark = pytest.mark.kernel


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"hcl-dump-{os.getpid()}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def clew(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clew", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_namespace_path_is_its_name(namespace: str, tmp_path: Path) -> None:
    path = f"/run/netns/{namespace}"
    dumped = clew("dump", "--netns", path, str(tmp_path / "d"))
    assert dumped.returncode == 0, dumped.stderr
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert (meta["apiVersion"], meta["netns"]) == ("clew.dump/v1", namespace)
    traced = clew("trace", "--netns", path, "--src", "10.0.0.1", "--dst", "10.0.0.2", "--json")
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout)["apiVersion"] == "clew.trace/v1"


def test_dump_into_a_file_is_one_line(namespace: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = clew("dump", "--netns", namespace, str(blocker / "sub"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("clew: error: "), proc.stderr
