"""The nftables side of the kernel seam: what the nftables proxy mode (and the tools that read
nftables) may ask of a node's netfilter. Implemented for real by `NodeNft` (a long-lived
libnftables context inside the node's namespace) and by a stateful fake in
``clew.fakes.nft`` for tests without root.

Contract (both implementations):
* ``run(script)``: one atomic transaction of nft commands (``add``/``delete``/``flush``/
  ``create`` of tables, chains, sets, maps, elements and rules). All or nothing; on refusal it
  raises `clew.kernel.errors.KernelError` with nft's message and changes nothing.
* ``check(script)``: as ``run`` but only checks (``nft -c``): nothing changes.
* ``list_json(what)``: ``nft -j list <what>`` parsed (``"ruleset"``, ``"table ip clew"``,
  ``"chains"``…); reading a table of 100k elements costs seconds: not per sync.
* ``has_table(family, name)``: cheap existence check.
* ``close()``: release the context (the worker process, if any).
"""

from __future__ import annotations

from typing import Any, Protocol


class NftKernel(Protocol):
    def run(self, script: str) -> None: ...

    def check(self, script: str) -> None: ...

    def list_json(self, what: str = "ruleset") -> dict[str, Any]: ...

    def has_table(self, family: str, name: str) -> bool: ...

    def close(self) -> None: ...
