"""Print exactly what the agent would load in a full sync (iptables-restore input). Pure: no root."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clew.cli.errors import UserError
from clew.proxy.inputs import load_snapshot, make_config
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide


def render_command(
    objects: Annotated[Path, typer.Option("--objects", help="Manifest file or folder (JSON/YAML).")],
    mode: Annotated[str, typer.Option("--mode", help="iptables or nftables.")] = "iptables",
    node_name: Annotated[str | None, typer.Option("--node-name", help="This node's name (isLocal).")] = None,
    node_ip: Annotated[list[str] | None, typer.Option("--node-ip", help="This node's IP; repeatable.")] = None,
    cluster_cidr: Annotated[str | None, typer.Option("--cluster-cidr", help="Pod CIDR(s), comma-separated.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="KubeProxyConfiguration file.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any object was rejected.")] = False,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="Add canaries and built-in chain jumps, to load into an empty netns.")
    ] = False,
) -> None:
    """Print exactly what the agent would load in a full sync (iptables-restore input). Pure: no root."""
    if mode not in ("iptables", "nftables"):
        raise UserError(f"--mode {mode!r}: choose iptables or nftables")
    if mode == "nftables":
        raise UserError("--mode nftables is not implemented yet; use --mode iptables")
    snapshot = load_snapshot(objects)
    cfg = make_config(
        snapshot, config_file=config, node_name=node_name, node_ips=node_ip, cluster_cidr=cluster_cidr, mode=mode
    )
    for warning in cfg.warnings:
        print(f"clew: warning: {warning}", file=sys.stderr)
    for note in snapshot.notes:
        print(f"clew: note: {note}", file=sys.stderr)
    for rejection in snapshot.rejections:
        print(f"clew: rejected: {rejection}", file=sys.stderr)
    sys.stdout.write(render(decide(snapshot, cfg), cfg).text(standalone=standalone))
    if strict and snapshot.rejections:
        raise typer.Exit(1)
