"""The README's first two commands work as written in a root shell on a fresh Debian machine.

A fresh Debian has no ``sudo`` (root logs in directly), so a command starting with ``sudo`` fails
there with "sudo: command not found". The commands are parsed as a shell would split them and
each program is looked up as a root login shell does: a bare name on root's default ``PATH``, a
path relative to the repository's folder (where the README says to run them).
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's root PATH
INSTALLED = {".venv/bin/clew", ".venv/bin/pytest"}  # what scripts/install creates (pip install -e '.[dev]')


def first_commands(text: str) -> list[str]:
    """The first ``sh`` block's command lines, without their ``#`` comments."""
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def simple_commands(line: str) -> list[list[str]]:
    """``a b && c d`` → ``[["a", "b"], ["c", "d"]]`` (only ``&&`` is expected in these lines)."""
    out: list[list[str]] = [[]]
    for word in shlex.split(line, comments=True):
        if word == "&&":
            out.append([])
        else:
            out[-1].append(word)
    return out


def test_readme_opens_with_exactly_two_commands() -> None:
    lines = first_commands((ROOT / "README.md").read_text())
    assert len(lines) == 2, lines
    assert (ROOT / "README.md").read_text().startswith("# clew\n\n```sh\n")


def test_readme_commands_need_no_sudo_and_find_their_programs_as_root() -> None:
    for line in first_commands((ROOT / "README.md").read_text()):
        for argv in simple_commands(line):
            assert argv, line
            program = argv[0]
            assert program not in ("sudo", "su", "doas"), f"{line!r}: a fresh Debian root shell has no {program}"
            assert "sudo" not in argv, line
            if "/" in program:  # the tests run after scripts/install, so what it installs is there
                assert program in INSTALLED, f"{line!r}: {program} is not something scripts/install makes"
                assert os.access(ROOT / program, os.X_OK), f"{line!r}: {program} not executable after install"
            else:
                assert shutil.which(program, path=ROOT_PATH), f"{line!r}: {program} not on root's PATH {ROOT_PATH}"
            if program == "bash":
                assert (ROOT / argv[1]).is_file(), f"{line!r}: {argv[1]} missing"


def test_install_script_uses_no_sudo() -> None:
    words = shlex.split((ROOT / "scripts/install").read_text(), comments=True)
    assert "sudo" not in words
