"""The run dashboard's text panels: progress line, details, logs of samples and events, activation table.

They only display: the numbers come folded into a `RunProgressState`, the lines as store rows. Colours are theme
variables, so the panels read in dark and light themes alike.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable

from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.reactive import reactive
from textual.renderables.bar import Bar
from textual.widget import Widget
from textual.widgets import DataTable, Static

from smoltui.engine.run_feed import RunProgressState
from smoltui.engine.runstore import Event, Sample
from smoltui.formatting import format_clock, format_compact, format_duration, last_line, status_look
from smoltui.widgets.chart_frame import format_value

LEVEL_LOOK = {"debug": "$text-muted", "info": "$foreground", "warning": "$text-warning", "error": "$text-error"}


def status_content(status: str, note: str = "") -> Content:
    glyph, role = status_look(status)
    text = f"{glyph} {status}" + (f" · {note}" if note else "")
    return Content.styled(text, f"bold $text-{role}" if role != "foreground" else "bold $foreground")


class StepBar(Widget):
    """The fraction of max_steps done, drawn at the bar's current width.

    Textual's ProgressBar rounds the fraction to the width the bar has when the value is set, so the same run
    could be drawn half a cell apart depending on whether layout came first; this bar always draws what it is.
    """

    COMPONENT_CLASSES = {"step-bar--bar", "step-bar--complete"}
    DEFAULT_CSS = """
    StepBar {
        width: 1fr;
        height: 1;
        & > .step-bar--bar { color: $primary; background: $surface; }
        & > .step-bar--complete { color: $success; background: $surface; }
    }
    """
    fraction: reactive[float] = reactive(0.0)

    def render(self) -> Bar:
        look = self.get_component_rich_style("step-bar--complete" if self.fraction >= 1 else "step-bar--bar")
        return Bar(
            highlight_range=(0, self.size.width * self.fraction),
            highlight_style=Style.from_color(look.color),
            background_style=Style.from_color(look.bgcolor),
        )


class RunProgress(Horizontal):
    """One line: status, step of total, a bar and the time left (or the final state)."""

    DEFAULT_CSS = """
    RunProgress {
        height: 1;
        & > Static { width: auto; margin-right: 2; }
        & > #run-percent { width: 5; content-align-horizontal: right; }
        & > #run-eta { margin-right: 0; color: $text-muted; }
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="run-status")
        yield Static(id="run-step")
        yield StepBar(id="run-bar")
        yield Static(id="run-percent")
        yield Static(id="run-eta")

    def show(self, state: RunProgressState, note: str = "", now: float | None = None) -> None:
        self.query_one("#run-status", Static).update(status_content(state.status, note))
        total = state.max_steps
        step_text = f"step {state.step:,}" + (f" / {total:,}" if total else "")
        self.query_one("#run-step", Static).update(step_text)
        fraction = min(state.step / total, 1.0) if total else 0.0
        self.query_one(StepBar).fraction = fraction
        self.query_one("#run-percent", Static).update(f"{round(fraction * 100)}%" if total else "")
        self.query_one("#run-eta", Static).update(state.clock_text(now))


def details_content(state: RunProgressState, now: float | None = None) -> Content:
    """The second line: elapsed, tokens, speed, losses and the best val."""
    parts: list[Content] = []

    def add(label: str, value: str) -> None:
        parts.append(Content.assemble((label + " ", "$text-muted"), value))

    elapsed = state.elapsed(now)
    if elapsed is not None:
        add("elapsed", format_duration(elapsed))
    if state.tokens_seen is not None:
        add("tokens", format_compact(state.tokens_seen))
    if state.recent_tokens_per_s:
        add("tok/s", format_compact(state.recent_tokens_per_s[-1]))
    if state.last_train is not None and math.isfinite(state.last_train):
        add("train", format_value(state.last_train))
    if state.last_val is not None and math.isfinite(state.last_val):
        add("val", format_value(state.last_val))
    if state.best_val is not None:
        step, loss = state.best_val
        add("best val", f"{format_value(loss)} @ {step:,}")
    return Content(" · ").join(parts) if parts else Content.styled("no numbers yet", "$text-muted")


class RunLog(VerticalScroll):
    """A scrolling log of the last `max_lines` entries, kept at the bottom while new ones arrive; long entries
    wrap, so each can be read whole."""

    DEFAULT_CSS = """
    RunLog {
        height: 1fr;
        border: round $border-blurred;
        border-title-color: $text-muted;
        padding: 0 1;
        &:focus { border: round $border; }
        & > Static { width: 1fr; min-height: 100%; }  /* never shorter than the view: anchoring scrolls right */
    }
    """

    def __init__(self, title: str, empty: str, *, max_lines: int = 100, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = title
        self.empty = empty
        self._lines: deque[Content] = deque(maxlen=max_lines)

    def compose(self) -> ComposeResult:
        yield Static(Content.styled(self.empty, "italic $text-muted"))

    def on_mount(self) -> None:
        self.anchor()  # follows new lines until the person scrolls up

    def clear(self) -> None:
        self._lines.clear()
        self.query_one(Static).update(Content.styled(self.empty, "italic $text-muted"))
        self.anchor()

    def add(self, lines: Iterable[Content]) -> None:
        self._lines.extend(lines)
        if self._lines:
            self.query_one(Static).update(Content("\n").join(self._lines))


def sample_content(sample: Sample, *, one_line: bool = False) -> Content:
    """A sample with its step and prompt; `one_line` marks its line breaks with ↵ instead of breaking."""
    prompt, text = sample.prompt.strip(), sample.text.strip()
    if one_line:
        prompt, text = prompt.replace("\n", " ↵ "), text.replace("\n", " ↵ ")
    return Content.assemble(
        (f"step {sample.step:,}", "bold $text-accent"),
        " ",
        (prompt + " ", "$text-muted") if prompt else "",
        text,
    )


def event_content(event: Event, origin: float | None) -> Content:
    """One event: time since the run's start, kind and message, coloured by level."""
    when = format_clock(event.time - origin) if origin is not None else time.strftime("%H:%M:%S")
    colour = LEVEL_LOOK.get(event.level, "$foreground")
    return Content.assemble(
        (f"{when:>7} ", "$text-muted"),
        (f"{event.kind:<10} ", f"bold {colour}"),
        (last_line(event.message), colour),
    )


class ActivationTable(DataTable):
    """Latest activation statistics per block, as the activation_stats hook logs them."""

    DEFAULT_CSS = """
    ActivationTable {
        height: auto;
        max-height: 1fr;
    }
    """

    STATISTICS = ("mean", "std", "absmax")

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", zebra_stripes=True, show_cursor=False)
        self._stats: dict[int, dict[str, float]] = {}

    def on_mount(self) -> None:
        self.add_column("block", key="block")
        for name in self.STATISTICS:
            self.add_column(name, key=name)

    def clear_stats(self) -> None:
        self._stats.clear()
        self.clear()

    def update_stats(self, latest: dict[int, dict[str, float]]) -> None:
        for block, stats in latest.items():
            self._stats.setdefault(block, {}).update(stats)
        self.clear()
        for block in sorted(self._stats):
            stats = self._stats[block]
            cells = [format_value(stats[n], 3) if n in stats else "" for n in self.STATISTICS]
            self.add_row(str(block), *cells, key=str(block))
