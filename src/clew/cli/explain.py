"""Explain what a node does with a Service: its rule tree, shares and why each endpoint is used."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from clew.cli.errors import UserError
from clew.cli.jsonout import print_json
from clew.cli.netns_arg import netns_ref
from clew.cli.stdin import stdin_path
from clew.trace.explain import explain_service, format_explanation, merge_explanations
from clew.trace.explain_nft import explain_service_nft
from clew.trace.sources import SourceError, load_view

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
_QUERY = re.compile(r"^[a-z0-9.-]+/[a-z0-9.-]+(:[a-z0-9-]*)?$")


@app.command("service")
def explain_service_command(
    name: Annotated[str, typer.Argument(help="NS/NAME or NS/NAME:PORT")],
    ruleset: Annotated[
        str | None, typer.Option("--ruleset", help="iptables-save output or nft -j list ruleset JSON; - reads stdin.")
    ] = None,
    netns: Annotated[
        str | None,
        typer.Option(
            "--netns",
            help="A live network namespace: a name, /run/netns/NAME or /proc/PID/ns/net (root); default: this node.",
        ),
    ] = None,
    from_dump: Annotated[str | None, typer.Option("--from-dump", help="A folder written by clew dump.")] = None,
    objects: Annotated[
        str | None, typer.Option("--objects", help="Manifests, to say why endpoints are unused.")
    ] = None,
    node_name: Annotated[str | None, typer.Option("--node-name", help="The node, with --objects.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
    html_file: Annotated[
        str | None, typer.Option("--html", help="Also write a self-contained page drawing the tree to FILE.")
    ] = None,
) -> None:
    """A Service's rule tree on a node, with the share of connections each endpoint gets and why.

    The port is named (NS/NAME:http) or numbered (NS/NAME:80). Exit 1 when no rule names the Service.

    \b
    Examples:
      clew explain service default/web:http --ruleset rules.txt
      clew explain service default/web --netns node-1 --objects manifests/ --node-name node-1 --json
    """
    if not _QUERY.match(name):
        raise UserError(f"{name!r} is not NS/NAME or NS/NAME:PORT")
    ruleset = stdin_path("--ruleset", ruleset)
    try:
        view = load_view(ruleset, [], netns_ref(netns) if netns else None, from_dump)
    except SourceError as e:
        raise UserError(str(e)) from None
    policies = None
    if objects:
        from clew.proxy.inputs import load_snapshot, make_config
        from clew.proxy.policy import decide

        snapshot = load_snapshot(stdin_path("--objects", objects))
        policies = decide(snapshot, make_config(snapshot, node_name=node_name))
    result = explain_service(view.ruleset, name, policies)
    if view.nft is not None:  # kube-proxy's or clew's nftables layout: both views, one answer
        result = merge_explanations(result, explain_service_nft(view.nft, name))
    if html_file:
        from clew.cli.trace import write_page
        from clew.trace.html import explain_page

        write_page(html_file, explain_page(result, format_explanation(result)))
    if as_json:
        print_json(result.to_json(), "trace", "ServiceExplanation", indent=2)
    else:
        print(format_explanation(result), end="")
    if not result.ports:
        raise typer.Exit(1)  # not found: the text said so; a script can tell by the exit code
