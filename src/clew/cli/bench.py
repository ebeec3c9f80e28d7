"""Performance scenarios, measured beside the kernel's own time for the same work in one run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clew.cli.errors import UserError
from clew.cli.jsonout import print_json
from clew.cli.progress import progress

if TYPE_CHECKING:
    from clew.bench.dataplane import DataplaneBench
    from clew.bench.sync import SyncBench

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


@app.command("render")
def bench_render(
    services: Annotated[int, typer.Option("--services", min=1, help="Number of Services.")] = 10000,
    endpoints: Annotated[int, typer.Option("--endpoints", min=1, help="Endpoints per Service.")] = 3,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Best of this many renders.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Render N Services × K endpoints and time iptables-restore of the payload (target: ≤ 50%).

    \b
    Example:
      clew bench render --services 10000 --endpoints 3 --json
    """
    if os.geteuid() != 0:
        raise UserError("clew bench render loads rules into a throwaway network namespace: run it as root")
    from clew.bench.render import run

    with progress(f"bench render: {services} Services") as step:
        step(f"best of {runs} renders, then iptables-restore")
        result = run(services, endpoints, runs)
    if as_json:
        print_json(result.to_json(), "bench", "RenderBench")
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
    mode: Annotated[
        str, typer.Option("--mode", help="iptables (iptables-save text) or nftables (nft -j JSON).")
    ] = "iptables",
    layout: Annotated[
        str, typer.Option("--layout", help="With --mode nftables: kube-proxy (default) or clew (needs root).")
    ] = "kube-proxy",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Parse an N-Service ruleset and trace packets (targets: ≤ 1 s, then ≤ 20 ms a trace).

    \b
    Example:
      clew bench trace --services 10000 --traces 50
      clew bench trace --mode nftables --services 10000 [--layout clew]
    """
    if mode not in ("iptables", "nftables"):
        raise UserError(f"--mode {mode!r}: choose iptables or nftables")
    if layout not in ("kube-proxy", "clew"):
        raise UserError(f"--layout {layout!r}: choose kube-proxy or clew")
    if mode == "nftables":
        if layout == "clew" and os.geteuid() != 0:
            raise UserError("--layout clew loads the render into a throwaway network namespace: run it as root")
        _bench_trace_nft(services, traces, layout, as_json)
        return
    from clew.bench.trace import run

    with progress(f"bench trace: {services} Services") as step:
        step(f"parse, then {traces + 1} traces")
        result = run(services, traces)
    if as_json:
        print_json(result.to_json(), "bench", "TraceBench")
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


def _bench_trace_nft(services: int, traces: int, layout: str, as_json: bool) -> None:
    from clew.bench.trace_nft import run

    with progress(f"bench trace --mode nftables: {services} Services") as step:
        step(f"{layout} layout as nft JSON, parse it, then {traces + 1} traces")
        result = run(services, traces, layout)
    if as_json:
        print_json(result.to_json(), "bench", "NftTraceBench")
        return
    print(
        f"clew bench trace --mode nftables: {result.services} Services ({layout}'s nftables layout), "
        f"{result.chains} chains, {result.rules} rules, {result.json_mb} MB of nft -j JSON"
    )
    print(f"  parse                      {result.parse_s:8.3f} s")
    print(f"  first trace                {result.first_trace_s:8.3f} s")
    ok = "meets" if result.parse_and_trace_s <= 1.0 else "misses"
    print(
        f"  parse + first trace        {result.parse_and_trace_s:8.3f} s   ({ok} the ≤ 1 s target; "
        f"CPU {result.parse_and_trace_cpu_s:.3f} s)"
    )
    ok = "meets" if result.next_trace_max_ms <= 20 else "misses"
    print(
        f"  next traces, p50 / max     {result.next_trace_p50_ms:6.2f} / {result.next_trace_max_ms:.2f} ms "
        f"over {result.traces}   ({ok} the ≤ 20 ms target; slowest CPU {result.next_trace_max_cpu_ms:.2f} ms)"
    )


@app.command("cni")
def bench_cni(
    pods: Annotated[int, typer.Option("--pods", min=1, max=200, help="Pods to ADD and DEL.")] = 20,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="clew-cni does the work itself (no node agent socket).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """ADD and DEL latency of clew-cni beside the reference bridge + host-local (target: ≤ 2×).

    \b
    Example:
      clew bench cni --pods 20 --standalone
    """
    if os.geteuid() != 0:
        raise UserError("clew bench cni attaches pods in throwaway network namespaces: run it as root")
    from clew.bench.cni import run

    try:
        with progress(f"bench cni: {pods} pods") as step:
            step("ADD and DEL, clew-cni and the reference plugins")
            result = run(pods, standalone=standalone)
    except RuntimeError as exc:
        raise UserError(str(exc), exit_code=1) from None
    if as_json:
        print_json(result.to_json(), "bench", "CniBench")
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
    """Pod-to-pod TCP throughput and RTT over host-gw, vxlan and bgp beside plain routing, in one run.

    \b
    Example:
      clew bench podnet --seconds 2 --rounds 3 --pin split
    """
    if os.geteuid() != 0:
        raise UserError("clew bench podnet builds labs of network namespaces: run it as root")
    from clew.bench.podnet import run
    from clew.lab.build import LabError

    try:
        with progress("bench podnet") as step:
            step(f"{rounds} round(s) over host-gw, vxlan, bgp and plain routing")
            result = run(seconds, pings, rounds, pin)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except (RuntimeError, LabError) as exc:
        raise UserError(str(exc), exit_code=1) from None
    if as_json:
        print_json(result.to_json(), "bench", "PodnetBench")
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
        list[int] | None,
        typer.Option("--services", min=1, help="Services (× 3 endpoints); repeat for a curve. [default: 10000]"),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="iptables or nftables.")] = "iptables",
    changes: Annotated[int, typer.Option("--changes", min=1, help="Changes to time one by one.")] = 50,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw sync times against Service count (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per count).")] = False,
) -> None:
    """Full resync and one-change sync times beside the raw tool's load (iptables-restore, nft -f)
    and kube-proxy's own syncs of the same rules, in one run; the engine's memory. In nftables
    mode kube-proxy's nftables layout is loaded once, up to 20k Services (it loads quadratically).

    \b
    Examples:
      clew bench sync --services 1000 --services 10000 --plot sync.png
      clew bench sync --mode nftables --services 10000 --services 100000
    """
    if mode not in ("iptables", "nftables"):
        raise UserError(f"--mode {mode!r}: expected iptables or nftables")
    if os.geteuid() != 0:
        raise UserError("clew bench sync loads rules into throwaway network namespaces: run it as root")
    if plot is not None:
        require_matplotlib()
    from clew.bench.sync import run_isolated

    results = []
    try:
        for n in services or [10000]:
            with progress(f"bench sync: {n} Services") as step:
                results.append(run_isolated(n, changes, step, mode=mode))
    except RuntimeError as e:
        raise UserError(str(e), exit_code=1) from None
    if plot is not None:
        from clew.bench.plot import sync_plot

        sync_plot(results, plot)
    if as_json:
        for r in results:
            print_json(r.to_json(), "bench", "SyncBench")
        return
    for r in results:
        print(sync_table(r))
    if plot is not None:
        print(f"plot written to {plot}")


@app.command("dataplane")
def bench_dataplane(
    services: Annotated[
        list[int] | None,
        typer.Option("--services", help="Services (× 3 endpoints); repeat for a curve. [default: 1000, 10000]"),
    ] = None,
    mode: Annotated[
        list[str] | None, typer.Option("--mode", help="iptables or nftables; repeat for both. [default: both]")
    ] = None,
    connects: Annotated[int, typer.Option("--connects", help="connect() calls per target.")] = 2000,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw connect time against Service count (SVG/PNG).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per mode and count).")] = False,
) -> None:
    """New-connection set-up time to the first and the last Service and straight to a pod, through
    a node holding N Services' rules, in throwaway namespaces (target, nftables mode at 10k: last
    within 10% of first and 15% of straight; iptables mode grows with N).

    \b
    Example:
      clew bench dataplane --mode iptables --mode nftables --services 1000 --services 10000 --plot dp.svg
    """
    from clew.bench.dataplane import check_args, run

    modes, counts = mode or ["iptables", "nftables"], services or [1000, 10000]
    try:
        check_args(modes, counts, connects)
    except ValueError as e:
        raise UserError(str(e)) from None
    if os.geteuid() != 0:
        raise UserError("clew bench dataplane builds throwaway network namespaces: run it as root")
    if plot is not None:
        require_matplotlib()
    results = []
    try:
        for m in modes:
            for n in counts:
                with progress(f"bench dataplane: {m}, {n} Services") as step:
                    results.append(run(m, n, connects, progress=step))
    except RuntimeError as e:
        raise UserError(str(e), exit_code=1) from None
    if plot is not None:
        from clew.bench.plot import dataplane_plot

        dataplane_plot(results, plot)
    if as_json:
        for r in results:
            print_json(r.to_json(), "bench", "DataplaneBench")
        return
    print(dataplane_table(results))
    if plot is not None:
        print(f"plot written to {plot}")


def dataplane_table(results: list[DataplaneBench]) -> str:
    """One row per mode and count: p50 (p99) µs per target and the ratios the target is about."""
    from clew.bench.dataplane import meets

    rows = [
        f"clew bench dataplane: connect() until established, client → node (the rules) → endpoints, "
        f"{results[0].connects if results else 0} per target, interleaved; p50 (p99) in µs",
        f"  {'mode':<9}{'Services':>9}{'load s':>8}  {'first':>14}{'last':>14}{'straight':>14}{'no rules':>14}"
        f"  {'last/first':>10}{'last/straight':>14}",
    ]
    for r in results:
        cells = "".join(f"{f'{t.p50_us:.1f} ({t.p99_us:.0f})':>14}" for t in (r.first, r.last, r.direct, r.no_rules))
        ok = meets(r)
        verdict = "" if ok is None else ("  meets ≤ 1.10× / ≤ 1.15×" if ok else "  misses ≤ 1.10× / ≤ 1.15×")
        rows.append(
            f"  {r.mode:<9}{r.services:>9}{r.load_s:>8.2f}  {cells}  {r.last_vs_first:>9.2f}×{r.last_vs_direct:>13.2f}×"
            + verdict
        )
    rows.append(
        "  first/last: the first and last Service in the renderer's order (iptables walks KUBE-SERVICES in it);"
    )
    rows.append("  straight: to a pod IP through the same rules; no rules: the same before any rule was loaded.")
    return "\n".join(rows)


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:5.2f}× ({'meets' if ratio <= target else 'misses'} ≤ {target:g}×)"


def _s(value: float | None, width: int, digits: int) -> str:
    return f"{'n/a':>{width}} " if value is None else f"{value:>{width}.{digits}f}s"


def _faster(ratio: float | None) -> str:
    """clew's time over kube-proxy's, said the readable way round (``365× faster``)."""
    if ratio is None:
        return "  n/a"
    return f"{1 / ratio:.0f}× faster" if 0 < ratio < 1 else f"{ratio:5.2f}×"


def sync_table(r: SyncBench) -> str:
    """clew's times, the kernel's raw restores and kube-proxy's restores side by side."""
    if r.mode == "nftables":
        return sync_table_nft(r)
    rows = [
        f"clew bench sync: {r.services} Services × 3 endpoints, mode {r.mode}, {r.partial_syncs} of {r.changes} "
        "changes synced partially",
        f"  {'':<28}{'clew':>9}  {'raw restore':>11}  {'clew/raw':<21}{'kube-proxy':>10}  clew/kube-proxy",
        f"  {'full resync over the rules':<28}{r.full_sync_s:>8.3f}s  {r.raw_full_restore_s:>10.3f}s  "
        f"{_verdict(r.full_ratio, 1.3):<21}{r.kube_proxy_full_restore_s:>9.3f}s  {r.full_vs_kube_proxy:5.2f}×",
        f"  {'one change, p50':<28}{r.change_p50_s:>8.4f}s  {r.raw_partial_restore_s:>10.4f}s  "
        f"{_verdict(r.change_ratio, 1.5):<21}{r.kube_proxy_partial_restore_s:>9.4f}s  {r.change_vs_kube_proxy:5.2f}×",
        f"  {'one change, p99':<28}{r.change_p99_s:>8.4f}s",
        f"  {'resident memory':<28}{r.rss_mb:>7.1f}MB  (peak {r.peak_rss_mb} MB; "
        f"{'meets' if r.rss_mb <= 150 else 'misses'} ≤ 150 MB)",
        "  raw restore: iptables-restore of the same full payload into an empty namespace, and of just the changed "
        "Service's chains;",
        "  kube-proxy: its --noflush restores of the same rules: a full sync rewrites every chain, a partial one "
        "every shared chain (KUBE-SERVICES…) and the changed Service's.",
    ]
    return "\n".join(rows)


def sync_table_nft(r: SyncBench) -> str:
    """nftables mode: clew's syncs beside ``nft -f`` and kube-proxy's own nftables layout."""
    small = r.services <= 20000
    change_target, rss_target = (0.005, 150) if small else (0.010, 1024)
    p99_ok = "meets" if r.change_p99_s <= change_target else "misses"
    vs = r.change_vs_kube_proxy
    kp_ok = "" if vs is None else f" ({'meets' if vs <= 1 / 30 else 'misses'} ≥ 30×)"
    rows = [
        f"clew bench sync: {r.services} Services × 3 endpoints, mode nftables, {r.partial_syncs} of {r.changes} "
        "changes synced partially",
        f"  {'':<28}{'clew':>10}  {'nft -f':>10}  {'clew/nft -f':<21}{'kube-proxy':>11}  clew/kube-proxy",
        f"  {'first load (empty netns)':<28}{r.first_full_sync_s:>9.3f}s",
        f"  {'full resync over the table':<28}{r.full_sync_s:>9.3f}s  {r.raw_full_restore_s:>9.3f}s  "
        f"{_verdict(r.full_ratio, 1.3):<21}{_s(r.kube_proxy_full_restore_s, 10, 3)}  {_faster(r.full_vs_kube_proxy)}",
        f"  {'one change, p50':<28}{r.change_p50_s * 1000:>8.2f}ms  {r.raw_partial_restore_s * 1000:>8.2f}ms  "
        f"{r.change_ratio:5.2f}×{'':<15}{_s(r.kube_proxy_partial_restore_s, 10, 4)}  {_faster(vs)}{kp_ok}",
        f"  {'one change, p99':<28}{r.change_p99_s * 1000:>8.2f}ms  ({p99_ok} ≤ {change_target * 1000:g} ms)",
        f"  {'resident memory':<28}{r.rss_mb:>8.1f}MB  (peak {r.peak_rss_mb} MB; "
        f"{'meets' if r.rss_mb <= rss_target else 'misses'} ≤ {rss_target} MB)",
        "  nft -f: the same full script into an empty namespace, and the changed Service's elements (a process each);",
        "  kube-proxy: its v1.33 layout loaded once with nft -f, then its partial sync of each change"
        + ("" if small else " (not at this size: it loads quadratically)"),
    ]
    if not small:
        rows.append(f"  full load ≤ 60 s: {'meets' if r.first_full_sync_s <= 60 else 'misses'}")
    return "\n".join(rows)


def require_matplotlib() -> None:
    """``--plot`` needs the optional matplotlib: say how to get it, in one line, before any work."""
    import importlib.util
    import sys

    if importlib.util.find_spec("matplotlib") is None:
        raise UserError(f"--plot needs matplotlib, which is not installed: {sys.executable} -m pip install matplotlib")
