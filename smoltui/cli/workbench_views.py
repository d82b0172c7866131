"""How the workbench commands show a step and its effect (before, after and delta; the two samples side by side)
and the history: rich tables for people, plain JSON for scripts."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from smoltui.engine.effects import METRIC_LABELS, METRICS
from smoltui.engine.workbench import HistoryStep
from smoltui.formatting import format_ago, format_bytes


def step_json(step: HistoryStep, current: int | None = None) -> dict[str, Any]:
    """A step as plain JSON values; `current` marks whether it is the current model."""
    return {
        "step": step.step,
        "operation": step.operation,
        "params": step.params,
        "parent": step.parent,
        "folder": None if step.folder is None else str(step.folder),
        "time": step.time,
        "summary": step.summary,
        "effect": step.effect,
        "details": step.details,
        "status": step.status,
        "current": step.step == current,
    }


def write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=1) + "\n")


def format_metric(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "bytes":
        return format_bytes(value)
    if metric == "params":
        return f"{value:,}"
    if not math.isfinite(value):
        return "∞"
    return f"{value:,.2f}" if metric == "perplexity" else f"{value:,.1f}"


def format_delta(metric: str, delta: float | None, before: float | None) -> str:
    if delta is None:
        return "-"
    if metric == "bytes":
        return ("+" if delta >= 0 else "-") + format_bytes(abs(delta))
    if metric == "params":
        return f"{delta:+,}"
    if not math.isfinite(delta):
        return "∞"
    text = f"{delta:+,.2f}" if metric == "perplexity" else f"{delta:+,.1f}"
    if before and math.isfinite(before):
        text += f" ({delta / before:+.1%})"
    return text


def effect_renderables(effect: dict[str, Any] | None) -> list[Any]:
    """The effect's table (before, after, delta per metric) and, where sampled, the two samples side by side."""
    from rich.markup import escape
    from rich.table import Table

    if not effect:
        return []
    before, after, delta = effect.get("before") or {}, effect["after"], effect.get("delta") or {}
    numbers = Table("", "before", "after", "delta", box=None, padding=(0, 2))
    for metric in METRICS:
        numbers.add_row(
            METRIC_LABELS[metric],
            format_metric(metric, before.get(metric)),
            format_metric(metric, after.get(metric)),
            format_delta(metric, delta.get(metric), before.get(metric)),
        )
    shown: list[Any] = [numbers]
    if before.get("sample") is not None or after.get("sample") is not None:
        prompt = (after.get("basis") or before.get("basis") or {}).get("prompt", "")
        samples = Table(box=None, padding=(0, 2), expand=True, title=f"sample of {prompt!r}", title_justify="left")
        samples.add_column("before", ratio=1, overflow="fold")
        samples.add_column("after", ratio=1, overflow="fold")
        samples.add_row(escape(before.get("sample") or "-"), escape(after.get("sample") or "-"))
        shown.append(samples)
    return shown


def print_step(console, step: HistoryStep) -> None:
    from rich.markup import escape

    headline = f"[bold]step {step.step}[/] · {escape(step.operation)} · {escape(step.summary)}"
    console.print(headline, highlight=False, soft_wrap=True)
    for renderable in effect_renderables(step.effect):
        console.print(renderable)


def tweak_json(comparison) -> dict[str, Any]:
    """A TweakComparison as plain JSON values."""
    return {
        **comparison.tweak.details,
        "perplexity": {"before": comparison.perplexity_before, "after": comparison.perplexity_after},
        "scored_tokens": comparison.scored_tokens,
        "sample": {"before": comparison.sample_before, "after": comparison.sample_after},
    }


def print_tweak(console, comparison, prompt: str) -> None:
    """The tweak's summary, the perplexity before, after and its delta, and the two samples side by side."""
    from rich.markup import escape
    from rich.table import Table

    console.print(escape(comparison.tweak.summary), highlight=False, soft_wrap=True)
    before, after = comparison.perplexity_before, comparison.perplexity_after
    if before is not None and after is not None:
        numbers = Table("", "before", "after", "delta", box=None, padding=(0, 2))
        delta = after - before if math.isfinite(before) and math.isfinite(after) else float("inf")
        numbers.add_row(
            f"perplexity ({comparison.scored_tokens:,} tokens)",
            format_metric("perplexity", before),
            format_metric("perplexity", after),
            format_delta("perplexity", delta, before),
        )
        console.print(numbers)
    samples = Table(box=None, padding=(0, 2), expand=True, title=f"sample of {prompt!r}", title_justify="left")
    samples.add_column("untouched", ratio=1, overflow="fold")
    samples.add_column("tweaked", ratio=1, overflow="fold")
    samples.add_row(escape(comparison.sample_before), escape(comparison.sample_after))
    console.print(samples)


def compact_params(params: dict[str, Any]) -> str:
    """Parameters as one short line: flags by name, the rest as name=value, a tool's script and arguments."""
    if "script" in params:
        return " ".join(params.get("args") or [])
    parts = []
    for name, value in params.items():
        if value is True:
            parts.append(name)
        elif value not in (None, False):
            parts.append(f"{name}={value}")
    return " ".join(parts)


def history_table(steps: list[HistoryStep], current: int | None):
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None)
    for title in ("", "step"):
        table.add_column(title, no_wrap=True)
    table.add_column("operation", overflow="fold", ratio=1, min_width=10)  # its parameters on a second line
    for title in ("from", "perplexity", "Δ"):
        table.add_column(title, no_wrap=True)
    table.add_column("summary", overflow="fold", ratio=2, min_width=12)
    table.add_column("when", no_wrap=True)
    for step in steps:
        effect = step.effect or {}
        after = (effect.get("after") or {}).get("perplexity")
        before = (effect.get("before") or {}).get("perplexity")
        delta = (effect.get("delta") or {}).get("perplexity")
        failed = step.status != "done"
        table.add_row(
            "*" if step.step == current else "",
            str(step.step),
            escape(f"{step.operation}\n{compact_params(step.params)}".strip()),
            "-" if step.parent is None else str(step.parent),
            format_metric("perplexity", after),
            format_delta("perplexity", delta, before),
            f"[red]failed:[/] {escape(step.summary)}" if failed else escape(step.summary),
            format_ago(step.time),
            style="bold" if step.step == current else None,
        )
    return table
