"""Follow a packet through a node's real rules and routes; every outcome with its probability."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clew.cli.errors import UserError
from clew.cli.jsonout import print_json
from clew.cli.netns_arg import netns_ref
from clew.cli.stdin import stdin_path
from clew.trace.engine import trace
from clew.trace.node_view import NodeView
from clew.trace.packet import Packet, TraceResult
from clew.trace.sources import SourceError, load_view
from clew.trace.story import format_short, format_trace

if TYPE_CHECKING:
    from clew.kernel.nft_trace import Sent


def _verify(view: NodeView, packet: Packet, netns: str | None) -> tuple[Packet, TraceResult, Sent]:
    """Send the packet through the namespace (never the host's own) and trace it as sent."""
    import dataclasses
    import os

    from clew.kernel.nft_trace import send_traced

    if not netns:
        raise UserError("--verify sends packets through the node: give --netns (it refuses the host's own namespace)")
    target = netns if netns.startswith("/") else f"/run/netns/{netns}"
    try:
        inode = os.stat(target).st_ino
    except OSError as e:
        raise UserError(f"--verify: {netns}: {e.strerror}") from None
    for own in ("/proc/self/ns/net", "/proc/1/ns/net"):  # this process's, and init's when readable
        try:
            if os.stat(own).st_ino == inode:
                raise UserError(f"--verify: {netns} is the host's own network namespace; it refuses to send there")
        except OSError:
            continue
    local = packet.src in view.local_ips()
    sent = send_traced(netns, src=packet.src, dst=packet.dst, proto=packet.proto, dport=packet.dport, local=local)
    if sent.iif is not None:
        packet = dataclasses.replace(packet, iif=sent.iif)  # the prediction for the way it really came in
    return packet, trace(view, packet), sent


def write_page(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"--html {path}: cannot write: {e.strerror}") from None


def _ipv4(value: str, flag: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise UserError(f"{flag} {value!r} is not an IPv4 address") from None


def trace_command(
    src: Annotated[str, typer.Option("--src", help="Source IPv4 address.")],
    dst: Annotated[str, typer.Option("--dst", help="Destination IPv4 address.")],
    dport: Annotated[int, typer.Option("--dport", min=1, max=65535, help="Destination port.")] = 80,
    sport: Annotated[int, typer.Option("--sport", min=1, max=65535, help="Source port.")] = 40000,
    proto: Annotated[str, typer.Option("--proto", help="tcp, udp or sctp.")] = "tcp",
    iif: Annotated[str | None, typer.Option("--iif", help="Interface it arrives on (default: inferred).")] = None,
    oif: Annotated[
        str | None, typer.Option("--oif", help="Interface it leaves by, when routes are not given (--ruleset).")
    ] = None,
    ruleset: Annotated[
        str | None, typer.Option("--ruleset", help="iptables-save output or nft -j list ruleset JSON; - reads stdin.")
    ] = None,
    local_ip: Annotated[list[str] | None, typer.Option("--local-ip", help="A node address (with --ruleset).")] = None,
    netns: Annotated[
        str | None,
        typer.Option(
            "--netns",
            help="A live network namespace: a name, /run/netns/NAME or /proc/PID/ns/net (root). Without "
            "--netns, --ruleset and --from-dump: the namespace clew runs in (this node), read-only.",
        ),
    ] = None,
    from_dump: Annotated[str | None, typer.Option("--from-dump", help="A folder written by clew dump.")] = None,
    established: Annotated[bool, typer.Option("--established", help="A packet of an existing connection.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of the story.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Send the packet for real (network namespaces only: --netns) with nftables tracing and print the "
            "kernel's path beside the prediction; removes everything it added.",
        ),
    ] = False,
    html_file: Annotated[
        str | None, typer.Option("--html", help="Also write a self-contained page drawing the path to FILE.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Every hop of every outcome (default: one line per outcome).")
    ] = False,
) -> None:
    """Follow a packet through a node's real rules and routes; every outcome with its probability."""
    if proto not in ("tcp", "udp", "sctp"):
        raise UserError(f"--proto {proto!r}: choose tcp, udp or sctp")
    packet = Packet(
        src=_ipv4(src, "--src"),
        dst=_ipv4(dst, "--dst"),
        proto=proto,
        dport=dport,
        sport=sport,
        iif=iif,
        oif=oif,
        ctstate="ESTABLISHED" if established else "NEW",
    )
    locals_ = [_ipv4(ip, "--local-ip") for ip in (local_ip or [])]
    ruleset = stdin_path("--ruleset", ruleset)
    try:
        netns = netns_ref(netns) if netns else None
        view = load_view(ruleset, locals_, netns, from_dump)
    except SourceError as e:
        raise UserError(str(e)) from None
    if verify:
        packet, result, sent = _verify(view, packet, netns)
    else:
        result = trace(view, packet)
    if html_file:
        from clew.trace.html import trace_page

        write_page(html_file, trace_page(result, format_trace(result)))
    if as_json:
        print_json(result.to_json(), "trace", "Trace", indent=2)
    else:
        print(format_trace(result) if verbose else format_short(result), end="")
    if verify:
        from clew.trace.verify import compare, format_comparison

        comparison = compare(result, sent.lines)
        print(format_comparison(comparison, sent.via, sent.sender), end="")
        if not comparison.agree:
            raise SystemExit(3)
