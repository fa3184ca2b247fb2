"""The ``hplan`` command line: a thin typer app.

Each command group lives in ``hplan.commands.<name>`` and registers itself on ``app``; heavy
imports (torch, pybullet) happen inside the command functions so ``hplan --help`` stays fast.
User mistakes surface as :class:`hplan.errors.HplanError` and are printed as one line.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from hplan.errors import HplanError

app = typer.Typer(
    name="hplan",
    help="Hierarchical planning in learned latent space, with safety stress tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _every_command() -> None:
    """Process-wide settings every command runs under (not ``--help`` of the app itself)."""
    from hplan.device import flush_denormals  # imports torch: here, so `hplan --help` stays fast

    flush_denormals()


# Order is the order of `hplan --help`.
COMMAND_MODULES = ("envs", "scenario", "collect", "train", "inspect", "calibrate", "run", "replay", "stress", "study",
                   "results", "demo")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"hplan.commands.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"hplan.commands.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console-script entry: run the app, turning user errors into one red line and an exit code."""
    try:
        app(standalone_mode=False, prog_name="hplan")
    except HplanError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        Console(stderr=True).print("[bold red]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:  # click usage errors
        try:
            import click
        except ModuleNotFoundError:  # typer >= 0.22 vendors click as typer._click
            from typer import _click as click

        usage = click.exceptions.UsageError
        no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())  # prints the help: keep it
        if isinstance(err, usage) and not isinstance(err, no_args):
            # A bad option value (`collect -n 10**12`, `--seed 2**64`), an unknown option, a missing
            # argument: one line naming it, like every other user error (click's own show() prints
            # the usage line and a hint first).
            hint = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
            Console(stderr=True).print(f"[bold red]error:[/] {escape(err.format_message())}{hint}", highlight=False,
                                       soft_wrap=True)
            sys.exit(err.exit_code)
        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
