"""The parts of `clew.kernel.nftables.NodeNft` that need no root: nft's errors as one line, the
fallback to ``nft -f -`` without python3-nftables (said once in the log), a closed context.
The rest — the worker in a namespace, its life, the kernel's answers — is in
tests/kernel/test_nft_kernel.py."""

from __future__ import annotations

import logging

import pytest

from clew.kernel import nftables
from clew.kernel.errors import KernelError
from clew.kernel.nftables import NodeNft, has_table_in, one_line


def test_one_line_errors() -> None:
    err = (
        "/proc/self/fd/4:3:22-28: Error: Could not process rule: File exists\n"
        "add element ip t m { 10.0.0.1 : 10.0.0.3 }\n                     ^^^^^^^\n"
        "/proc/self/fd/4:4:1-5: Error: Could not process rule: File exists\nadd x\n^^^^^\n"
    )
    assert one_line(err) == (
        "Error: Could not process rule: File exists [line 3: add element ip t m { 10.0.0.1 : 10.0.0.3 }]"
        " (+1 more errors)"
    )
    assert one_line("netlink: Error: set is not a map\n") == "Error: set is not a map"
    assert one_line("Error: x\n" + "y" * 300 + "\n").endswith("y …]")
    assert one_line("") == "(no message)"


def test_has_table_reads_a_tables_listing() -> None:
    listing = {"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "clew", "handle": 1}}]}
    assert has_table_in(listing, "ip", "clew")
    assert not has_table_in(listing, "inet", "clew") and not has_table_in({}, "ip", "clew")


def test_without_python3_nftables_it_falls_back_to_nft_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(nftables, "nftables_importable", lambda: False)
    monkeypatch.setattr(nftables, "_fallback_logged", False)
    with caplog.at_level(logging.WARNING, logger="clew.kernel.nftables"):
        first, second = NodeNft(None), NodeNft(None)
    assert first.mechanism == second.mechanism == "nft-cli" and first.worker_pid is None
    assert [r.getMessage() for r in caplog.records] == [
        "nftables: python3-nftables is not importable; using `nft -f -` per transaction (slower)"
    ]
    first.close()
    assert first.mechanism == "closed"
    with pytest.raises(KernelError, match="the current netns: the nftables context is closed"):
        first.run("add table ip clew")
    second.run("   ")  # an empty script asks nothing of the kernel
    second.close()
