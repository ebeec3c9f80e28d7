"""A real multi-node cluster made of network namespaces on this machine, running clew."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clew.cli.errors import UserError

if TYPE_CHECKING:
    from clew.lab.state import LabState

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip
Name = Annotated[str, typer.Option("--name", help="Lab name (namespaces <name>-lab-…).", show_default=True)]
Output = Annotated[str, typer.Option("-o", "--output", help="table or json.", show_default=True)]


def _root() -> None:
    if os.geteuid() != 0:
        raise UserError("the lab creates network namespaces: run it as root")


def _state(name: str) -> LabState:
    from clew.lab.state import load

    try:
        state = load(name)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"lab {name!r}: its state file cannot be read ({e}); clew lab down --name {name}") from None
    if state is None:
        raise UserError(f"no lab {name!r} is up (clew lab up first; clew lab list shows the labs)")
    return state


def _output(value: str) -> str:
    if value not in ("table", "json"):
        raise UserError(f"-o/--output: {value!r} is not table or json")
    return value


@app.command("up")
def lab_up(
    name: Name = "clew",
    nodes: Annotated[int, typer.Option("--nodes", help="How many nodes (1-9).")] = 3,
    underlay: Annotated[str, typer.Option("--underlay", help="l2 or routed.")] = "l2",
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="vxlan, host-gw or bgp (BIRD per node; routed: the router reflects).",
        ),
    ] = "vxlan",
    proxy_mode: Annotated[str, typer.Option("--proxy-mode", help="iptables or nftables.")] = "iptables",
    service_cidr: Annotated[str, typer.Option("--service-cidr", help="Service range.")] = "10.96.0.0/12",
    per_segment: Annotated[
        int, typer.Option("--per-segment", help="routed: nodes per segment (0: 2 for bgp, else 1).")
    ] = 0,
    bgp_router: Annotated[
        str, typer.Option("--bgp-router", help="routed bgp: the router is the route reflector or an ebgp peer.")
    ] = "reflector",
    bfd: Annotated[bool, typer.Option("--bfd", help="bgp: BFD on every session.")] = False,
) -> None:
    """Build the lab: namespaces, underlay, nodes, and one clew agent per node (kept running by
    the lab's supervisor).

    \b
    Examples:
      clew lab up
      clew lab up --name lab2 --nodes 2 --backend host-gw
      clew lab up --name lab3 --nodes 4 --backend bgp --underlay routed --bgp-router ebgp --bfd
    """
    _root()
    from clew.lab.build import LabError, up
    from clew.lab.plan import LabConfig
    from clew.lab.state import LabState, state_dir

    config = LabConfig(name=name, nodes=nodes, underlay=underlay, backend=backend, proxy_mode=proxy_mode,
                       service_cidr=service_cidr, per_segment=per_segment, bgp_router=bgp_router,
                       bfd=bfd)  # fmt: skip
    try:
        config.validate()
        state = LabState(config)
        with _spinner(f"building lab {name}: {nodes} nodes, {backend}, {underlay} underlay"):
            up(state, state_dir(name))
    except (ValueError, LabError) as e:
        raise UserError(str(e)) from None
    for n in state.plan.nodes:
        print(f"{n.name}: netns {n.netns}, {n.ip}, pods {n.pod_cidr}")
    print(f"lab {name} is up ({backend}, {underlay} underlay). Next: clew lab apply -f app.yaml")


@app.command("apply")
def lab_apply(
    file: Annotated[str, typer.Option("-f", "--file", help="Deployments and Services (YAML/JSON); - reads stdin.")],
    name: Name = "clew",
) -> None:
    """Create or update Deployments (pods via clew-cni) and Services (IPs, NodePorts, slices).

    Every object is checked first, as the API server would: one bad object is one line naming
    it and the field, and nothing is applied. Objects a node agent rejected are listed after the
    sync, and the exit code is 1.

    \b
    Examples:
      clew lab apply -f app.yaml
      cat app.yaml | clew lab apply -f -
    """
    _root()
    from clew.lab import controlplane
    from clew.lab.build import LabError, agent_rejections, wait_synced
    from clew.lab.pods import PodError
    from clew.lab.state import state_dir

    objects = _read_objects(file)
    state = _state(name)
    root = state_dir(name)
    t0 = time.time()
    with _Progress(len(objects)) as progress:
        try:
            said = controlplane.apply(state, root, objects, progress.update)
            for line in said if len(said) <= 50 else [*said[:20], f"… and {len(said) - 20} more"]:
                progress.print(line)
            wait_synced(state, root, since=t0, deadline_s=max(30.0, len(objects) / 50), progress=progress.update)
        except controlplane.ApplyError as e:
            progress.stop()
            _fail_lines(e.problems)
        except (PodError, LabError, OSError) as e:
            raise UserError(str(e)) from None
    rejected = agent_rejections(state, root)
    if rejected:
        _fail_lines([f"rejected: {r}" for r in rejected], exit_code=1)
    print("applied; every node's agent has synced")


def _read_objects(file: str) -> list[Any]:
    from clew.sources.manifests import load_objects, parse_text

    if file == "-":
        try:
            objects = parse_text(sys.stdin.buffer.read().decode("utf-8"), "<stdin>")
        except UnicodeDecodeError as e:
            raise UserError(f"<stdin>: not UTF-8 text ({e.reason} at byte {e.start})") from None
    else:
        objects = load_objects(file)
    if not objects:
        raise UserError(f"{'<stdin>' if file == '-' else file}: no objects passed to apply")
    return objects


def _fail_lines(problems: list[str], exit_code: int = 2) -> None:
    """Every problem as one ``clew: error:`` line, then exit non-zero."""
    for line in problems[:-1]:
        print(f"clew: error: {line}", file=sys.stderr)
    raise UserError(problems[-1], exit_code)


class _Progress:
    """A rich progress display on a terminal for work that may take seconds; silent otherwise."""

    def __init__(self, objects: int, console: Any = None) -> None:
        """``console``: a rich Console to draw on (default: stderr, if it is a terminal)."""
        self.tasks: dict[str, Any] = {}
        self.bar: Any = None
        if console is None and sys.stderr.isatty():
            from rich.console import Console

            console = Console(stderr=True)
        if console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=True)  # fmt: skip
            self.tasks["read"] = self.bar.add_task("objects read", total=objects, completed=objects)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def update(self, what: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done, total=total)

    def print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)  # above the bars, on stderr
        print(line)


class _spinner:
    """A spinner with ``text`` on a terminal while a step runs (``lab up`` takes seconds)."""

    def __init__(self, text: str) -> None:
        self.status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(text)

    def __enter__(self) -> None:
        if self.status is not None:
            self.status.start()

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()


@app.command("status")
def lab_status(
    name: Name = "clew",
    output: Output = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as -o json.", hidden=True)] = False,
) -> None:
    """Nodes and their agents, pods and Services of the lab, checked against the running processes.

    \b
    Examples:
      clew lab status
      clew lab status --name lab2 -o json
    """
    from clew.lab.status import lab_status as collect
    from clew.lab.status import render_status

    fmt = "json" if as_json else _output(output)
    doc = collect(_state(name))
    if fmt == "json":
        import json

        print(json.dumps(doc, indent=2))
    else:
        print(render_status(doc))


@app.command("list")
def lab_list(output: Output = "table") -> None:
    """The labs on this machine (their state under /run/clew/lab, and namespaces left without one).

    \b
    Examples:
      clew lab list
      clew lab list -o json
    """
    from clew.lab.status import list_labs, render_list

    fmt = _output(output)
    doc = list_labs()
    if fmt == "json":
        import json

        print(json.dumps(doc, indent=2))
    else:
        print(render_list(doc))


@app.command("restart")
def lab_restart(
    node: Annotated[str, typer.Argument(help="The node whose agent to restart (node-1, …).")],
    name: Name = "clew",
    proxy_mode: Annotated[
        str | None, typer.Option("--proxy-mode", help="Restart it in this mode: iptables or nftables.")
    ] = None,
) -> None:
    """Restart a node's agent (as deleting a DaemonSet pod does) and wait until it has synced.

    The lab's supervisor stops the agent (SIGTERM; the rules stay in place) and starts it again;
    a supervisor that is not running is started first. With --proxy-mode the new agent runs in
    that mode, and removes the other mode's rules as it starts.

    \b
    Examples:
      clew lab restart node-2
      clew lab restart node-2 --proxy-mode nftables
    """
    _root()
    from clew.lab.build import LabError, restart_agent, set_proxy_mode
    from clew.lab.state import state_dir

    state = _state(name)
    try:
        if proxy_mode is not None:
            set_proxy_mode(state, state_dir(name), node, proxy_mode)
        old, new = restart_agent(state, state_dir(name), node)
    except (LabError, KeyError) as e:
        raise UserError(str(e).strip("'\"")) from None
    mode = f" in {proxy_mode} mode" if proxy_mode is not None else ""
    print(f"{node}: agent restarted{mode} (pid {old or '-'} → {new}) and synced")


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_exec(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A pod, a node (node-1) or ext.")],
    name: Name = "clew",
) -> None:
    """Run a command inside a pod's, a node's or the outside client's namespace: exec POD -- CMD.

    \b
    Examples:
      clew lab exec web-0 -- ip -4 addr
      clew lab exec ext -- curl -s 192.168.50.11:30080
    """
    _root()
    from clew.kernel import netns

    state = _state(name)
    plan = state.plan
    if target in state.pods:
        ns = state.pods[target].netns
    elif target == "ext":
        ns = plan.ext_netns
    else:
        try:
            ns = plan.node(target).netns
        except KeyError:
            raise UserError(f"no pod or node {target!r} in lab {name}") from None
    argv = list(ctx.args)
    if not argv:
        raise UserError("give a command: clew lab exec POD -- CMD ARGS…")
    try:
        code = subprocess.call(netns.exec_argv(ns, argv))
    except OSError as e:
        raise UserError(f"{argv[0]}: {e.strerror}") from None
    raise typer.Exit(code)


@app.command("down")
def lab_down(name: Name = "clew") -> None:
    """Remove everything the lab made (supervisor, agents, pods, namespaces, state), also after a
    crash or SIGKILL.

    \b
    Example:
      clew lab down --name clew
    """
    _root()
    from clew.lab.teardown import down

    removed = down(name)
    print(f"lab {name}: removed {len(removed)} namespaces")


@app.command("demo")
def lab_demo(
    name: Name = "clew",
    proxy_mode: Annotated[str, typer.Option("--proxy-mode", help="iptables or nftables.")] = "iptables",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="The trace with every hop.")] = False,
) -> None:
    """A 3-node vxlan lab, a demo app, the pod matrix, ClusterIP and NodePort, a trace; then teardown.

    \b
    Example:
      clew lab demo
      clew lab demo --proxy-mode nftables
    """
    _root()
    from clew.lab.build import LabError
    from clew.lab.demo import run

    start = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:5.1f}s] {text}", flush=True)

    try:
        report = run(say, name, proxy_mode)
    except (LabError, ValueError) as e:
        raise UserError(str(e)) from None
    pods = sorted(report.matrix)
    print("\nPod-to-pod matrix: the source address each destination saw (its own IP = no NAT)")
    print(" " * 8 + "".join(f"{p:>12}" for p in pods))
    for src in pods:
        print(f"{src:<8}" + "".join(f"{report.matrix[src].get(dst, '-'):>12}" for dst in pods))
    print("\nOne Service packet, explained (clew trace on the client pod's node):\n")
    print(report.story if verbose else report.short)
    verdict = "all checks passed" if not report.failures else f"{len(report.failures)} FAILED: {report.failures}"
    print(f"demo finished in {report.seconds:.1f}s, lab removed; {verdict}")
    if report.failures:
        sys.exit(1)
