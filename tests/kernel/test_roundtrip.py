"""render → load → iptables-save → parse → the same rules, for every golden scenario.

Each scenario's standalone render is loaded with plain ``iptables-restore`` (no ``--noflush``)
into an empty throwaway namespace; what ``iptables-save`` prints back must parse without
warnings into the same chains holding, in order, rules with the same `canonical` form. This is
the contract that lets ``clew trace`` read a live node's rules as clew meant them.
"""

from __future__ import annotations

import importlib
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clew.kernel import iptables, netns
from clew.netfilter.iptables_save import parse
from clew.netfilter.rules import Ruleset, canonical

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
if str(GOLDEN) not in sys.path:
    sys.path.insert(0, str(GOLDEN))
golden = importlib.import_module("scenario")  # tests/golden/scenario.py, as test_golden imports it

pytestmark = pytest.mark.kernel
SCENARIOS = golden.scenarios()

# ``-m nfacct`` needs its counter object to exist (nfnetlink_acct, per namespace). No nfacct
# tool is installed, so this creates them with one NFNL_MSG_ACCT_NEW netlink message each; it
# runs as a child process inside the namespace (``ip netns exec``), never in ours.
NFACCT_ADD = r"""
import socket, struct, sys
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
for seq, name in enumerate(sys.argv[1:], 1):
    raw = name.encode() + b"\0"
    attr = struct.pack("HH", 4 + len(raw), 1) + raw + b"\0" * (-len(raw) % 4)  # NFACCT_NAME
    body = struct.pack("BBH", 0, 0, 0) + attr  # nfgenmsg: AF_UNSPEC, version 0, res_id 0
    # NFNL_SUBSYS_ACCT << 8 | NFNL_MSG_ACCT_NEW; NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    sock.send(struct.pack("IHHII", 16 + len(body), 7 << 8, 0x405, seq, 0) + body)
    error = struct.unpack_from("i", sock.recv(4096), 16)[0]
    if error:
        sys.exit(f"nfacct {name}: errno {-error}")
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    for _ in range(100):
        name = f"clewp-{secrets.token_hex(2)}"
        if not netns.exists(name):
            break
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def chains(rs: Ruleset) -> dict[tuple[str, str], list[Any]]:
    return {(t.name, c.name): c.rules for t in rs.tables.values() for c in t.chains.values()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_render_comes_back_from_iptables_save_as_the_same_rules(scenario: Any, namespace: str) -> None:
    text = scenario.render().text(standalone=True)
    counters = sorted(set(re.findall(r"--nfacct-name\s+(\S+)", text)))
    if counters:
        netns.run(namespace, [sys.executable, "-c", NFACCT_ADD, *counters])
    iptables.restore(namespace, text, noflush=False)
    saved = iptables.save(namespace)

    rendered, loaded = parse(text, origin=f"{scenario.name} render"), parse(saved, origin="iptables-save")
    assert rendered.warnings == [] and loaded.warnings == []
    want, got = chains(rendered), chains(loaded)
    assert set(want) <= set(got), f"chains missing after the load: {sorted(set(want) - set(got))}"
    extra = {key for key, rules in got.items() if key not in want and rules}
    assert extra == set(), f"chains with rules that the render does not have: {sorted(extra)}"
    problems = []
    for key, rules in want.items():
        if [canonical(r) for r in rules] != [canonical(r) for r in got[key]]:
            lines = [f"{'/'.join(key)}:"]
            lines += [f"  render: {r.text}" for r in rules]
            lines += [f"  saved:  {r.text}" for r in got[key]]
            problems.append("\n".join(lines))
    assert not problems, "rules changed on the way through the kernel:\n" + "\n".join(problems)
