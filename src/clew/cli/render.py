"""Print exactly what the agent would load in a full sync: iptables-restore input, or in nftables mode
the ``nft -f`` script that replaces clew's table. Pure: no root."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clew.cli.modes import require_runnable
from clew.cli.progress import shows_progress
from clew.cli.stdin import stdin_path
from clew.proxy.inputs import load_snapshot, make_config
from clew.proxy.iptables.render import render
from clew.proxy.nftables.render import render as render_nft
from clew.proxy.nftables.render import script
from clew.proxy.policy import decide


@shows_progress("clew render")
def render_command(
    objects: Annotated[Path, typer.Option("--objects", help="Manifest file or folder (JSON/YAML); - reads stdin.")],
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="iptables or nftables (default: the config file's mode, else iptables)."),
    ] = None,
    node_name: Annotated[str | None, typer.Option("--node-name", help="This node's name (isLocal).")] = None,
    node_ip: Annotated[list[str] | None, typer.Option("--node-ip", help="This node's IP; repeatable.")] = None,
    cluster_cidr: Annotated[str | None, typer.Option("--cluster-cidr", help="Pod CIDR(s), comma-separated.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="KubeProxyConfiguration file; - reads stdin.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any object was rejected.")] = False,
    standalone: Annotated[
        bool,
        typer.Option(
            "--standalone",
            help="iptables: add canaries and built-in chain jumps, to load into an empty netns (nft: always).",
        ),
    ] = False,
) -> None:
    """Print exactly what the agent would load in a full sync (iptables-restore input, or an nft script). Pure."""
    objects, config = stdin_path("--objects", objects), stdin_path("--config", config)
    snapshot = load_snapshot(objects)
    cfg = make_config(
        snapshot, config_file=config, node_name=node_name, node_ips=node_ip, cluster_cidr=cluster_cidr, mode=mode
    )
    require_runnable(cfg.mode)
    for warning in cfg.warnings:
        print(f"clew: warning: {warning}", file=sys.stderr)
    for note in snapshot.notes:
        print(f"clew: note: {note}", file=sys.stderr)
    for rejection in snapshot.rejections:
        print(f"clew: rejected: {rejection}", file=sys.stderr)
    policies = decide(snapshot, cfg)
    if cfg.mode == "nftables":
        rendered = render_nft(policies, cfg)
        for rejected in rendered.rejected:
            print(f"clew: rejected: {rejected.reason}", file=sys.stderr)
        sys.stdout.write(script(rendered))
        if strict and (snapshot.rejections or rendered.rejected):
            raise typer.Exit(1)
        return
    sys.stdout.write(render(policies, cfg).text(standalone=standalone))
    if strict and snapshot.rejections:
        raise typer.Exit(1)
