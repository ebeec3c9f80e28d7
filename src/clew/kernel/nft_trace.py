"""Send one packet through a node for real and record the path the kernel took (nftables tracing).

``clew trace --verify``'s kernel half. In the node's namespace it adds a table of its own,
``inet clew_verify_XXXX``, whose chains (prerouting and output, priority -400: before raw and
conntrack) set ``meta nftrace`` on packets of the traced flow; ``nft monitor trace`` then prints
every rule and policy the packet meets — iptables-nft's tables included, since they are nftables
tables. The packet is sent either by the node itself (a local source) or from a throwaway
namespace attached to the node by a new veth pair for the purpose (``cv`` + 4 hex digits on the
node's side), with a static neighbour entry so the first packet is the one traced.

Everything added is removed before returning — the table, the monitor process, the throwaway
namespace (and with it the veth pair) — whatever happened. Only network namespaces are
accepted: the caller refuses the host's own.
"""

from __future__ import annotations

import os
import secrets
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from clew.kernel import netns as kernel_netns
from clew.kernel import runner
from clew.kernel.namespace import Namespace, Where

PRIORITY = -400
SRC = str(Path(__file__).resolve().parents[2])


@dataclass
class Sent:
    """What the kernel printed for the packet, and what the sender saw."""

    lines: list[str] = field(default_factory=list)  # ``nft monitor trace`` lines, our own table's left out
    sender: str = ""  # the prober's JSON line (answer, refused, timeout)
    via: str = ""  # how it was sent: "from the node itself" / "from a throwaway namespace on veth cvXXXX"
    iif: str | None = None  # the node's interface the packet arrived on (None: sent by the node)
    thrown: str | None = None  # the throwaway namespace it was sent from (deleted before returning)


def _script(table: str, src: str, dst: str, proto: str, dport: int, action: str) -> str:
    match = f"ip saddr {src} ip daddr {dst} {proto} dport {dport}"
    return (
        f"{action} table inet {table}\n"
        if action == "delete"
        else (
            f"add table inet {table}\n"
            f"add chain inet {table} pre {{ type filter hook prerouting priority {PRIORITY}; }}\n"
            f"add chain inet {table} out {{ type filter hook output priority {PRIORITY}; }}\n"
            f"add rule inet {table} pre {match} meta nftrace set 1\n"
            f"add rule inet {table} out {match} meta nftrace set 1\n"
        )
    )


def _probe_argv(src: str, dst: str, proto: str, dport: int) -> list[str]:
    return [sys.executable, "-m", "clew.lab.echo", "probe", "--dst", dst, "--port", str(dport), "--proto", proto,
            "--count", "1", "--timeout", "0.5", "--src", src]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def _read(proc: subprocess.Popen[bytes], seconds: float, buf: bytearray) -> None:
    assert proc.stdout is not None
    end = time.monotonic() + seconds
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := end - time.monotonic()) > 0:
            if not sel.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf.extend(chunk)


def _attach(node: Namespace, src: str, dst: str) -> tuple[str, str]:
    """A throwaway namespace joined to the node by a veth pair; returns (its name, the node's end)."""
    tag = secrets.token_hex(2)
    name, node_if = f"clew-verify-{tag}", f"cv{tag}"
    kernel_netns.create(name)
    runner.run(node, ["ip", "link", "add", node_if, "type", "veth", "peer", "name", "eth0", "netns", name])
    # its own rp_filter 0, so the kernel's check is max(all, 0) = all — what the prediction reads for it
    runner.run(node, ["sysctl", "-qw", f"net.ipv4.conf.{node_if}.rp_filter=0"])
    runner.run(node, ["ip", "link", "set", node_if, "up"])
    mac = runner.run(node, ["cat", f"/sys/class/net/{node_if}/address"]).stdout.strip()
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{src}/32", "dev", "eth0"],
                 ["ip", "link", "set", "eth0", "up"], ["ip", "route", "add", f"{dst}/32", "dev", "eth0"],
                 ["ip", "neigh", "replace", dst, "lladdr", mac, "dev", "eth0", "nud", "permanent"]):  # fmt: skip
        runner.run(name, argv)
    return name, node_if


def send_traced(ns: Where, *, src: str, dst: str, proto: str, dport: int, local: bool, deadline_s: float = 8.0) -> Sent:
    """Send one ``proto`` packet src → dst:dport through ``ns`` with nftables tracing on."""
    node = Namespace.of(ns)
    table = f"clew_verify_{secrets.token_hex(3)}"
    sent = Sent()
    thrown: str | None = None
    monitor: subprocess.Popen[bytes] | None = None
    runner.run(node, ["nft", "-f", "-"], input=_script(table, src, dst, proto, dport, "add"))
    try:
        if local:
            sender: Where = node
            sent.via = "from the node itself (a local source)"
        else:
            thrown, sent.iif = _attach(node, src, dst)
            sent.thrown = thrown
            sender = thrown
            sent.via = f"from a throwaway namespace on a new veth, arriving on {sent.iif}"
        monitor = runner.spawn(node, ["nft", "monitor", "trace"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
        buf = bytearray()
        end = time.monotonic() + deadline_s
        # nft monitor prints nothing when it is ready: send until a traced packet shows up
        while time.monotonic() < end and f"inet {table} ".encode() not in buf:
            done = runner.run(sender, _probe_argv(src, dst, proto, dport), check=False, timeout=10.0)
            sent.sender = done.stdout.strip()
            _read(monitor, 0.5, buf)
        # the rest of its path: read until the monitor has been quiet for a while (a loaded machine is slow)
        quiet_until = min(end + 3.0, time.monotonic() + 3.0)
        while time.monotonic() < quiet_until:
            size = len(buf)
            _read(monitor, 0.4, buf)
            if len(buf) == size:
                break
        sent.lines = _first_packet(buf.decode(errors="replace"), table)
    finally:
        if monitor is not None:
            monitor.terminate()
            try:
                monitor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                monitor.kill()
                monitor.wait(timeout=5)
            if monitor.stdout is not None:
                monitor.stdout.close()
        runner.run(node, ["nft", "delete", "table", "inet", table], check=False)
        if sent.iif is not None:  # the node's end now: deleting a namespace frees its veth later
            runner.run(node, ["ip", "link", "del", sent.iif], check=False)
        if thrown is not None:
            kernel_netns.delete(thrown)
    return sent


def _first_packet(text: str, table: str) -> list[str]:
    """The lines of the first traced packet, without our own table's.

    Trace ids are not enough (the kernel derives them from the buffer's address, which a later
    packet may reuse, and a packet delivered over loopback gets a new one), so the lines are taken
    by what each base chain's ``packet:`` line shows: the first packet's IP id and source port,
    which stay the same along its whole path (a retransmission or the next segment differ)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.startswith("trace id ")]
    own = f" inet {table} "
    first = next((ln for ln in lines if own in ln and " packet: " in ln), None)
    if first is None:
        return []
    flow = _flow(first)
    out: list[str] = []
    keep = False
    for ln in lines[lines.index(first) + 1 :]:
        if " packet: " in ln:
            keep = _flow(ln) == flow
        if keep and own not in ln:
            out.append(ln)
    return out


def _flow(line: str) -> tuple[str, str]:
    """(IP id, source port) of a ``packet:`` line."""
    words = line.split()
    ident = words[words.index("id", 3) + 1] if "id" in words[3:] else ""
    sport = words[words.index("sport") + 1] if "sport" in words else ""
    return ident, sport
