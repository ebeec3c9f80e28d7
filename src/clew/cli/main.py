"""``clew``: the entry point. Registers the commands and turns every error into one line.

Usage errors (an unknown option, a port out of range) are one line too, with the ``--help`` to
read, rather than click's usage block. Known errors (bad input, a kernel command that failed)
print their own message; anything else is a bug and still prints one line, naming the
exception — ``CLEW_DEBUG=1`` shows its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from clew import __version__
from clew.cli import agent, bench, demo, doctor, dump, explain, lab, render, stdin, trace
from clew.cli.errors import UserError, fail
from clew.kernel.errors import KernelError
from clew.model.fields import Invalid
from clew.podnet.errors import PodnetError
from clew.sources.manifests import ManifestError


def with_examples(text: str | None, *examples: str) -> str:
    """A command's help with its examples below, kept as written (click's ``\\b``: no rewrap)."""
    lines = "\n".join(f"  {e}" for e in examples)
    return f"{(text or '').rstrip()}\n\n\b\nExample{'s' if len(examples) > 1 else ''}:\n{lines}"


app = typer.Typer(
    name="clew",
    help=with_examples(
        "Kubernetes node networking you can see through.",
        "clew demo                    (as root: the bundled example, loaded into a throwaway netns)",
        "clew render --objects manifests/ --node-name node-1 > rules.txt",
        "clew trace --ruleset rules.txt --src 10.244.1.5 --dst 10.96.0.10 --dport 80",
        "clew explain service default/web --ruleset rules.txt",
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"clew {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Kubernetes node networking you can see through."""


EXAMPLES = {
    "render": (
        "clew render --objects manifests/ --node-name node-1 --cluster-cidr 10.244.0.0/16 > rules.txt",
        "kubectl get svc,endpointslices,nodes -A -o yaml | clew render --objects - --node-name node-1",
    ),
    "demo": ("clew demo",),
    "trace": (
        "clew trace --ruleset rules.txt --local-ip 192.168.0.2 --src 10.244.1.5 --dst 10.96.0.10 --dport 80",
        "clew trace --netns node-1 --src 192.168.0.9 --dst 192.168.0.2 --dport 30080 --json",
    ),
    "dump": ("clew dump --netns node-1 ./node-1 && clew trace --from-dump ./node-1 --src … --dst …",),
    "doctor": (
        "clew doctor --netns node-1",
        "clew doctor --netns node-1 --objects manifests/ --json",
        "clew dump --netns node-1 ./node-1 && clew doctor --from-dump ./node-1",
    ),
    "agent": (
        "clew agent --config kube-proxy.yaml --objects manifests/ --netns node-1 --once",
        "clew agent --config kube-proxy.yaml --objects manifests/ --netns node-1 --mode nftables",
        "clew agent --cleanup --netns node-1",
    ),
}
for _name, _module, _fn in (
    ("render", render, render.render_command),
    ("demo", demo, demo.demo_command),
    ("trace", trace, trace.trace_command),
    ("dump", dump, dump.dump_command),
    ("doctor", doctor, doctor.doctor_command),
    ("agent", agent, agent.agent_command),
):
    app.command(_name, help=with_examples(_module.__doc__, *EXAMPLES[_name]))(_fn)
app.add_typer(explain.app, name="explain")
app.add_typer(lab.app, name="lab")
app.add_typer(bench.app, name="bench")

KNOWN = (ManifestError, KernelError, PodnetError)


def _usage_line(e: typer.TyperException) -> str:
    """click's usage error as one line: the message and where help is."""
    ctx: Any = getattr(e, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{e.format_message()}{where}"


def main(argv: list[str] | None = None) -> None:
    stdin.reset()
    try:
        code = app(args=argv, prog_name="clew", standalone_mode=False)
    except UserError as e:
        fail(str(e), e.exit_code)
    except KNOWN as e:
        fail(str(e))
    except Invalid as e:
        fail(f"config: {e}")
    except typer.TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `clew`, `clew lab`: the help, as click prints it
            print(e.format_message(), file=sys.stderr)
            raise SystemExit(2) from None
        fail(_usage_line(e), getattr(e, "exit_code", 2))
    except typer.Abort:
        fail("aborted", 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        raise SystemExit(1) from None
    except Exception as e:  # a bug, or a file met where no one expected it: one line, the traceback on request
        if os.environ.get("CLEW_DEBUG"):
            raise
        if isinstance(e, OSError) and e.filename is not None:  # a path that cannot be read or written
            fail(f"{e.filename}: {e.strerror}", 1)
        fail(f"internal error: {type(e).__name__}: {e} (CLEW_DEBUG=1 shows the traceback)", 1)
    if code == 130:  # typer turns Ctrl-C into Exit(130), and says nothing
        fail("interrupted", 130)
    if isinstance(code, int) and code != 0:  # typer.Exit(n) in non-standalone mode
        raise SystemExit(code)


if __name__ == "__main__":
    main()
