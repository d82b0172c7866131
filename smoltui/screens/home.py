"""Home: the workspace at a glance (path, model, device, corpus), its recent runs, and the quick actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from smoltui.formatting import display_path, format_ago, format_loss, format_step
from smoltui.screens.base import SmolScreen, number, short_run_ids, status_text, sync_table

if TYPE_CHECKING:
    from smoltui.engine.runs import RunSummary

RECENT_RUNS = 8
RECENT_COLUMNS = (
    ("run", "run"),
    ("status", "status"),
    ("model", "model"),
    ("step", "step"),
    ("loss", "loss"),
    ("started", "started"),
)

# (option id = action name, key, what it does); the keys are this screen's bindings.
QUICK_ACTIONS = (
    ("new_model", "n", "New model from a preset"),
    ("load_model", "l", "Load a folder, Hub id or run"),
    ("train", "t", "Train a new run"),
    ("runs", "o", "Open a run"),
)

if TYPE_CHECKING:
    from smoltui.engine.runs import RunSummary


class HomeScreen(SmolScreen):
    """Where the app opens: the workspace, its recent runs, and what to do next."""

    MODE = "home"
    RUNS_REFRESH_S = 3.0
    AUTO_FOCUS = "#quick-actions"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_model", "New model", tooltip="Build a preset with fresh weights on the Model screen."),
        Binding("l", "load_model", "Load model", tooltip="Load a folder, Hub id or checkpoint on the Model screen."),
        Binding("t", "train", "Train", tooltip="Open the new-run form on the Train screen."),
        Binding("o", "runs", "Open run", tooltip="List every run of the workspace on the Runs screen."),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._last_corpus: str | None = None
        self._run_count = 0

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="home-top"):
            with Vertical(id="workspace-panel", classes="panel") as panel:
                panel.border_title = "Workspace"
                yield Static(id="workspace-facts")
            with Vertical(id="actions-panel", classes="panel") as panel:
                panel.border_title = "Quick actions"
                yield OptionList(
                    *(Option(f"[b]{key}[/b]  {text}", id=action) for action, key, text in QUICK_ACTIONS),
                    id="quick-actions",
                )
        with Vertical(id="recent-panel", classes="panel") as panel:
            panel.border_title = "Recent runs · enter opens a run's dashboard"
            yield DataTable(id="recent-runs", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        sync_table(self.query_one("#recent-runs", DataTable), RECENT_COLUMNS, [])
        self.watch(self.app, "session_model", lambda _: self._show_workspace())

    def show_runs(self, runs: Sequence[RunSummary]) -> None:
        self._run_count = len(runs)
        self._last_corpus = runs[0].corpus if runs else None
        now = self.smol.clock()
        shown_ids = short_run_ids([run.run_id for run in runs[:RECENT_RUNS]])
        rows = [
            (
                run.run_id,
                (
                    shown_ids[run.run_id],
                    status_text(self.app, run.status),
                    run.model,
                    number(format_step(run.step, run.max_steps)),
                    number(format_loss(run.train_loss)),
                    format_ago(run.started, now),
                ),
            )
            for run in runs[:RECENT_RUNS]
        ]
        sync_table(self.query_one("#recent-runs", DataTable), RECENT_COLUMNS, rows)
        self._show_workspace()

    def _show_workspace(self) -> None:
        loaded = self.smol.session_model
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold", no_wrap=True)
        facts.add_column()
        facts.add_row("path", display_path(self.smol.workspace))
        facts.add_row("model", "none loaded (n or l)" if loaded is None else f"{loaded.source} ({loaded.kind_label})")
        placement = None if loaded is None else loaded.placement
        facts.add_row(
            "device",
            "auto until a model loads" if placement is None else f"{placement.device} · {placement.dtype}",
        )
        facts.add_row("corpus", self._last_corpus or "- (of the last run)")
        facts.add_row("runs", f"{self._run_count}")
        self.query_one("#workspace-facts", Static).update(facts)

    # -- actions -------------------------------------------------------------------------------------------

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:  # a click or enter on a quick action runs it
            await self.run_action(event.option.id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.smol.open_run(event.row_key.value)

    def action_new_model(self) -> None:
        self.smol.open_model(new=True)

    def action_load_model(self) -> None:
        self.smol.open_model(new=False)

    def action_train(self) -> None:
        self.smol.open_train_form()

    def action_runs(self) -> None:
        self.smol.go("runs")
