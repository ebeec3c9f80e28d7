"""NodeNft against a real (throwaway) namespace, and FakeNft against NodeNft: the same scripts —
those the nftables layout writes, and those the kernel refuses — through both, with the same
outcome (applied, or refused for the same reason) and the same state after every step (chains
and their base specs, rule counts, sets and maps, elements with values and comments). The fake
is only worth its tests if this holds.

Also the worker's life: started inside the namespace, gone after close(), gone when its parent
dies, started anew when it died or its namespace was made anew; errors name the namespace."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from poll import poll_until
from topology import unique_prefix

from clew.fakes.nft import FakeNft
from clew.kernel import netns, nft_json
from clew.kernel import nftables as nftables_mod
from clew.kernel.errors import KernelError, NamespaceNotFound
from clew.kernel.nftables import NftKernel, NodeNft

pytestmark = pytest.mark.kernel

KINDS = (
    "File exists", "No such file or directory", "Device or resource busy", "Operation not supported",
    "Invalid argument", "datatype mismatch", "set is not a map", "flags interval", "syntax error",
)  # fmt: skip

LOAD = """add table ip clew { comment "rules for clew's Service proxy (nftables mode)" ; }
add chain ip clew nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip clew nat-output { type nat hook output priority -100 ; }
add chain ip clew filter-input { type filter hook input priority 0 ; }
add chain ip clew services
add chain ip clew to-dst
add chain ip clew service-endpoints-check
add set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; comment "ClusterIP ports" ; }
add set ip clew no-endpoint-reject { type ipv4_addr . inet_proto . inet_service ; }
add set ip clew firewall-allow { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; }
add map ip clew service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip clew dst-tcp-3 { typeof ip daddr . tcp dport . numgen random mod 3 : ip daddr . tcp dport ; }
add rule ip clew nat-prerouting jump services
add rule ip clew nat-output jump services
add rule ip clew filter-input ct state new jump service-endpoints-check
add rule ip clew service-endpoints-check ip daddr . meta l4proto . th dport @no-endpoint-reject reject
add rule ip clew services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip clew services ip daddr . meta l4proto . th dport @cluster-masq mark set mark or 0x4000
add rule ip clew services jump to-dst
add rule ip clew to-dst meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 3 map @dst-tcp-3
add element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 0 comment "kube-system/dns:dns-tcp" : 10.244.0.2 . 53,
  10.96.0.10 . 53 . 1 comment "kube-system/dns:dns-tcp" : 10.244.0.3 . 53,
  10.96.0.10 . 53 . 2 comment "kube-system/dns:dns-tcp" : 10.244.0.4 . 53 }
add element ip clew cluster-masq { 10.96.0.10 . tcp . 53 comment "kube-system/dns:dns-tcp" }
add element ip clew firewall-allow { 192.0.2.1 . tcp . 80 . 10.0.0.0/8, 192.0.2.1 . tcp . 80 . 192.0.2.1/32 }
add element ip clew no-endpoint-reject { 10.96.0.99 . tcp . 80 comment "a/b:c, with : odd text" }"""

# (label, script); "check:" in front = check() instead of run()
STEPS: list[tuple[str, str]] = [
    ("load", LOAD),
    (
        "reload is idempotent for declarations",
        "add table ip clew\nadd chain ip clew services\n"
        'add set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; comment "other" ; }',
    ),
    (
        "one Service's endpoints change",
        "delete element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 0, 10.96.0.10 . 53 . 1 }; "
        "delete element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 2 }\n"
        "add element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 0 : 10.244.1.2 . 53,\n"
        "  10.96.0.10 . 53 . 1 : 10.244.1.3 . 53 }\n"
        'add element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 2 comment "new" : 10.244.1.4 . 53 }',
    ),
    ("same element again", 'add element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 2 comment "other" : 10.244.1.4 . 53 }'),
    ("same key, other value", "add element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 2 : 10.244.9.9 . 53 }"),
    ("create an existing element", "create element ip clew cluster-masq { 10.96.0.10 . tcp . 53 }"),
    (
        "twice in one command, other value",
        "add element ip clew dst-tcp-3 { 10.96.0.11 . 80 . 0 : 10.244.0.5 . 80, "
        "10.96.0.11 . 80 . 0 : 10.244.0.6 . 80 }",
    ),
    (
        "twice in one command, same value",
        "add element ip clew dst-tcp-3 { 10.96.0.11 . 80 . 0 : 10.244.0.5 . 80, "
        "10.96.0.11 . 80 . 0 : 10.244.0.5 . 80 }",
    ),
    (
        "a refusal undoes the whole transaction",
        "add element ip clew cluster-masq { 10.96.0.12 . tcp . 80 }\n"
        "add chain ip clew extra\ndelete element ip clew cluster-masq { 10.96.0.13 . tcp . 80 }",
    ),
    ("delete a missing element", "delete element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 7 }"),
    (
        "delete twice in one transaction",
        "delete element ip clew dst-tcp-3 { 10.96.0.11 . 80 . 0 }\n"
        "delete element ip clew dst-tcp-3 { 10.96.0.11 . 80 . 0 }",
    ),
    (
        "delete then add in one transaction",
        "delete element ip clew dst-tcp-3 { 10.96.0.11 . 80 . 0 }\n"
        'add element ip clew dst-tcp-3 { 10.96.0.11 . 80 . 0 comment "x/y:z" : 10.244.0.7 . 80 }',
    ),
    ("add to a missing map", "add element ip clew dst-tcp-4 { 10.96.0.10 . 53 . 3 : 10.244.0.2 . 53 }"),
    ("delete from a missing set", "delete element ip clew nope { 10.96.0.10 . tcp . 53 }"),
    ("a key too short", "add element ip clew cluster-masq { 10.96.0.10 . tcp }"),
    ("a map element without value", "add element ip clew dst-tcp-3 { 10.96.0.10 . 53 . 5 }"),
    ("a set element with a value", "add element ip clew cluster-masq { 10.96.0.10 . tcp . 54 : 10.0.0.1 . tcp . 1 }"),
    ("a prefix without flags interval", "add element ip clew cluster-masq { 10.96.0.0/16 . tcp . 54 }"),
    (
        "affinity chain behind the verdict map",
        "add chain ip clew service-AAAA-ns/web/tcp/http\n"
        "add rule ip clew service-AAAA-ns/web/tcp/http meta l4proto tcp dnat to 10.244.0.9:80\n"
        'add element ip clew service-ips { 10.96.0.20 . tcp . 80 comment "ns/web:http" : '
        "goto service-AAAA-ns/web/tcp/http }",
    ),
    ("delete a chain a verdict element uses", "delete chain ip clew service-AAAA-ns/web/tcp/http"),
    ("delete a chain a rule jumps to", "delete chain ip clew to-dst"),
    ("delete a set a rule uses", "delete set ip clew cluster-masq"),
    ("delete a map a rule uses (as set)", "delete set ip clew dst-tcp-3"),
    ("goto a missing chain", "add element ip clew service-ips { 10.96.0.21 . tcp . 80 : goto nowhere }"),
    ("jump to a missing chain", "add rule ip clew services jump nowhere"),
    ("jump to a base chain", "add rule ip clew services jump filter-input"),
    ("a rule in a missing chain", "add rule ip clew nowhere accept"),
    ("a rule using a missing set", "add rule ip clew services ip daddr @nowhere accept"),
    (
        "a rule using a set declared later",
        "add rule ip clew services ip daddr @later accept\nadd set ip clew later { type ipv4_addr ; }",
    ),
    (
        "remove the affinity Service",
        "delete element ip clew service-ips { 10.96.0.20 . tcp . 80 }\n"
        "delete chain ip clew service-AAAA-ns/web/tcp/http",
    ),
    ("re-declare a set with another type", "add set ip clew cluster-masq { type ipv4_addr . inet_service ; }"),
    (
        "re-declare a set as a map",
        "add map ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    ),
    (
        "re-declare a set with other flags",
        "add set ip clew no-endpoint-reject { type ipv4_addr . inet_proto . inet_service ; flags interval ; }",
    ),
    (
        "create an existing set",
        "create set ip clew no-endpoint-reject { type ipv4_addr . inet_proto . inet_service ; }",
    ),
    ("an affinity set", "add set ip clew affinity-X { type ipv4_addr ; flags dynamic,timeout ; timeout 3h ; }"),
    (
        "re-declared with another timeout",
        "add set ip clew affinity-X { type ipv4_addr ; flags timeout,dynamic ; timeout 100s ; }",
    ),
    ("re-declared with fewer flags", "add set ip clew affinity-X { type ipv4_addr ; flags timeout ; }"),
    ("re-declared by typeof", "add set ip clew affinity-X { typeof ip saddr ; flags dynamic,timeout ; }"),
    ("create an existing chain", "create chain ip clew services"),
    ("create an existing table", "create table ip clew"),
    ("base chain: other priority", "add chain ip clew filter-input { type filter hook input priority 10 ; }"),
    ("base chain: other hook", "add chain ip clew filter-input { type filter hook output priority 0 ; }"),
    ("base chain: other type", "add chain ip clew nat-output { type filter hook output priority -100 ; }"),
    ("base chain over a regular one", "add chain ip clew services { type nat hook output priority -100 ; }"),
    (
        "base chain: policy change",
        "add chain ip clew filter-input { type filter hook input priority filter ; policy drop ; }",
    ),
    ("check passes, changes nothing", "check:add element ip clew cluster-masq { 10.96.0.30 . udp . 53 }"),
    ("check refuses", "check:delete element ip clew cluster-masq { 10.96.0.31 . udp . 53 }"),
    (
        "rules: insert, add at a position",
        "insert rule ip clew services counter\n"
        "add rule ip clew services position {handle:services:0} ip daddr 10.1.1.1 counter",
    ),
    ("rules: delete by handle", "delete rule ip clew services handle {handle:services:1}"),
    ("rules: delete a missing handle", "delete rule ip clew services handle 99999"),
    ("rules: replace", "replace rule ip clew services handle {handle:services:0} ip daddr 10.1.1.2 counter"),
    ("flush a map", "flush map ip clew dst-tcp-3"),
    ("flush a set as a map", "flush map ip clew cluster-masq"),
    (
        "flush a chain, then delete what it used",
        "flush chain ip clew service-endpoints-check\ndelete set ip clew no-endpoint-reject",
    ),
    ("flush the table (rules go, elements stay)", "flush table ip clew"),
    ("delete a chain with rules (no one jumps to it)", "add rule ip clew to-dst accept\ndelete chain ip clew to-dst"),
    ("delete a missing chain", "delete chain ip clew to-dst"),
    ("a chain named after a keyword", "add chain ip clew dst"),
    ("a quoted name", 'add chain ip clew "dst"'),
    ("a syntax error", "add element ip clew cluster-masq { 10.96.0.40 . tcp . 53 \nadd bogus"),
    ("delete the table", "delete table ip clew"),
    ("delete a missing table", "delete table ip clew"),
    ("full reload in one transaction", "add table ip clew\ndelete table ip clew\n" + LOAD),
    ("a resync that replaces the table", "add table ip clew\ndelete table ip clew\n" + LOAD),
    ("flush ruleset", "flush ruleset"),
]


def refusal(error: KernelError | None) -> str | None:
    """Which kind of refusal (None: applied)."""
    if error is None:
        return None
    return next((k for k in KINDS if k in str(error)), f"unclassified: {error}")


def resolve(script: str, kernel: NftKernel) -> str:
    """``{handle:CHAIN:I}`` → the handle of the I-th rule of CHAIN on that side."""

    def handle(m: re.Match[str]) -> str:
        listing = kernel.list_json(f"chain ip clew {m.group(1)}")
        handles = [item["rule"]["handle"] for item in listing["nftables"] if "rule" in item]
        return str(handles[int(m.group(2))])

    return re.sub(r"\{handle:([^:}]+):(\d+)\}", handle, script)


def apply(kernel: NftKernel, script: str) -> str | None:
    check = script.startswith("check:")
    script = resolve(script.removeprefix("check:"), kernel)
    try:
        (kernel.check if check else kernel.run)(script)
    except KernelError as e:
        return refusal(e)
    return None


def our_workers() -> list[int]:
    """Pids of nft workers this test process started (its children running nft_worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"clew.kernel.nft_worker" in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    """Every test leaves no nft worker behind (closed, or stopped when its NodeNft was dropped)."""
    yield
    assert our_workers() == []


def test_a_dropped_nodenft_stops_its_worker(ns: str) -> None:
    kernel = NodeNft(ns)
    assert our_workers() == [kernel.worker_pid]
    del kernel  # no close(): the finalizer stops it
    assert our_workers() == []


@pytest.fixture
def ns() -> Iterator[str]:
    name = unique_prefix("nk") + "-nft"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


@pytest.fixture(params=["worker", "nft-cli"])
def node(request: pytest.FixtureRequest, ns: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[NodeNft]:
    if request.param == "nft-cli":
        monkeypatch.setattr(nftables_mod, "nftables_importable", lambda: False)
    kernel = NodeNft(ns)
    assert kernel.mechanism == request.param
    try:
        yield kernel
    finally:
        kernel.close()


def test_the_fake_agrees_with_the_kernel_step_by_step(node: NodeNft) -> None:
    fake = FakeNft(where=node.namespace)
    for label, script in STEPS:
        got_kernel, got_fake = apply(node, script), apply(fake, script)
        assert got_fake == got_kernel, f"{label}: kernel {got_kernel!r}, fake {got_fake!r}"
        kernel_state = nft_json.state_of(node.list_json("ruleset"), "ip", "clew")
        assert fake.state() == kernel_state, f"{label}: states differ"
    assert [label for label, _ in STEPS if "refus" in label or "missing" in label]  # the sequence has refusals


GOLDEN = sorted((Path(__file__).resolve().parents[1] / "golden" / "rendered").glob("*.nft"))


def test_golden_renders_load_the_same_into_the_fake_and_the_kernel(ns: str) -> None:
    """Every golden nftables-mode render (the renderer's real output) gives the same state."""
    if not GOLDEN:
        pytest.skip("no nftables golden renders yet (tests/golden/rendered/*.nft)")
    differ = []
    with NodeNft(ns) as kernel:
        for path in GOLDEN:
            text = path.read_text()
            kernel.run("flush ruleset\n" + text)
            fake = FakeNft()
            fake.run(text)
            if fake.state() != nft_json.state_of(kernel.list_json("ruleset"), "ip", "clew"):
                differ.append(path.name)
    assert differ == []


def _shape(listing: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What kinds of objects a listing holds, named (rules by chain), with elements as text."""
    out = []
    for item in listing["nftables"]:
        ((kind, obj),) = item.items()
        if kind == "metainfo":
            continue
        name = obj.get("name") or obj.get("chain", "")
        extra = str(sorted(nft_json.elements_of(obj).items())) if kind in ("set", "map") else ""
        out.append((kind, name, extra))
    return sorted(out)


def test_the_fakes_listings_have_the_kernels_shape(node: NodeNft) -> None:
    fake = FakeNft()
    for kernel in (node, fake):
        kernel.run(LOAD)
    for what in ("ruleset", "tables", "chains", "sets", "maps", "table ip clew", "chain ip clew services",
                 "map ip clew dst-tcp-3", "set ip clew cluster-masq"):  # fmt: skip
        assert _shape(fake.list_json(what)) == _shape(node.list_json(what)), what
    for what in ("set ip clew dst-tcp-3", "table ip nope", "chain ip clew nope"):
        with pytest.raises(KernelError, match="No such file or directory"):
            node.list_json(what)
        with pytest.raises(KernelError, match="No such file or directory"):
            fake.list_json(what)


def test_the_fake_would_see_a_difference(node: NodeNft) -> None:
    """The comparison is not vacuous: one element apart is a difference."""
    fake = FakeNft()
    node.run(LOAD)
    fake.run(LOAD + "\nadd element ip clew cluster-masq { 10.96.0.50 . tcp . 80 }")
    assert fake.state() != nft_json.state_of(node.list_json("ruleset"), "ip", "clew")


def test_errors_are_one_line_naming_the_namespace(ns: str) -> None:
    with NodeNft(ns) as kernel:
        kernel.run("add table ip clew\nadd map ip clew m { type ipv4_addr : ipv4_addr ; }")
        with pytest.raises(KernelError) as caught:
            kernel.run("add element ip clew m { 10.0.0.1 : 10.0.0.2 }\nadd element ip clew m { 10.0.0.1 : 10.0.0.3 }")
        message = str(caught.value)
        assert "\n" not in message and "^" not in message
        assert message == (
            f"nft in netns {ns}: Error: Could not process rule: File exists [line 2: add element ip clew m "
            "{ 10.0.0.1 : 10.0.0.3 }]"
        )
        assert kernel.list_json("map ip clew m")["nftables"][1]["map"].get("elem") is None  # nothing applied
        assert kernel.has_table("ip", "clew") and not kernel.has_table("ip", "other")


def test_another_writer_between_calls_is_seen(ns: str) -> None:
    """The long-lived context does not trust a stale cache: nft re-reads it when the ruleset's
    generation moved, so another process's changes are seen, and refusals follow them."""
    with NodeNft(ns) as kernel:
        kernel.run("add table ip clew\nadd map ip clew m { type ipv4_addr : ipv4_addr ; }")
        kernel.run("add element ip clew m { 10.0.0.1 : 10.0.0.2 }")
        netns.run(ns, ["nft", "delete table ip clew; add table ip clew; add set ip clew m { type ipv4_addr ; }"])
        with pytest.raises(KernelError, match="set is not a map"):
            kernel.run("add element ip clew m { 10.0.0.3 : 10.0.0.4 }")
        kernel.run("add element ip clew m { 10.0.0.3 }")
        netns.run(ns, ["nft", "delete table ip clew; add table ip other"])
        with pytest.raises(KernelError, match="No such file or directory"):
            kernel.run("delete element ip clew m { 10.0.0.3 }")
        assert kernel.has_table("ip", "other") and not kernel.has_table("ip", "clew")


def _gone(pid: int) -> bool:
    """The process is gone (or a zombie nobody has reaped yet: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_worker_lives_in_the_namespace_and_ends_with_close(ns: str) -> None:
    kernel = NodeNft(ns)
    pid = kernel.worker_pid
    assert pid is not None and not _gone(pid)
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
    kernel.run("add table ip clew")
    kernel.close()
    assert _gone(pid) and kernel.mechanism == "closed"
    kernel.close()  # idempotent
    with pytest.raises(KernelError, match="closed"):
        kernel.run("add table ip clew")


def test_the_worker_dies_with_its_parent(ns: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from clew.kernel.nftables import NodeNft\n"
         f"k = NodeNft({ns!r}); print(k.worker_pid, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        assert not _gone(pid)
    finally:
        child.kill()
        child.wait()
    poll_until(lambda: _gone(pid), 10.0, what="the orphaned worker ends")


def test_a_dead_worker_is_replaced(ns: str) -> None:
    with NodeNft(ns) as kernel:
        kernel.run("add table ip clew")
        first = kernel.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        poll_until(lambda: _gone(first), 10.0, what="the killed worker is dead")
        assert kernel.has_table("ip", "clew")
        assert kernel.worker_pid not in (None, first)


def test_a_request_past_its_deadline_stops_the_worker(ns: str) -> None:
    with NodeNft(ns, timeout=1e-6) as kernel:
        first = kernel.worker_pid
        elements = ", ".join(f"10.0.{i // 250}.{i % 250} : 10.1.0.1" for i in range(2000))
        script = "add table ip clew\nadd map ip clew m { type ipv4_addr : ipv4_addr ; }\n"
        script += f"add element ip clew m {{ {elements} }}"
        with pytest.raises(KernelError, match=f"netns {ns}: the nft worker failed: no answer within"):
            kernel.run(script)
        assert our_workers() == []
        kernel.timeout = 30.0
        kernel.run("add table ip other")  # a new worker
        assert kernel.worker_pid not in (None, first)


def test_a_namespace_made_anew_gets_a_new_worker(ns: str) -> None:
    with NodeNft(ns) as kernel:
        kernel.run("add table ip clew")
        first = kernel.worker_pid
        netns.delete(ns)
        with pytest.raises(NamespaceNotFound, match=ns):
            kernel.run("add table ip clew")
        netns.create(ns)
        assert not kernel.has_table("ip", "clew")  # the new namespace's (empty) ruleset
        assert kernel.worker_pid not in (None, first)


def test_a_missing_namespace_is_named() -> None:
    with pytest.raises(NamespaceNotFound, match="nk-no-such"):
        NodeNft("nk-no-such-netns")


def test_own_namespace_uses_an_in_process_context(ns: str) -> None:
    """Run inside a throwaway namespace (never this host's ruleset): NodeNft(None) there."""
    code = (
        "from clew.kernel.nftables import NodeNft\n"
        "k = NodeNft(None); k.run('add table ip clew'); print(k.mechanism, k.has_table('ip', 'clew'), k.worker_pid)"
    )
    done = subprocess.run(netns.exec_argv(ns, [sys.executable, "-c", code]), capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["in-process", "True", "None"], done.stderr
