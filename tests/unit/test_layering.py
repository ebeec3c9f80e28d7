"""The import rules of DESIGN.md: only the side-effect adapters import clew.kernel, and model and
netfilter import nothing else of clew."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "clew"

# Modules allowed to import clew.kernel (the appliers, the CLI and the benchmark harness).
KERNEL_USERS = {
    "kernel",
    "proxy/iptables/apply.py",
    "podnet/reconcile.py",
    "podnet/setup.py",
    "podnet/masquerade.py",
    "trace/node_view.py",
    "cni/bridge.py",
    "cli",
    "bench",
    "lab",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules() -> list[tuple[str, set[str]]]:
    return [(str(p.relative_to(SRC)), imports(p)) for p in sorted(SRC.rglob("*.py"))]


def test_only_adapters_import_kernel() -> None:
    offenders = [
        rel
        for rel, mods in modules()
        if any(m == "clew.kernel" or m.startswith("clew.kernel.") for m in mods)
        and not any(rel == allowed or rel.startswith(allowed + "/") for allowed in KERNEL_USERS)
    ]
    assert offenders == []


def test_model_and_netfilter_are_self_contained() -> None:
    for rel, mods in modules():
        package = rel.split("/")[0]
        if package in ("model", "netfilter"):
            others = {m for m in mods if m.startswith("clew.") and not m.startswith(f"clew.{package}")}
            assert not others, f"{rel} imports {others}"


def test_the_check_sees_an_import() -> None:
    assert "clew.kernel" in imports(SRC / "proxy" / "iptables" / "apply.py")
