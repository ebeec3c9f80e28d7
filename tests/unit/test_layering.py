"""The import rules of DESIGN.md: only the side-effect adapters import clew.kernel (through its
one runner and one namespace value), and model and netfilter import nothing else of clew."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "clew"

# Modules allowed to import clew.kernel, and why (DESIGN.md "Layering": appliers, reconcile, the
# CNI bridge, the lab builder, the trace node view and the doctor's readers, through one seam).
KERNEL_USERS = {
    "kernel": "the seam itself: one namespace value (namespace.py), one runner (runner.py)",
    "fakes": "stand-ins for the seam speak its types (Namespace, Completed, KernelError)",
    "proxy/iptables/apply.py": "the Service proxy's applier (proxy/sync.py goes through it)",
    "proxy/nftables/apply.py": "the nftables mode's applier (proxy/nftables/sync.py goes through it)",
    "podnet/reconcile.py": "the pod network's reconcile",
    "podnet/setup.py": "the pod network's applier (node setup)",
    "podnet/masquerade.py": "the pod network's applier (masquerade rules)",
    "podnet/bgp_apply.py": "the bgp backend's applier (runs BIRD)",
    "cni/bridge.py": "the CNI bridge",
    "agent/servers.py": "the agent's listeners are made inside the node's namespace (kernel.ns_socket)",
    "trace/node_view.py": "the trace node view (reads a live namespace)",
    "cli/dump.py": "a doctor's reader: clew dump captures a namespace",
    "cli/trace.py": "clew trace --verify sends the traced packet through a namespace for real (kernel.nft_trace)",
    "doctor/collect.py": "the doctor's reader: the dump's files read live from a namespace (read-only)",
    "cli/main.py": "prints a KernelError as one line (the error type only)",
    "cli/demo.py": "creates, loads and deletes its throwaway namespace",
    "cli/lab.py": "clew lab exec: the argv that enters a lab namespace",
    "lab": "the lab builder",
    "bench": "the benchmark harness builds throwaway namespaces, as the kernel tests do",
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


def test_model_netfilter_and_iproute2_are_self_contained() -> None:
    for rel, mods in modules():
        package = rel.split("/")[0]
        if package in ("model", "netfilter", "iproute2"):
            others = {m for m in mods if m.startswith("clew.") and not m.startswith(f"clew.{package}")}
            assert not others, f"{rel} imports {others}"


def test_the_check_sees_an_import() -> None:
    assert "clew.kernel" in imports(SRC / "proxy" / "iptables" / "apply.py")


def test_only_the_runner_starts_processes_in_kernel() -> None:
    """One runner: no other module of clew.kernel calls subprocess or posix_spawn."""
    starters = {"run", "Popen", "call", "check_call", "check_output", "posix_spawn", "posix_spawnp"}
    offenders = []
    for path in sorted((SRC / "kernel").glob("*.py")):
        if path.name == "runner.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            func = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(func, ast.Attribute)
                and func.attr in starters
                and isinstance(func.value, ast.Name)
                and func.value.id in ("subprocess", "os")
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_only_the_namespace_value_builds_namespace_argv() -> None:
    """One namespace value: nothing outside clew.kernel spells ``ip netns exec`` or ``nsenter``
    (it asks `Namespace.exec_argv`)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        if rel.startswith("kernel/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List | ast.Tuple):
                words = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if "nsenter" in words or any(a == "netns" and b == "exec" for a, b in itertools.pairwise(words)):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_no_setns_outside_the_kernel_layer() -> None:
    """DESIGN: clew never moves a process or thread into another namespace itself; sockets that
    must live in a node's namespace are made there by `clew.kernel.ns_socket`."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        if rel.startswith("kernel/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "setns":
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
