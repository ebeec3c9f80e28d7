"""``clew lab`` as a user meets it: every subcommand's help has its defaults and an example, and
wrong use is one ``clew: error:`` line with a non-zero exit, never a traceback. No root needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["up", "apply", "status", "list", "restart", "exec", "down", "demo"]


def clew(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "clew", *args], input=stdin, capture_output=True, timeout=60,
                          check=False)  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_defaults_and_an_example(command: str) -> None:
    proc = clew("lab", command, "-h")
    assert proc.returncode == 0, proc.stderr
    assert "Example" in proc.stdout, proc.stdout
    if command not in ("list",):
        assert "[default: clew]" in proc.stdout  # --name


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["lab", "status", "--name", "hlbnone"], b"", "no lab 'hlbnone' is up"),
        (["lab", "status", "--name", "hlbnone", "-o", "yaml"], b"", "-o/--output: 'yaml' is not table or json"),
        (["lab", "list", "-o", "wide"], b"", "-o/--output: 'wide' is not table or json"),
        (["lab", "apply", "--name", "hlbnone", "-f", "-"], b"\xff\xfe", "<stdin>: not UTF-8 text"),
        (["lab", "apply", "--name", "hlbnone", "-f", "-"], b"", "<stdin>: no objects passed to apply"),
        (["lab", "apply", "--name", "hlbnone", "-f", "-"], b"kind: [", "<stdin>:2: not valid YAML"),
        (["lab", "apply", "--name", "hlbnone", "-f", "/nonexistent/app.yaml"], b"", "no such file or directory"),
    ],
)
def test_wrong_use_is_one_line(args: list[str], stdin: bytes, expected: str) -> None:
    proc = clew(*args, stdin=stdin)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    if proc.stderr.startswith("clew: error: the lab creates network namespaces"):
        pytest.skip("not root: the lab refuses before reading its input")
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("clew: error: "), proc.stderr
    assert expected in proc.stderr, proc.stderr


def test_apply_progress_draws_each_phase_on_a_terminal_and_nothing_elsewhere() -> None:
    import io

    from rich.console import Console

    from clew.cli.lab import _Progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with _Progress(5001, console) as progress:
        progress.update("pods", 2, 2)
        progress.update("objects written", 5000, 5000)
        progress.update("agents synced", 1, 2)
        progress.bar.refresh()
    drawn = out.getvalue()
    for phase in ("objects read", "pods", "objects written", "agents synced"):
        assert phase in drawn
    assert "5000/5000" in drawn and "1/2" in drawn
    quiet = _Progress(5001)  # stderr is not a terminal under pytest
    assert quiet.bar is None
    quiet.update("pods", 1, 2)  # no-op
