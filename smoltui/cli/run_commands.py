"""Commands that start, follow, list and steer training runs: train, runs, stop, pause, resume, export-metrics."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.engine.errors import UserError

FOLLOW_POLL_S = 0.5


def _option(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, show_default=False)


@app.command()
@reports_user_errors
def train(
    model: Annotated[str | None, _option("Preset, folder, Hub id or run:<id>[@step].", "--model", "--preset")] = None,
    corpus: Annotated[str | None, _option("Text file, folder, .jsonl or builtin:pydocs.", "--corpus")] = None,
    tokenizer: Annotated[str | None, _option("char, bpe:N, a tokenizer folder or Hub id.", "--tokenizer")] = None,
    resume: Annotated[str | None, _option("Continue this run from its latest checkpoint.", "--resume")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Print the run id and return; the run goes on.")] = False,
    context: Annotated[int | None, _option("Context length in tokens.", "--context")] = None,
    batch_size: Annotated[int | None, _option("Sequences per micro-batch (default 16).", "--batch-size")] = None,
    grad_accum: Annotated[int | None, _option("Micro-batches per optimizer step.", "--grad-accum")] = None,
    max_steps: Annotated[int | None, _option("Optimizer steps to train for (default 5000).", "--max-steps")] = None,
    time_budget: Annotated[float | None, _option("Stop after this many seconds.", "--time-budget")] = None,
    lr: Annotated[float | None, _option("Peak learning rate (default 3e-4).", "--lr")] = None,
    min_lr: Annotated[float | None, _option("Final learning rate (default lr/10).", "--min-lr")] = None,
    warmup_steps: Annotated[int | None, _option("Linear warmup steps (default 100).", "--warmup-steps")] = None,
    schedule: Annotated[str | None, _option("cosine, linear or constant.", "--schedule")] = None,
    weight_decay: Annotated[float | None, _option("AdamW weight decay (default 0.1).", "--weight-decay")] = None,
    beta1: Annotated[float | None, _option("Adam beta1 (default 0.9).", "--beta1")] = None,
    beta2: Annotated[float | None, _option("Adam beta2 (default 0.95).", "--beta2")] = None,
    optimizer: Annotated[str | None, _option("adamw, or muon (hidden matrices) + adamw.", "--optimizer")] = None,
    grad_clip: Annotated[float | None, _option("Clip the gradient norm; 0 turns it off.", "--grad-clip")] = None,
    dropout: Annotated[float | None, _option("Dropout rate (default: the model's).", "--dropout")] = None,
    precision: Annotated[str | None, _option("auto, fp32, bf16 or fp16.", "--precision")] = None,
    device: Annotated[str | None, _option("auto, cpu, cuda, cuda:N or mps.", "--device")] = None,
    seed: Annotated[int | None, _option("Random seed (default 1337).", "--seed")] = None,
    batching: Annotated[str | None, _option("random windows or sequential windows.", "--batching")] = None,
    eval_every: Annotated[int | None, _option("Validate every N steps (default 200).", "--eval-every")] = None,
    eval_batches: Annotated[int | None, _option("Validation batches per evaluation.", "--eval-batches")] = None,
    sample_every: Annotated[int | None, _option("Sample every N steps; 0 turns it off.", "--sample-every")] = None,
    sample_prompt: Annotated[str | None, _option("Prompt for the samples.", "--sample-prompt")] = None,
    sample_length: Annotated[int | None, _option("Tokens per sample.", "--sample-length")] = None,
    temperature: Annotated[float | None, _option("Sampling temperature.", "--temperature")] = None,
    checkpoint_every: Annotated[int | None, _option("Checkpoint every N steps.", "--checkpoint-every")] = None,
    keep_last: Annotated[int | None, _option("Checkpoints to keep (plus the best).", "--keep-last")] = None,
    hook: Annotated[list[str] | None, _option("Enable a hook, e.g. activation_stats:50.", "--hook")] = None,
    set_: Annotated[
        list[str] | None, _option("Change a model config number, e.g. --set n_layer=2 (repeatable).", "--set")
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow a model folder's own Python code to run.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Train a model headless: a progress bar here, everything in the run's store for `smoltui watch`."""
    from smoltui.engine.config import TrainConfig
    from smoltui.engine.runs import launch_run, resume_run

    given = {
        "model": model,
        "corpus": corpus,
        "tokenizer": tokenizer,
        "context": context,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_steps": max_steps,
        "time_budget_s": time_budget,
        "lr": lr,
        "min_lr": min_lr,
        "warmup_steps": warmup_steps,
        "schedule": schedule,
        "weight_decay": weight_decay,
        "beta1": beta1,
        "beta2": beta2,
        "optimizer": optimizer,
        "grad_clip": grad_clip,
        "dropout": dropout,
        "precision": precision,
        "device": device,
        "seed": seed,
        "batching": batching,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
        "sample_every": sample_every,
        "sample_prompt": sample_prompt,
        "sample_length": sample_length,
        "temperature": temperature,
        "checkpoint_every": checkpoint_every,
        "keep_last": keep_last,
        "hooks": hook,
        "model_overrides": _parse_overrides(set_ or []),
        "trust_remote_code": trust_remote_code or None,
    }
    given = {key: value for key, value in given.items() if value is not None and value != {}}
    if resume:
        handle = resume_run(resume, workspace, changes=given)
    else:
        handle = launch_run(TrainConfig.from_dict(given), workspace)
    if detach:
        console.print(handle.run_id, highlight=False)
        return
    status = _follow(handle)
    if status == "failed":
        reason = next((e.message for e in reversed(handle.events()) if e.level == "error"), "see train.log")
        error_console.print(
            f"[bold red]run {handle.run_id} failed:[/] {reason.strip().splitlines()[-1]}", highlight=False
        )
        error_console.print(f"log: {handle.log_path()}", highlight=False)
        raise typer.Exit(2 if any(e.kind == "bad-config" for e in handle.events()) else 1)


def _follow(handle) -> str:
    """Show the run's progress until it ends; Ctrl-C asks it to stop (with a checkpoint) and waits."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    meta = handle.meta()
    total = meta.get("max_steps") or meta.get("config", {}).get("max_steps")
    console.print(f"run [bold]{handle.run_id}[/] · {meta.get('model_source')} on {meta.get('corpus')}", highlight=False)
    columns = (
        TextColumn("[bold]{task.fields[status]:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val {task.fields[val]}"),
        TextColumn("{task.fields[speed]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    seen_events = 0
    stopping = False
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=total, status="starting", loss="-", val="-", speed="-")
        while True:
            try:
                status = handle.status()
                latest = handle.latest_metrics()
                step = latest["train/loss"][0] if "train/loss" in latest else 0
                progress.update(
                    task,
                    completed=step,
                    status="stopping" if stopping and status == "running" else status,
                    loss=_fmt(latest.get("train/loss")),
                    val=_fmt(latest.get("val/loss")),
                    speed=_fmt(latest.get("tokens_per_s"), "{:,.0f}"),
                )
                for event in handle.events(seen_events):
                    seen_events = event.id
                    if event.level in ("warning", "error") or event.kind in ("nan", "resume", "paused", "stopped"):
                        progress.console.print(
                            f"[{event.level}] {event.message.strip().splitlines()[-1]}", highlight=False
                        )
                if status in ("finished", "stopped", "failed", "lost"):
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
    latest = handle.latest_metrics()
    console.print(
        f"run {handle.run_id} {status} at step {latest.get('train/loss', (0,))[0]}: "
        f"train loss {_fmt(latest.get('train/loss'))}, val loss {_fmt(latest.get('val/loss'))}.",
        highlight=False,
    )
    return status


def _fmt(point: tuple[int, float] | None, pattern: str = "{:.4f}") -> str:
    return "-" if point is None else pattern.format(point[1])


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes NAME=VALUE, e.g. --set n_layer=2, not {item!r}.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


@app.command()
@reports_user_errors
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON lines.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """List the workspace's runs, newest first."""
    from smoltui.engine.runs import list_runs

    found = list_runs(workspace)
    if as_json:
        for summary in found:
            sys.stdout.write(json.dumps(summary.to_json()) + "\n")
        return
    if not found:
        console.print("no runs yet; start one with `smoltui train` (or `smoltui demo`).")
        return
    rows = [
        (
            summary.run_id,
            _status_markup(summary.status),
            summary.model,
            "-" if summary.step is None else f"{summary.step}/{summary.max_steps or '?'}",
            _number(summary.train_loss),
            _number(summary.val_loss),
            _number(summary.tokens_per_s, "{:,.0f}"),
            _ago(summary.started),
        )
        for summary in found
    ]
    # One line per run at any width: the id, status and numbers keep their width; model names and ages give way.
    table = Table(box=None, collapse_padding=True, pad_edge=False)
    for index, name in enumerate(("run", "status", "model", "step", "train", "val", "tok/s", "started")):
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


def _status_markup(status: str) -> str:
    colour = {"running": "green", "paused": "yellow", "failed": "red", "lost": "red", "finished": "cyan"}
    return f"[{colour.get(status, 'white')}]{status}[/]"


def _number(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    seconds = time.time() - timestamp
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


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
