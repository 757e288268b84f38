"""The ``lbconvert`` command line: parses, calls a stage, renders. Nothing heavy here.

``lbconvert MODEL ...`` means ``lbconvert convert MODEL ...``: :class:`DefaultCommandGroup`
puts ``convert`` in front of a first word that is not a command name.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Annotated, Optional

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from lbconvert._version import __version__
from lbconvert.errors import LbconvertError

DEFAULT_COMMAND = "convert"


def _usage_error(exc: click_exceptions.ClickException) -> int:
    """Print a Click error as ``lbconvert: error: ...`` on one line; its exit code."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and isinstance(exc, click_exceptions.UsageError):
        message += f" (see `{ctx.command_path} --help`)"
    typer.echo(f"lbconvert: error: {message}", err=True)
    return exc.exit_code


def _debug_requested() -> bool:
    return os.environ.get("LBCONVERT_DEBUG", "") not in ("", "0")


class DefaultCommandGroup(TyperGroup):
    """A Typer group whose default subcommand is ``convert``.

    Typer ≥ 0.26 vendors Click, so click-default-group cannot plug in; overriding
    ``resolve_command`` is the pattern the ``hf`` CLI uses too. We never inject on empty
    args (that breaks shell completion) and a near-miss of a command name that is not a
    path fails with "Did you mean ...?" instead of being treated as a model.
    """

    def resolve_command(self, ctx, args):  # noqa: D401 - click API
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            first = args[0]
            looks_like_spec = (
                os.path.exists(first) or ":" in first or "." in first or os.sep in first
            )
            if not looks_like_spec:
                close = difflib.get_close_matches(first, list(self.commands), n=1, cutoff=0.6)
                if close:
                    ctx.fail(f"No such command '{first}'. Did you mean '{close[0]}'?")
            args = [DEFAULT_COMMAND, *args]
        return super().resolve_command(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Click's ``main``, with every usage error as ONE line on stderr (exit 2).

        Click prints the usage, a "Try --help" line and the error (Typer: a boxed panel);
        a wrong flag value deserves the same one line as any other input error.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:
            exc.show()  # the help itself, as `lbconvert` with no arguments promises
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            sys.exit(_usage_error(exc))
        except typer.Abort:
            typer.echo("lbconvert: aborted", err=True)
            sys.exit(1)
        # Non-standalone Click returns the code of an explicit Exit, else the command's value.
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LbconvertError as exc:
            if _debug_requested():
                raise
            typer.echo(f"lbconvert: error: {exc}", err=True)
            typer.echo("  (run with --debug or LBCONVERT_DEBUG=1 for the traceback)", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    cls=DefaultCommandGroup,
    name="lbconvert",
    no_args_is_help=True,
    subcommand_metavar="MODEL [OPTIONS] | COMMAND [ARGS]...",
    help=(
        "Make a PyTorch model and its training config ready for a large batch.\n\n"
        "`lbconvert MODEL --target-batch N` is short for `lbconvert convert MODEL "
        "--target-batch N` (convert is the default command)."
    ),
    # Click's plain help, not Typer's rich panels: the panels squeeze the option column and
    # cut option names at 80 columns (--max-per-devi…); Click wraps and never cuts a name.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lbconvert {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True,
                     help="Show the version and exit."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (also LBCONVERT_DEBUG=1); "
                           "accepted anywhere on the line.")
    ] = False,
) -> None:
    """Large-batch conversion and audits for PyTorch training runs."""


def _register() -> None:
    # Imported here so each command lives in its own module; none of them imports torch.
    from lbconvert.cli import audit_cmd, check_cmd, convert_cmd, plan_cmd

    # The one-line summaries `lbconvert --help` lists: whole sentences that fit 80 columns
    # (Click would cut the long help mid-sentence with "...").
    app.command("convert", help=convert_cmd.HELP,
                short_help="Convert MODEL for a large batch (the default command).")(
        convert_cmd.convert)
    app.command("plan", help=plan_cmd.HELP,
                short_help="Plan the large-batch schedule for a config (no torch).")(
        plan_cmd.plan)
    app.command("audit", help=audit_cmd.HELP,
                short_help="Audit training runs for large-batch mistakes.")(audit_cmd.audit)
    app.command("check", help=check_cmd.HELP,
                short_help="CI gate: convert the models in [tool.lbconvert], audit runs.")(
        check_cmd.check)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``lbconvert`` and ``python -m lbconvert``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        # --debug is accepted anywhere on the line, so strip it before Click routes.
        args = [a for a in args if a != "--debug"]
        os.environ["LBCONVERT_DEBUG"] = "1"
    app(args=expand_multi_value(args), prog_name="lbconvert")


#: Options that take several values after one flag, as timm's argparse ``nargs="*"`` does.
MULTI_VALUE_OPTIONS = ("--model-kwargs",)


def expand_multi_value(args: list[str]) -> list[str]:
    """``--model-kwargs a=1 b=2`` → ``--model-kwargs a=1 --model-kwargs b=2`` (Click takes
    one value per occurrence); the values are the following ``key=value`` words."""
    out: list[str] = []
    current = None
    for arg in args:
        if arg in MULTI_VALUE_OPTIONS:
            current = arg
            out.append(arg)
            continue
        if current and out[-1] != current and "=" in arg and not arg.startswith("-"):
            out += [current, arg]
            continue
        if not (current and out[-1] == current):
            current = None
        out.append(arg)
    return out
