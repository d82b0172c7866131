"""The history and operations pane of the Surgery screen: the workbench's current model and its dataset (a field:
enter sets it), its history (Enter makes a step current, u undoes), a form of the selected operation built from
its declared parameters, and the effect of the highlighted step's operation (before, after and delta; the two
samples side by side), or with c the current model against the highlighted step.

An operation runs as a model-session job (the UI never waits on it; escape stops it between its steps and nothing
changes); after it or a checkout the step's model is loaded as the session's model, so the weights viewer and the
Sample screen see it. `m` imports the session's model as it is in memory. The screen composes the widgets and
routes their messages and its session events here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Input, Label, Select, Static

from smoltui.cli.workbench_views import compact_params, format_delta, format_metric
from smoltui.engine.data import BUILTIN_PYDOCS
from smoltui.engine.effects import METRIC_LABELS, METRICS, Effect, Measurement
from smoltui.engine.errors import UserError
from smoltui.engine.operations import is_current_model
from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished, JobProgressed
from smoltui.engine.tools import list_tools
from smoltui.engine.workbench import Workbench as EngineWorkbench
from smoltui.formatting import display_path, fit_text, format_ago, format_compact
from smoltui.screens.surgery_form import FormEntry, field_id, form_entries, import_work, parameter_fields
from smoltui.widgets.worker_errors import describe_error

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from textual.widget import Widget

    from smoltui.engine.session import JobContext
    from smoltui.engine.workbench import HistoryStep
    from smoltui.screens.base import Workbench

PROGRESS_LINES = 3  # the last lines an operation said, under the form
# The history's operation column (an operation and its parameters; all of it in the Effect panel) takes what the
# pane's edges (scrollbar, border, padding) and the table's other columns (marker, number, ppl and Δ with their
# padding) leave, so that its numbers stay in sight.
PANE_EDGES = 5
OTHER_COLUMNS = 25
MIN_OPERATION_WIDTH = 12
FIRST_OPERATION = "edit"


def short_metric(metric: str, value: float | None, *, signed: bool = False) -> str:
    """A metric as the CLI writes it, or compact past 100,000 (a random model's perplexity, SmolLM2's 134,515,008
    parameters) to fit the pane; bytes are compact already."""
    if value is None or metric == "bytes" or not math.isfinite(value) or abs(value) < 100_000:
        return format_delta(metric, value, None) if signed else format_metric(metric, value)
    return ("+" if signed and value >= 0 else "-" if value < 0 else "") + format_compact(abs(value))


def effect_renderables(effect: dict[str, Any] | None) -> list[Any]:
    """The effect as the CLI shows it (before, after, delta; the samples side by side), narrowed for a pane."""
    if not effect:
        return [Text("no effect was measured", style="dim")]
    before, after, delta = effect.get("before") or {}, effect["after"], effect.get("delta") or {}
    numbers = Table("", "before", "after", "delta", box=None, padding=(0, 1), show_edge=False)
    for metric in METRICS:
        numbers.add_row(
            METRIC_LABELS[metric],
            short_metric(metric, before.get(metric)),
            short_metric(metric, after.get(metric)),
            short_metric(metric, delta.get(metric), signed=True),
        )
    samples = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
    samples.add_column("sample before", ratio=1, overflow="fold")
    samples.add_column("sample after", ratio=1, overflow="fold")
    samples.add_row(escape(before.get("sample") or "-"), escape(after.get("sample") or "-"))
    return [numbers, samples]


def shown_dataset(dataset: str | None) -> str:
    """The dataset setting as a person would type it (a path relative to the current folder when inside it)."""
    if not dataset:
        return ""
    return dataset if dataset.startswith("builtin:") else display_path(Path(dataset))


class SurgeryHistory:
    """The history pane's part of SurgeryScreen (see module doc): its widgets are composed by the screen."""

    smol: Workbench
    query_one: Any
    refresh_bindings: Callable[[], None]
    history_width: Callable[[], int]  # the pane's width, from the screen's layout

    def _init_history(self) -> None:
        self.workbench: EngineWorkbench | None = None
        self.operation_name = FIRST_OPERATION
        self.operation_job: Job | None = None
        self.last_step: HistoryStep | None = None  # the step whose effect is shown: the last made or checked out
        self._progress: list[str] = []
        self._step_before: int | None = None  # the current step when the running job began
        self._steps: dict[int, HistoryStep] = {}  # the history as last shown, by step number
        self._entries = form_entries()

    def compose_history(self) -> Iterable[Widget]:
        with VerticalScroll(id="surgery-history", can_focus=False):
            yield Static(id="surgery-state")
            with Horizontal(id="surgery-dataset-row"):
                yield Label("dataset ")
                dataset = Input(
                    placeholder="a file, a folder or builtin:pydocs",  # fits the 46-column pane
                    suggester=SuggestFromList([BUILTIN_PYDOCS]),
                    compact=True,
                    id="surgery-dataset",
                )
                dataset.tooltip = (
                    "The corpus whose validation split (its last 5%) each operation's perplexity is measured on; "
                    "enter sets it"
                )
                yield dataset
            table: DataTable = DataTable(id="surgery-steps", cursor_type="row", zebra_stripes=True, classes="panel")
            table.add_columns("", "#", "operation", "ppl", "Δ")
            yield table
            yield Static(id="surgery-effect", classes="panel")  # above the form: in sight on a short screen
            with Vertical(id="surgery-form", classes="panel"):
                options = [(name, name) for name in self._entries]
                yield Select(options, value=FIRST_OPERATION, allow_blank=False, compact=True, id="surgery-operation")
                with Vertical(id="surgery-fields"):
                    yield from parameter_fields(self._entries[FIRST_OPERATION])
                yield Static(id="surgery-form-error")  # the operation's help, or what is wrong with a field
                yield Static(id="surgery-progress")

    def mount_history(self) -> None:
        self.query_one("#surgery-form").border_title = "Operation · ctrl+r runs"
        self._show_help()
        steps = self.query_one("#surgery-steps")
        steps.border_title = "History"
        steps.border_subtitle = "Enter current · c compare · u undo"
        self.query_one("#surgery-effect").border_title = "Effect"
        try:
            self.workbench = EngineWorkbench.open(self.smol.workspace)
        except UserError as error:
            self._say_state(str(error))
            return
        self.last_step = self.workbench.current()
        self.show_history()

    def close_history(self) -> None:
        if self.workbench is not None:
            self.workbench.close()

    # -- the state and the history ----------------------------------------------------------------------------

    def _say_state(self, sentence: str) -> None:
        self.query_one("#surgery-state", Static).update(sentence)

    def show_history(self) -> None:
        workbench = self.workbench
        if workbench is None:
            return
        current, dataset = workbench.current(), workbench.get("dataset")
        model = (
            "no current model: run import below, or m to import the loaded one"
            if current is None
            else (f"current: step {current.step} · {current.operation}")
        )
        self._say_state(model)
        field = self.query_one("#surgery-dataset", Input)
        if not field.has_focus:
            field.value = shown_dataset(dataset)
        table = self.query_one("#surgery-steps", DataTable)
        table.clear()
        number = None if current is None else current.step
        self._steps = {step.step: step for step in workbench.history()}
        width = max(MIN_OPERATION_WIDTH, self.history_width() - PANE_EDGES - OTHER_COLUMNS)
        for step in self._steps.values():
            effect = step.effect or {}
            after = (effect.get("after") or {}).get("perplexity")
            delta = (effect.get("delta") or {}).get("perplexity")
            failed = step.status != "done"
            operation = fit_text(("✗ " if failed else "") + f"{step.operation} {compact_params(step.params)}", width)
            marked = step.step == number
            table.add_row(
                "*" if marked else "",
                str(step.step),
                Text(operation, style="bold" if marked else "red" if failed else ""),
                short_metric("perplexity", after),
                short_metric("perplexity", delta, signed=True),
                key=str(step.step),
            )
        if number is not None:
            table.move_cursor(row=table.get_row_index(str(number)))

    def show_effect(self) -> None:
        panel = self.query_one("#surgery-effect", Static)
        step = self.last_step
        if step is None:
            panel.update(Text("Run an operation to see its effect here.", style="dim"))
            return
        panel.border_title = f"Effect of step {step.step}"
        origin = "" if step.parent is None else f" · from step {step.parent}"  # a branch shows where it began
        ago = format_ago(step.time, self.smol.clock())
        headline = Text(f"step {step.step} · {step.operation}{origin} · {ago} · {step.summary}", style="bold")
        panel.update(Group(headline, *effect_renderables(step.effect)))

    def highlight_step(self, number: int) -> None:
        """The history's cursor is on step `number`: its effect is shown."""
        step = self._steps.get(number)
        if step is not None and step != self.last_step:
            self.last_step = step
            self.show_effect()

    def compare_with_current(self) -> None:
        """The effect panel: the current model against the highlighted step, from what each step measured."""
        current = None if self.workbench is None else self.workbench.current()
        other = self.last_step
        if current is None or other is None or other.step == current.step:
            self._say_progress("put the history's cursor on another step first: c compares it with the current one.")
            return
        first, second = (other.effect or {}).get("after"), (current.effect or {}).get("after")
        if not first or not second:
            self._say_progress(f"step {other.step if not first else current.step} measured nothing to compare.")
            return
        effect = Effect(Measurement.from_json(first), Measurement.from_json(second)).to_json()
        panel = self.query_one("#surgery-effect", Static)
        panel.border_title = f"Step {current.step} (current) against step {other.step}"
        headline = Text(
            f"before: step {other.step} · {other.operation}\nafter: step {current.step} · {current.operation}",
            style="bold",
        )
        parts: list[Any] = [headline]
        if first.get("basis") != second.get("basis"):
            parts.append(Text("measured with other settings (dataset, tokens or prompt): compare with care", "yellow"))
        panel.update(Group(*parts, *effect_renderables(effect)))

    def set_dataset(self) -> None:
        """The dataset field's text becomes the workbench's dataset; a wrong one is marked with its sentence."""
        if self.workbench is None:
            return
        field = self.query_one("#surgery-dataset", Input)
        try:
            dataset = self.workbench.set("dataset", field.value.strip())
        except UserError as error:
            field.add_class("-invalid")
            self._say_progress(str(error))
            return
        field.remove_class("-invalid")
        field.value = shown_dataset(dataset)
        self._say_progress(f"dataset: {field.value}")

    # -- checkout and undo -----------------------------------------------------------------------------------

    def checkout_step(self, number: int, *, undo: bool = False) -> None:
        if self.workbench is None or self.operation_job is not None:
            return
        try:
            step = self.workbench.undo() if undo else self.workbench.checkout(number)
        except UserError as error:
            self._say_progress(str(error))
            return
        self._say_progress(f"step {step.step} is current; loading its model…")
        self.last_step = step
        self.show_history()
        self.show_effect()
        self._load_step(step)

    def _load_step(self, step: HistoryStep) -> None:
        if step.folder is None:
            return
        self.smol.session.load(str(step.folder), tag=self, device=self.smol.device, workspace=self.smol.workspace)

    # -- the form ----------------------------------------------------------------------------------------------

    @property
    def form_entry(self) -> FormEntry:
        return self._entries[self.operation_name]

    async def choose_operation(self, name: str) -> None:
        self.operation_name = name
        fields = self.query_one("#surgery-fields", Vertical)
        await fields.remove_children()
        tools = [tool.name for tool in list_tools(self.smol.workspace)]
        await fields.mount_all(parameter_fields(self.form_entry, {"script": tools}))
        self._show_help()

    def _show_help(self) -> None:
        help_text = Text(self.form_entry.help, style="dim")
        self.query_one("#surgery-form-error", Static).update(help_text)

    def form_values(self) -> dict[str, Any]:
        """The form as text and booleans, one entry per parameter, as the entry's `parse` takes them."""
        values: dict[str, Any] = {}
        for parameter in self.form_entry.parameters:
            widget = self.query_one(f"#{field_id(parameter)}")
            values[parameter.name] = widget.value
            widget.remove_class("-invalid")
        return values

    def run_form(self) -> None:
        """Validate the form and run its entry as a session job; a bad field is marked with its sentence."""
        if self.workbench is None or self.operation_job is not None:
            return
        error_panel = self.query_one("#surgery-form-error", Static)
        entry = self.form_entry
        try:
            values = entry.parse(self.form_values())
        except UserError as error:
            if error.field is not None and any(p.name == error.field for p in entry.parameters):
                self.query_one(f"#surgery-field-{error.field}").add_class("-invalid")
            error_panel.update(Text(str(error), style="red"))
            return
        self._show_help()
        self._start(entry.work(self.workbench, values), entry.name)

    def loaded_is_current(self) -> bool:
        """Whether the session's model is the current step's own (importing it adds nothing)."""
        loaded = self.smol.session_model
        return self.workbench is not None and loaded is not None and is_current_model(self.workbench, loaded)

    def import_session_model(self) -> None:
        """Run the import of the session's model (exactly as it is in memory) as a session job."""
        loaded = self.smol.session_model
        if self.workbench is None or self.operation_job is not None or loaded is None:
            return
        self._start(import_work(self.workbench, loaded), f"import of the loaded {loaded.source}")

    def stop_operation(self) -> None:
        if self.operation_job is not None:
            self.operation_job.cancel()
            self._say_progress("stopping…")

    def _start(self, work: Callable[[JobContext], Any], description: str) -> None:
        self._progress = []
        self._step_before = self.workbench.current_step if self.workbench is not None else None
        self.operation_job = self.smol.session.submit("surgery", work, description, tag=self)
        self._say_progress(f"{description}: starting")
        self.refresh_bindings()

    def _say_progress(self, line: str) -> None:
        self._progress = [*self._progress, line][-PROGRESS_LINES:]
        self.query_one("#surgery-progress", Static).update(Text("\n".join(self._progress), style="dim"))

    def history_event(self, event: Any) -> bool:
        """Take a session event if it is the operation's; whether it did."""
        job = getattr(event, "job", None)
        if job is None or job is not self.operation_job:
            return False
        if isinstance(event, JobProgressed):
            self._say_progress(str(event.event))
            return True
        if not isinstance(event, JobFinished | JobFailed | JobCancelled):
            return True  # started
        self.operation_job = None
        self.refresh_bindings()
        if isinstance(event, JobFinished):
            step: HistoryStep | None = event.result
            if step is None:
                self._say_progress("the tool wrote no model; the current model stays as it was")
            elif step.step == self._step_before:
                self._say_progress("done")  # an export: no new step
            else:
                self.last_step = step
                self._say_progress(f"step {step.step} made; loading its model…")
                self._load_step(step)
            self.show_history()
            self.show_effect()
        elif isinstance(event, JobFailed):
            self._say_progress(f"nothing changed: {describe_error(event.error)}")
            self.show_history()  # a failed tool is recorded as a failed step
        else:
            self._say_progress("cancelled; nothing changed")
        return True
