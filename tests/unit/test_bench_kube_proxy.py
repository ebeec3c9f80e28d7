"""kube-proxy's payload shapes for ``clew bench sync``, checked without root.

A small model of ``iptables-restore --noflush`` (a declared chain is created or flushed, ``-A``
appends to a declared or existing chain, ``-X`` deletes an empty, unreferenced chain, and no
rule may jump to a chain that does not exist at COMMIT) applies the payloads: kube-proxy's
partial sync after each kind of change must leave exactly the rules of a full render of the
new state, and must rewrite the shared chains in full while leaving unchanged Services' alone.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clew.bench.kube_proxy import KubeProxyPayloads
from clew.bench.sync import CONFIG
from clew.bench.synthetic import objects
from clew.model.from_kube import build_snapshot
from clew.proxy.iptables.render import FILTER_TOP_CHAINS, NAT_TOP_CHAINS, render
from clew.proxy.policy import PortPolicy, decide

State = dict[str, dict[str, list[str]]]  # table → chain → rules
TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "MARK", "DNAT", "MASQUERADE", "SNAT"}


def restore_noflush(state: State, text: str) -> State:
    """``iptables-restore --noflush`` of ``text`` over ``state`` (a new state; the kernel's rules)."""
    out = copy.deepcopy(state)
    table: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = out.setdefault(line[1:], {})
        elif line.startswith(":"):
            assert table is not None
            table[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            assert table is not None
            chain = line.split()[1]
            assert chain in table, f"-A to a chain neither declared nor present: {line}"
            table[chain].append(line)
        elif line.startswith("-X "):
            assert table is not None
            chain = line.split()[1]
            assert chain in table and not table[chain], f"-X of a missing or non-empty chain: {line}"
            assert not any(f"-j {chain}" in r for rules in table.values() for r in rules), f"-X of a used chain: {line}"
            del table[chain]
        elif line == "COMMIT":
            assert table is not None
            for rules in table.values():
                for rule in rules:
                    words = rule.split()
                    target = words[words.index("-j") + 1] if "-j" in words else None
                    assert target is None or target in TARGETS or target in table, f"dangling jump: {rule}"
            table = None
        else:
            assert not line.strip() or line.startswith("#"), f"unexpected line {line!r}"
    return out


def policies_of(objs: list[dict[str, Any]]) -> list[PortPolicy]:
    return decide(build_snapshot(objs), CONFIG)


def full_state(policies: list[PortPolicy]) -> State:
    return restore_noflush({}, KubeProxyPayloads.from_policies(policies, CONFIG).full())


def _slice(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "EndpointSlice" and o["metadata"]["name"] == f"{name}-abcde")


def change_endpoint(objs: list[dict[str, Any]]) -> str:
    _slice(objs, "svc-5")["endpoints"][0]["addresses"] = ["10.250.0.1"]
    return "bench/svc-5"


def remove_service(objs: list[dict[str, Any]]) -> str:
    objs[:] = [o for o in objs if o["metadata"]["name"] not in ("svc-5", "svc-5-abcde")]
    return "bench/svc-5"


def add_service(objs: list[dict[str, Any]]) -> str:
    extra = objects(21)[-2:]  # svc-20 and its slice: a NodePort (every 5th)
    objs.extend(extra)
    return "bench/svc-20"


def lose_endpoints(objs: list[dict[str, Any]]) -> str:
    _slice(objs, "svc-5")["endpoints"] = []  # its chains go; filter REJECT rules come
    return "bench/svc-5"


CHANGES = {"endpoint": change_endpoint, "remove": remove_service, "add": add_service, "no endpoints": lose_endpoints}


@pytest.mark.parametrize("kind", list(CHANGES))
def test_partial_sync_leaves_the_rules_of_a_full_render(kind: str) -> None:
    objs = objects(20)
    before = policies_of(objs)
    payloads = KubeProxyPayloads.from_policies(before, CONFIG)
    kernel = restore_noflush({}, payloads.full())
    key = CHANGES[kind](objs)
    after = policies_of(objs)
    partial = payloads.change(key, after)
    assert restore_noflush(kernel, partial) == restore_noflush({}, payloads.full())
    # and the same rules as clew's own render of the new state, chain by chain
    expected = restore_noflush({}, render(after, CONFIG).text())
    got = restore_noflush(kernel, partial)
    assert {t: {c: sorted(r) for c, r in chains.items()} for t, chains in got.items()} == {
        t: {c: sorted(r) for c, r in chains.items()} for t, chains in expected.items()
    }


def test_partial_sync_rewrites_every_shared_chain_and_only_the_changed_services_own() -> None:
    objs = objects(20)
    payloads = KubeProxyPayloads.from_policies(policies_of(objs), CONFIG)
    full = payloads.full()
    key = change_endpoint(objs)
    partial = payloads.change(key, policies_of(objs))
    declared = {(t, c) for t, chains in _declared(partial).items() for c in chains}
    assert {("filter", c) for c in FILTER_TOP_CHAINS} <= declared
    assert {("nat", c) for c in NAT_TOP_CHAINS} <= declared
    own = {c for r in payloads.ports.values() if r.service_key == key for c in r.chains}
    others = {c for r in payloads.ports.values() if r.service_key != key for c in r.chains}
    assert own and own <= {c for t, c in declared}
    assert not others & {c for t, c in declared}, "an unchanged Service's chains were rewritten"
    for shared in ("-A KUBE-SERVICES", "-A KUBE-NODEPORTS"):  # every Service's rules, not just the changed one's
        assert _count(partial, shared) == _count(full, shared) > 1


def test_removal_declares_and_deletes_the_gone_chains() -> None:
    objs = objects(20)
    payloads = KubeProxyPayloads.from_policies(policies_of(objs), CONFIG)
    gone = {c for r in payloads.ports.values() if r.service_key == "bench/svc-5" for c in r.chains}
    partial = payloads.change(remove_service(objs), policies_of(objs))
    assert gone and all(f"-X {c}" in partial.splitlines() for c in gone)
    assert all(f":{c} - [0:0]" in partial.splitlines() for c in gone)


def test_full_sync_declares_and_rewrites_every_chain() -> None:
    payloads = KubeProxyPayloads.from_policies(policies_of(objects(20)), CONFIG)
    full = payloads.full()
    declared = {c for chains in _declared(full).values() for c in chains}
    assert {c for r in payloads.ports.values() for c in r.chains} <= declared
    kernel = restore_noflush({}, full)
    assert restore_noflush(kernel, full) == kernel  # over existing rules: the same rules again


def _declared(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            out.setdefault(table, []).append(line[1:].split()[0])
    return out


def _count(text: str, prefix: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith(prefix + " "))
