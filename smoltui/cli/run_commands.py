"""Commands that start, follow, list and steer training runs: train, runs, stop, pause, resume, export-metrics."""

from __future__ import annotations

import inspect
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.engine.config import SETTINGS, Setting, format_setting, parse_overrides, parse_setting
from smoltui.engine.errors import UserError
from smoltui.engine.run_contract import NOTABLE_EVENTS, EventKind, RunStatus
from smoltui.formatting import format_ago, format_loss, format_rate, format_step, last_line, status_markup

FOLLOW_POLL_S = 0.5


# Option metavars by setting kind; every setting is read as text and checked by TrainConfig, so `--lr abc` gets
# the same sentence as the form ("lr must be a number, not 'abc'.") and numbers read leniently (3e-4, 1_000).
_METAVARS = {
    "int": "INT",
    "float": "NUMBER",
    "text": "TEXT",
    "choice": "CHOICE",
    "list": "TEXT",
    "mapping": "NAME=VALUE",
}


def _setting_help(spec: Setting) -> str:
    if spec.optional:
        return f"{spec.help} (default: {spec.unset})"
    if spec.kind in ("list", "mapping", "flag"):
        return spec.help
    return f"{spec.help} (default {format_setting(spec.default, spec)})"


def _setting_parameter(spec: Setting) -> inspect.Parameter:
    """The `smoltui train` option of one TrainConfig setting, from its declaration (engine/config.py)."""
    help_text = _setting_help(spec)
    if spec.kind == "flag":
        option = typer.Option(*spec.cli_flags, help=help_text, show_default=False)
        return inspect.Parameter(
            spec.name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, option]
        )
    metavar = "|".join(spec.choices) if spec.choices else _METAVARS[spec.kind]
    option = typer.Option(*spec.cli_flags, help=help_text, metavar=metavar, show_default=False)
    kind = list[str] if spec.kind in ("list", "mapping") else str
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


def _given_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The settings the person gave on the command line, read as the form reads its fields."""
    given: dict[str, Any] = {}
    for name, value in options.items():
        spec = SETTINGS[name]
        if value is None or (spec.kind == "flag" and not value) or value == []:
            continue
        if spec.kind == "mapping":
            given[name] = parse_overrides(value)
        elif spec.kind in ("list", "flag"):
            given[name] = value
        else:
            given[name] = parse_setting(value, spec)
    return given


def train(
    *,
    resume: str | None,
    detach: bool,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    workspace: Path | None,
    **options: Any,
) -> None:
    """Train a model headless: a progress bar here, everything in the run's store for `smoltui watch`."""
    from smoltui.engine.config import TrainConfig
    from smoltui.engine.runs import Launcher, launch_run, resume_run

    given = _given_settings(options)
    launcher = Launcher(nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint)
    if resume:
        handle = resume_run(resume, workspace, changes=given)
    else:
        handle = launch_run(TrainConfig.from_dict(given), workspace, launcher=launcher)
    if detach:
        console.print(handle.run_id, highlight=False)
        return
    status = _follow(handle)
    if status == RunStatus.FAILED:
        reason = next((e.message for e in reversed(handle.events()) if e.level == "error"), "see train.log")
        error_console.print(f"[bold red]run {handle.run_id} failed:[/] {last_line(reason)}", highlight=False)
        error_console.print(f"log: {handle.log_path()}", highlight=False)
        raise typer.Exit(2 if any(e.kind == EventKind.BAD_CONFIG for e in handle.events()) else 1)


def _option(help_text: str, *names: str, **details: Any) -> Any:
    return typer.Option(*names, help=help_text, show_default=False, **details)


train.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in (
            (
                "resume",
                Annotated[str | None, _option("Continue this run from its latest checkpoint.", "--resume")],
                None,
            ),
            ("detach", Annotated[bool, _option("Print the run id and return; the run goes on.", "--detach")], False),
        )
    ]
    + [_setting_parameter(spec) for spec in SETTINGS.values()]
    + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in (
            (
                "nnodes",
                Annotated[int, _option("Machines the run spans (torchrun's --nnodes).", "--nnodes", metavar="INT")],
                1,
            ),
            (
                "node_rank",
                Annotated[
                    int,
                    _option(
                        "This machine's index among them, 0 for the one that writes the run.",
                        "--node-rank",
                        metavar="INT",
                    ),
                ],
                0,
            ),
            (
                "rdzv_endpoint",
                Annotated[
                    str | None,
                    _option("HOST:PORT of the machine with node rank 0.", "--rdzv-endpoint", metavar="HOST:PORT"),
                ],
                None,
            ),
            ("workspace", WorkspaceOption, None),
        )
    ]
)
app.command()(reports_user_errors(train))


def _follow(handle) -> str:
    """Show the run's progress until it ends; Ctrl-C asks it to stop (with a checkpoint) and waits.

    It reads the run as the dashboard does (RunFeed), so both show the same numbers at the same moment.
    """
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from smoltui.engine.run_feed import RunFeed, RunProgressState

    meta = handle.meta()
    console.print(f"run [bold]{handle.run_id}[/] · {meta.get('model_source')} on {meta.get('corpus')}", highlight=False)
    columns = (
        TextColumn("[bold]{task.fields[status]:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val {task.fields[val]}"),
        TextColumn("{task.fields[speed]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[clock]}"),
    )
    feed = RunFeed(handle)
    state = RunProgressState()
    stopping = False
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(
            "train", total=meta.get("max_steps"), status="starting", loss="-", val="-", speed="-", clock=""
        )
        while True:
            try:
                feed.poll()
                delta = feed.take()
                state.fold(delta)
                speed = state.recent_tokens_per_s[-1] if state.recent_tokens_per_s else None
                progress.update(
                    task,
                    completed=state.step,
                    total=state.max_steps,
                    status="stopping" if stopping and state.status == RunStatus.RUNNING else state.status,
                    loss=format_loss(state.last_train),
                    val=format_loss(state.last_val),
                    speed=format_rate(speed),
                    clock=state.clock_text(),  # as the dashboard says it: no ETA once the run has stopped
                )
                for event in delta.events:
                    if event.level in ("warning", "error") or event.kind in NOTABLE_EVENTS:
                        progress.console.print(escape(f"[{event.level}] {last_line(event.message)}"), highlight=False)
                if delta.final or state.status == RunStatus.LOST:
                    break
                time.sleep(FOLLOW_POLL_S)
            except KeyboardInterrupt:
                if stopping:
                    progress.console.print("still stopping; the run finishes its step and saves a checkpoint.")
                    continue
                stopping = True
                progress.console.print(
                    "stopping: the run saves a checkpoint, then ends "
                    f"(`smoltui train --resume {handle.run_id}` continues it)."
                )
                handle.stop()
    console.print(
        f"run {handle.run_id} {state.status} at step {state.step}: "
        f"train loss {format_loss(state.last_train)}, val loss {format_loss(state.last_val)}.",
        highlight=False,
    )
    return state.status


@app.command()
@reports_user_errors
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON lines.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """List the workspace's runs, newest first."""
    from rich.table import Table
    from rich.text import Text

    from smoltui.engine.runs import list_runs

    found = list_runs(workspace)
    if as_json:
        for summary in found:
            sys.stdout.write(json.dumps(summary.to_json()) + "\n")
        return
    if not found:
        console.print("no runs yet; start one with `smoltui train` (or `smoltui demo`).")
        return
    parallel = any(summary.world_size > 1 for summary in found)
    rows = [
        (
            summary.run_id,
            status_markup(summary.status),
            summary.model,
            format_step(summary.step, summary.max_steps),
            *([f"{summary.world_size}"] if parallel else []),
            format_loss(summary.train_loss),
            format_loss(summary.val_loss),
            format_rate(summary.tokens_per_s),
            format_ago(summary.started),
        )
        for summary in found
    ]
    names = ("run", "status", "model", "step", *(["procs"] if parallel else []), "train", "val", "tok/s", "started")
    # One line per run at any width: the id, status and numbers keep their width; model names and ages give way.
    table = Table(box=None, collapse_padding=True, pad_edge=False)
    for index, name in enumerate(names):
        if name in ("model", "started"):
            table.add_column(name, no_wrap=True, overflow="ellipsis")
        else:
            widest = max(len(Text.from_markup(row[index])) for row in rows)
            table.add_column(
                name, no_wrap=True, min_width=max(widest, len(name)), justify="left" if index < 2 else "right"
            )
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _control(run: str, kind: str, workspace: Path | None, done: str) -> None:
    from smoltui.engine.runs import attach

    handle = attach(run, workspace)
    getattr(handle, kind)()
    console.print(f"{handle.run_id}: {done}", highlight=False)


RunArgument = Annotated[str, typer.Argument(help="Run id, a unique part of it, or 'latest'.")]


@app.command()
@reports_user_errors
def stop(run: RunArgument = "latest", workspace: WorkspaceOption = None) -> None:
    """Ask a run to save a checkpoint and stop."""
    _control(run, "stop", workspace, "asked to stop; it saves a checkpoint first.")


@app.command()
@reports_user_errors
def pause(run: RunArgument = "latest", workspace: WorkspaceOption = None) -> None:
    """Pause a run between steps."""
    _control(run, "pause", workspace, "asked to pause.")


@app.command("resume")
@reports_user_errors
def resume_command(run: RunArgument = "latest", workspace: WorkspaceOption = None) -> None:
    """Resume a paused run (a stopped one continues with `smoltui train --resume RUN`)."""
    _control(run, "resume", workspace, "asked to resume.")


@app.command("export-metrics")
@reports_user_errors
def export_metrics(
    run: RunArgument = "latest",
    format: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Write a run's metrics as CSV (one column per metric) or JSON lines."""
    from smoltui.engine.metrics_export import export_metrics as write_metrics
    from smoltui.engine.runs import attach

    if format not in ("csv", "jsonl"):
        raise UserError(f"--format {format!r} is not csv or jsonl; pass --format csv or --format jsonl.")
    handle = attach(run, workspace)
    if output is None:
        write_metrics(handle.store, format, sys.stdout)
        return
    with open(output, "w", newline="") as out:
        write_metrics(handle.store, format, out)
    console.print(f"wrote {output}", highlight=False)
