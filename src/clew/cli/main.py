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
from clew.cli import agent, bench, demo, dump, explain, lab, render, trace
from clew.cli.errors import UserError, fail
from clew.kernel.errors import KernelError
from clew.model.fields import Invalid
from clew.podnet.errors import PodnetError
from clew.sources.manifests import ManifestError

app = typer.Typer(
    name="clew",
    help="Kubernetes node networking you can see through.",
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


app.command("render", help=render.__doc__)(render.render_command)
app.command("demo", help=demo.__doc__)(demo.demo_command)
app.command("trace", help=trace.__doc__)(trace.trace_command)
app.command("dump", help=dump.__doc__)(dump.dump_command)
app.command("agent", help=agent.__doc__)(agent.agent_command)
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
    if isinstance(code, int) and code != 0:  # typer.Exit(n) in non-standalone mode
        raise SystemExit(code)


if __name__ == "__main__":
    main()
