"""Write a node's rules, addresses, routes, links, neighbours, FDB and sysctls as files for offline tracing
and checking (``clew trace --from-dump``, ``clew doctor --from-dump``)."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from clew import __version__
from clew.cli.errors import UserError
from clew.cli.netns_arg import netns_ref


def dump_command(
    folder: Annotated[Path, typer.Argument(help="Folder to write (created if missing).")],
    netns: Annotated[
        str | None,
        typer.Option(
            "--netns",
            help="The node's network namespace: a name, /run/netns/NAME or /proc/PID/ns/net; default: the "
            "namespace clew runs in (this node).",
        ),
    ] = None,
    sample: Annotated[
        float, typer.Option("--sample", help="Seconds to sample CPU steal and conntrack counters (0: none).")
    ] = 1.0,
) -> None:
    """Write a node's rules, addresses, routes, links, neighbours, FDB and sysctls as files (trace, doctor)."""
    from clew.doctor.collect import capture
    from clew.kernel.namespace import Namespace

    netns = netns_ref(netns) if netns else None
    if not 0 <= sample <= 60:
        raise UserError(f"--sample {sample:g}: give 0 to 60 seconds")
    if os.geteuid() != 0:
        raise UserError("clew dump reads a network namespace: run it as root")
    if not Namespace.of(netns).exists():
        raise UserError(f"network namespace {netns!r} does not exist")
    files = capture(Namespace.of(netns), sample_s=sample)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{e.filename or folder}: cannot write: {e.strerror}") from None
    meta = {
        "apiVersion": "clew.dump/v1",
        "kind": "Dump",
        "netns": netns or "this namespace",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "clew": __version__,
        "files": sorted(files),
        "node_names": {},
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {len(files) + 1} files to {folder}; trace them with: clew trace --from-dump {folder} …; "
        f"check them with: clew doctor --from-dump {folder}"
    )
