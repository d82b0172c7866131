"""The `smoltui` command: headless commands beside the dashboard. Imports torch only inside commands."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer._click.exceptions import ClickException, UsageError  # typer's own copy of click
from typer.core import TyperGroup

from smoltui import __version__
from smoltui.engine.errors import UserError


class OneLineErrors(TyperGroup):
    """The command group, with a mistyped command line told in one line like every other mistake.

    typer draws a usage line, a hint and a box around a bad option or value (`--lr abc`); here it is
    "error: <click's sentence>; `smoltui <command> --help` lists the options." and exit status 2.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as error:
            context = getattr(error, "ctx", None)
            hint = f"; `{context.command_path} --help` lists the options" if context is not None else ""
            from rich.markup import escape

            message = escape(error.format_message().rstrip("."))
            error_console.print(f"[bold red]error:[/] {message}{hint}.", highlight=False, soft_wrap=True, markup=True)
            sys.exit(2 if isinstance(error, UsageError) else error.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    rich_markup_mode=None,
    name="smoltui",
    help="A keyboard-driven terminal workbench for small language models.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


class LazyConsole:
    """A rich Console made on first use, so that `smoltui --help` and `--version` never import rich's."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


console = LazyConsole()
error_console = LazyConsole(stderr=True)

F = TypeVar("F", bound=Callable)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        envvar="SMOLTUI_WORKSPACE",
        help="Folder that holds runs and caches (default: ./.smoltui).",
        show_default=False,
    ),
]


def reports_user_errors(command: F) -> F:
    """Turn a UserError into one line on stderr and exit status 2; anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"smoltui {__version__}")  # no rich: the version is one plain line
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """A keyboard-driven terminal workbench for small language models. Without a command: the dashboard."""
    if ctx.invoked_subcommand is not None:
        return
    if not _can_show_dashboard():
        console.print(ctx.get_help())
        return
    from smoltui.cli.ui_commands import open_dashboard

    open_dashboard(workspace)


def _can_show_dashboard() -> bool:
    """A terminal on both ends, or textual-serve's web driver (which talks through pipes)."""
    return bool(os.environ.get("TEXTUAL_DRIVER")) or (sys.stdin.isatty() and sys.stdout.isatty())


def main() -> None:
    app()


# The command modules register themselves on `app`; imported last so they can import the names above.
from smoltui.cli import (  # noqa: E402, F401
    inspect_commands,
    lens_commands,
    run_commands,
    sample_commands,
    ui_commands,
    workbench_commands,
)
