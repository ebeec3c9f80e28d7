"""Check a node for the causes of the usual Kubernetes networking outages; only reads.

Exit 0 when no check failed, 1 when one did, 2 on a usage error. Each finding carries the
values read (evidence) and, for a failure or warning, the exact command or setting that fixes it.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clew.cli.errors import UserError
from clew.cli.netns_arg import netns_name

if TYPE_CHECKING:
    from clew.doctor import facts as facts_module


def doctor_command(
    netns: Annotated[
        str | None, typer.Option("--netns", help="The node's network namespace: a name or a namespace file.")
    ] = None,
    from_dump: Annotated[Path | None, typer.Option("--from-dump", help="A folder written by clew dump.")] = None,
    objects: Annotated[
        Path | None, typer.Option("--objects", help="The cluster's Node and Service objects (file or folder).")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Read the Node and Service objects from this cluster.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the clew.doctor/v1 JSON document.")] = False,
    sample: Annotated[
        float, typer.Option("--sample", help="Seconds to sample CPU steal and conntrack counters (0: skip).")
    ] = 1.0,
) -> None:
    """Check a node for the causes of the usual Kubernetes networking outages; only reads."""
    from clew.doctor import dump_files, facts
    from clew.doctor import objects as doctor_objects
    from clew.doctor.checks import run_all
    from clew.doctor.finding import exit_code, report, table

    if not 0 <= sample <= 60:
        raise UserError(f"--sample {sample:g}: give 0 to 60 seconds")
    if netns is not None and from_dump is not None:
        raise UserError("--netns and --from-dump are exclusive: check a live node or a dump, not both")
    if objects is not None and kubeconfig is not None:
        raise UserError("--objects and --kubeconfig are exclusive: compare with a folder or a cluster, not both")
    cluster = doctor_objects.load(objects) if objects is not None else None
    if kubeconfig is not None:
        cluster = _from_cluster(kubeconfig)
    if from_dump is not None:
        try:
            name, files = dump_files.read(from_dump)
        except ValueError as e:
            raise UserError(str(e)) from None
    else:
        name, files = _live(netns, sample)
    node = facts.from_files(files, name=name, objects=cluster)
    findings = run_all(node)
    if as_json:
        print(json.dumps(report(name, findings), indent=2))
    else:
        print(table(name, findings))
    code = exit_code(findings)
    if code:
        raise typer.Exit(code)


def _from_cluster(kubeconfig: Path) -> facts_module.Objects:
    """The cluster's objects, or one line saying why they cannot be read."""
    from clew.doctor import objects as doctor_objects
    from clew.sources.apiclient import ApiError
    from clew.sources.kubeconfig import KubeconfigError

    try:
        return doctor_objects.from_cluster(kubeconfig)
    except KubeconfigError as e:
        raise UserError(f"--kubeconfig {kubeconfig}: {e}") from None
    except ApiError as e:
        raise UserError(f"--kubeconfig {kubeconfig}: the API server refused the list: {e}", 1) from None
    except OSError as e:
        raise UserError(f"--kubeconfig {kubeconfig}: cannot reach the API server: {e.strerror or e}", 1) from None


def _live(netns: str | None, sample: float) -> tuple[str, dict[str, str]]:
    """(the node's name, the files) read from ``netns`` (a name or a namespace file) or our own."""
    from clew.doctor import collect

    if os.geteuid() != 0:
        raise UserError("clew doctor reads a node's rules and sysctls: run it as root (or use --from-dump)")
    if netns is None:
        return socket.gethostname(), collect.capture(None, sample_s=sample)
    if netns.startswith("/") and not netns.startswith(("/run/netns/", "/var/run/netns/")):
        if not os.path.exists(netns):
            raise UserError(f"--netns {netns!r}: no such namespace file")
        return netns, collect.capture(netns, sample_s=sample)
    name = netns_name(netns)
    if not os.path.exists(f"/run/netns/{name}"):
        raise UserError(f"network namespace {name!r} does not exist")
    return name, collect.capture(name, sample_s=sample)
