"""The `smoltui` command: headless commands beside the dashboard. Imports torch only inside commands."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from smoltui import __version__
from smoltui.engine.errors import UserError

app = typer.Typer(
    name="smoltui",
    help="A keyboard-driven terminal workbench for small language models.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()
error_console = Console(stderr=True)

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
        console.print(f"smoltui {__version__}")
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
from smoltui.cli import inspect_commands, run_commands, ui_commands  # noqa: E402, F401
