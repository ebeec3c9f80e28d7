"""Performance scenarios, measured beside the kernel's own time for the same work in one run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from clew.cli.errors import UserError

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


@app.command("render")
def bench_render(
    services: Annotated[int, typer.Option("--services", min=1, help="Number of Services.")] = 10000,
    endpoints: Annotated[int, typer.Option("--endpoints", min=1, help="Endpoints per Service.")] = 3,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Best of this many renders.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Render N Services × K endpoints and time iptables-restore of the payload (target: ≤ 50%)."""
    if os.geteuid() != 0:
        raise UserError("clew bench render loads rules into a throwaway network namespace: run it as root")
    from clew.bench.render import run

    result = run(services, endpoints, runs)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    print(
        f"clew bench render: {result.services} Services × {result.endpoints_per_service} endpoints, "
        f"{result.payload_lines} lines ({result.payload_mb} MB), iptables {result.iptables}"
    )
    print(f"  parse objects (from_kube)      {result.parse_s:8.3f} s")
    print(f"  policy (decide)                {result.decide_s:8.3f} s")
    print(f"  render (decide+render+text)    {result.render_s:8.3f} s")
    print(f"  iptables-restore, same payload {result.restore_s:8.3f} s")
    verdict = "meets" if result.ratio <= 0.5 else "misses"
    print(f"  render / restore               {result.ratio:8.1%}  ({verdict} the ≤ 50% target)")


@app.command("trace")
def bench_trace(
    services: Annotated[int, typer.Option("--services", min=1, help="Number of Services.")] = 10000,
    traces: Annotated[int, typer.Option("--traces", min=1, help="Traces after the first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Parse an N-Service iptables-save and trace packets (targets: ≤ 1 s, then ≤ 20 ms a trace)."""
    from clew.bench.trace import run

    result = run(services, traces)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    print(f"clew bench trace: {result.services} Services, {result.ruleset_lines} lines of iptables-save")
    print(f"  parse                      {result.parse_s:8.3f} s")
    print(f"  first trace (builds index) {result.first_trace_s:8.3f} s")
    ok = "meets" if result.parse_and_trace_s <= 1.0 else "misses"
    print(f"  parse + first trace        {result.parse_and_trace_s:8.3f} s   ({ok} the ≤ 1 s target)")
    ok = "meets" if result.next_trace_max_ms <= 20 else "misses"
    print(
        f"  next traces, p50 / max     {result.next_trace_p50_ms:6.2f} / {result.next_trace_max_ms:.2f} ms "
        f"over {result.traces}   ({ok} the ≤ 20 ms target)"
    )


@app.command("cni")
def bench_cni(
    pods: Annotated[int, typer.Option("--pods", min=1, max=200, help="Pods to ADD and DEL.")] = 20,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="clew-cni does the work itself (no node agent socket).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """ADD and DEL latency of clew-cni beside the reference bridge + host-local (target: ≤ 2×)."""
    if os.geteuid() != 0:
        raise UserError("clew bench cni attaches pods in throwaway network namespaces: run it as root")
    from clew.bench.cni import run

    try:
        result = run(pods, standalone=standalone)
    except RuntimeError as exc:
        raise UserError(str(exc), exit_code=1) from None
    if as_json:
        print(json.dumps(result.to_json()))
        return
    print(f"clew bench cni: {result.pods} pods, one node, clew-cni {result.mode}; reference {result.reference}")
    print("                      p50 ms   p95 ms")
    print(f"  clew-cni  ADD     {result.clew_add_p50_ms:8.1f} {result.clew_add_p95_ms:8.1f}")
    print(f"  reference ADD     {result.ref_add_p50_ms:8.1f} {result.ref_add_p95_ms:8.1f}")
    print(f"  clew-cni  DEL     {result.clew_del_p50_ms:8.1f} {result.clew_del_p95_ms:8.1f}")
    print(f"  reference DEL     {result.ref_del_p50_ms:8.1f} {result.ref_del_p95_ms:8.1f}")
    for op, ratio in (("ADD", result.add_ratio), ("DEL", result.del_ratio)):
        verdict = "meets" if ratio <= 2.0 else "misses"
        print(f"  {op} p50 clew / reference {ratio:5.2f}×  ({verdict} the ≤ 2× target)")


@app.command("podnet")
def bench_podnet(
    seconds: Annotated[float, typer.Option("--seconds", min=0.2, help="Length of the TCP stream.")] = 2.0,
    pings: Annotated[int, typer.Option("--pings", min=10, help="1-byte round trips.")] = 2000,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds; figures are medians.")] = 3,
    pin: Annotated[
        str, typer.Option("--pin", help="same: client and server on one CPU; split: two CPUs; off.")
    ] = "same",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Pod-to-pod TCP throughput and RTT over host-gw and vxlan beside plain routing, in one run."""
    if os.geteuid() != 0:
        raise UserError("clew bench podnet builds labs of network namespaces: run it as root")
    from clew.bench.podnet import run
    from clew.lab.build import LabError

    try:
        result = run(seconds, pings, rounds, pin)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except (RuntimeError, LabError) as exc:
        raise UserError(str(exc), exit_code=1) from None
    if as_json:
        print(json.dumps(result.to_json()))
        return
    print(
        f"clew bench podnet: one TCP stream for {result.seconds:g} s, {result.pings} 1-byte round trips, "
        f"median of {result.rounds} round(s), {result.placement}"
    )
    print(f"  {'path':<9} {'MTU':>5} {'Gbit/s':>8} {'vs plain':>9} {'RTT p50 µs':>11} {'p99 µs':>8}  between")
    for r in result.results:
        print(
            f"  {r.path:<9} {r.mtu:>5} {r.gbit_s:>8.2f} {r.vs_plain:>9.0%} {r.rtt_p50_us:>11.1f} "
            f"{r.rtt_p99_us:>8.1f}  {r.description}"
        )


@app.command("sync")
def bench_sync(
    services: Annotated[
        list[int] | None, typer.Option("--services", min=1, help="Services (× 3 endpoints); repeat for a curve.")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="iptables.")] = "iptables",
    changes: Annotated[int, typer.Option("--changes", min=1, help="Changes to time one by one.")] = 50,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw sync times against Service count (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per count).")] = False,
) -> None:
    """Full resync and one-change sync times beside raw iptables-restore; the engine's memory."""
    if os.geteuid() != 0:
        raise UserError("clew bench sync loads rules into throwaway network namespaces: run it as root")
    if mode != "iptables":
        raise UserError(f"--mode {mode!r}: only the iptables mode exists for now")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: .venv/bin/pip install 'clew[plot]'") from None
    from clew.bench.sync import run_isolated

    try:
        results = [run_isolated(n, changes) for n in (services or [10000])]
    except RuntimeError as e:
        raise UserError(str(e), exit_code=1) from None
    if plot is not None:
        from clew.bench.plot import sync_plot

        sync_plot(results, plot)
    if as_json:
        for r in results:
            print(json.dumps(r.to_json()))
        return
    for r in results:
        print(f"clew bench sync: {r.services} Services × 3 endpoints, mode {r.mode}")
        ok = "meets" if r.full_ratio <= 1.3 else "misses"
        print(
            f"  full resync over existing rules {r.full_sync_s:7.3f} s   raw full restore {r.raw_full_restore_s:.3f} s"
            f"   {r.full_ratio:.2f}× ({ok} ≤ 1.3×)"
        )
        ok = "meets" if r.change_ratio <= 1.5 else "misses"
        print(
            f"  one change, p50 / p99   {r.change_p50_s:7.4f} / {r.change_p99_s:.4f} s   raw partial restore "
            f"{r.raw_partial_restore_s:.4f} s   {r.change_ratio:.2f}× ({ok} ≤ 1.5×); {r.partial_syncs} of "
            f"{r.changes} were partial"
        )
        ok = "meets" if r.rss_mb <= 150 else "misses"
        print(f"  resident memory         {r.rss_mb:7.1f} MB (peak {r.peak_rss_mb} MB)   ({ok} ≤ 150 MB)")
    if plot is not None:
        print(f"plot written to {plot}")
