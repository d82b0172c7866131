"""Runs: every run of the workspace with its status, step, losses and speed; open, compare and delete them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Label

from smoltui.engine.run_contract import ACTIVE_STATUSES
from smoltui.formatting import format_ago, format_loss, format_rate, format_step
from smoltui.screens.base import SmolScreen, fit_columns, number, short_run_ids, status_text, sync_table
from smoltui.screens.confirm import ConfirmDelete

if TYPE_CHECKING:
    from smoltui.engine.runs import RunSummary

MARK = "●"
COLUMNS = (
    ("", "mark"),
    ("run", "run"),
    ("status", "status"),
    ("model", "model"),
    ("step", "step"),
    ("train loss", "train"),
    ("val loss", "val"),
    ("tok/s", "speed"),
    ("started", "started"),
)

if TYPE_CHECKING:
    from smoltui.engine.runs import RunSummary


class RunsScreen(SmolScreen):
    """The workspace's runs, newest first, refreshed every couple of seconds."""

    MODE = "runs"
    RUNS_REFRESH_S = 2.0
    AUTO_FOCUS = "#runs-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_run", "Open", priority=True, tooltip="Show the run's dashboard on the Train screen."),
        Binding("space", "mark", "Mark", tooltip="Mark or unmark the run for comparing."),
        Binding("o", "open_marked", "Compare", tooltip="Open the first marked run with the others overlaid."),
        Binding("d", "delete", "Delete", tooltip="Delete the run (asks first; running runs are refused)."),
        Binding("r", "refresh", "Refresh", tooltip="Read the runs again now."),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []  # in the order they were marked; the first is the one opened
        self._statuses: dict[str, str] = {}

    def compose_body(self) -> Iterable[Widget]:
        with Vertical(id="runs-panel", classes="panel") as panel:
            panel.border_title = "Runs"
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Label("", id="runs-hint")

    def on_mount(self) -> None:
        sync_table(self.query_one("#runs-table", DataTable), COLUMNS, [])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "delete" and self.smol.read_only:
            return False
        return True

    # -- the table -----------------------------------------------------------------------------------------

    def show_runs(self, runs: Sequence[RunSummary]) -> None:
        self._statuses = {run.run_id: run.status for run in runs}
        self.marked = [run_id for run_id in self.marked if run_id in self._statuses]
        now = self.smol.clock()
        shown_ids = short_run_ids([run.run_id for run in runs])
        rows = [
            (
                run.run_id,
                (
                    MARK if run.run_id in self.marked else "",
                    shown_ids[run.run_id],
                    status_text(self.app, run.status),
                    run.model,
                    number(format_step(run.step, run.max_steps)),
                    number(format_loss(run.train_loss)),
                    number(format_loss(run.val_loss)),
                    number(format_rate(run.tokens_per_s)),
                    format_ago(run.started, now),
                ),
            )
            for run in runs
        ]
        table = self.query_one("#runs-table", DataTable)
        columns, rows = fit_columns(COLUMNS, rows, table.size.width, give_way=("started", "speed", "val", "model"))
        sync_table(table, columns, rows)

    def on_resize(self) -> None:
        if self._runs:
            self.show_runs(self._with_pulse(self._runs))
        self._show_hint()

    def _show_hint(self) -> None:
        if not self._statuses:
            text = "no runs yet: 3 opens the Train screen's form, or run `smoltui train` / `smoltui demo`."
        elif self.marked:
            text = f"{len(self.marked)} marked: o opens {self.marked[0]} with the others overlaid."
        else:
            text = "enter opens a run · space marks runs to compare · o opens the marked ones together"
        self.query_one("#runs-hint", Label).update(text)

    def _cursor_run(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # -- actions -------------------------------------------------------------------------------------------

    def action_open_run(self) -> None:
        if run_id := self._cursor_run():
            self.smol.open_run(run_id)

    def action_mark(self) -> None:
        run_id = self._cursor_run()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self.query_one("#runs-table", DataTable).update_cell(run_id, "mark", MARK if run_id in self.marked else "")
        self._show_hint()

    def action_open_marked(self) -> None:
        chosen = self.marked or ([run_id] if (run_id := self._cursor_run()) else [])
        if not chosen:
            self.notify("no run to open: mark runs with space first.", severity="warning")
            return
        self.smol.open_run(chosen[0], chosen[1:])

    def action_delete(self) -> None:
        run_id = self._cursor_run()
        if run_id is None:
            return
        if self._statuses.get(run_id) in ACTIVE_STATUSES:
            self._delete(run_id)  # the engine refuses, in its own words
            return

        def answered(delete: bool | None) -> None:
            if delete:
                self._delete(run_id)

        self.app.push_screen(ConfirmDelete(run_id), answered)

    @work(thread=True, exit_on_error=False, group="delete")
    def _delete(self, run_id: str) -> None:
        from smoltui.engine.runs import delete_run

        delete_run(run_id, self.smol.workspace)
        self.app.call_from_thread(self._deleted, run_id)

    def _deleted(self, run_id: str) -> None:
        self.notify(f"deleted run {run_id}.")
        if run_id in self.marked:
            self.marked.remove(run_id)
        self.list_runs()

    def action_refresh(self) -> None:
        self.list_runs()
