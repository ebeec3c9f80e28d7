"""The netlink rule reader's pure parts: attributes (padding, flags masked) and one rule message
to (chain, bytes) — handles and positions left out, so the same rule reads the same."""

from __future__ import annotations

import struct

from clew.kernel.nft_rules import (
    NFTA_RULE_CHAIN,
    NFTA_RULE_EXPRESSIONS,
    NFTA_RULE_TABLE,
    _attr,
    parse_attrs,
    parse_rule,
)

NFTA_RULE_HANDLE = 3


def message(chain: str, expressions: bytes, handle: int) -> bytes:
    body = struct.pack("=BBH", 2, 0, 0)
    body += _attr(NFTA_RULE_TABLE, b"clew\0") + _attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
    body += _attr(NFTA_RULE_HANDLE, struct.pack(">Q", handle)) + _attr(NFTA_RULE_EXPRESSIONS | 0x8000, expressions)
    return struct.pack("=IHHII", 16 + len(body), 0x0A06, 2, 1, 0) + body


def test_attributes_are_padded_and_flags_masked() -> None:
    data = _attr(1, b"abc") + _attr(4 | 0x8000, b"xy")
    assert len(_attr(1, b"abc")) == 8
    assert parse_attrs(data) == {1: b"abc", 4: b"xy"}


def test_a_rule_reads_the_same_whatever_its_handle() -> None:
    a = parse_rule(message("services", b"\x01\x02\x03", handle=5))
    b = parse_rule(message("services", b"\x01\x02\x03", handle=99))
    assert a == b and a is not None and a[0] == "services"
    assert parse_rule(message("services", b"\x01\x02\x04", handle=5)) != a
