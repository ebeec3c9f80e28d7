"""``clew``: the entry point. Registers the commands and turns known errors into one line."""

from __future__ import annotations

import sys

import typer

from clew.cli import agent, bench, demo, dump, explain, lab, render, trace
from clew.cli.errors import UserError, fail
from clew.kernel.errors import KernelError
from clew.model.fields import Invalid
from clew.sources.manifests import ManifestError

app = typer.Typer(
    name="clew",
    help="Kubernetes node networking you can see through.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Kubernetes node networking you can see through."""


app.command("render", help=render.__doc__)(render.render_command)
app.command("demo", help=demo.__doc__)(demo.demo_command)
app.command("trace", help=trace.__doc__)(trace.trace_command)
app.command("dump", help=dump.__doc__)(dump.dump_command)
app.command("agent", help=agent.__doc__)(agent.agent_command)
app.add_typer(explain.app, name="explain")
app.add_typer(lab.app, name="lab")
app.add_typer(bench.app, name="bench")


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="clew", standalone_mode=True)
    except UserError as e:
        fail(str(e), e.exit_code)
    except (ManifestError, KernelError) as e:
        fail(str(e))
    except Invalid as e:
        fail(f"config: {e}")
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
