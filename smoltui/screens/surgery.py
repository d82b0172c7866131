"""Surgery: the session's model and its weights (the weights viewer: every tensor's statistics, and the selected
tensor's heatmap, histogram and top singular values), and the workbench beside it (its history, the operations'
form, the last effect). The viewer's jobs and drawing are in weights_view, the workbench pane's in surgery_history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Checkbox, DataTable, Input, Select, Static

from smoltui.messages import SessionUpdated
from smoltui.screens.base import SmolScreen
from smoltui.screens.bundled_model import LOAD_BUNDLED_BINDING, BundledModelOffer
from smoltui.screens.surgery_history import SurgeryHistory
from smoltui.screens.weights_view import WeightsViewer
from smoltui.widgets.weight_heatmap import WeightHeatmap
from smoltui.widgets.weights_table import WeightsTable

NARROW_WIDTH = 100
MEDIUM_WIDTH = 160  # below it the weights' numbers and the workbench pane take less room
HISTORY_WIDTHS = (58, 46)  # #surgery-history's width in smoltui.tcss, and under MEDIUM_WIDTH
TYPING_ACTIONS = {"leave_field", "run_operation"}  # what keys do while a field has the keyboard


class SurgeryScreen(BundledModelOffer, WeightsViewer, SurgeryHistory, SmolScreen):
    """The session's model and its weights."""

    MODE = "surgery"
    AUTO_FOCUS = "#weights-table"
    AFTER_LOADING = "reading its weights…"
    workbench_shown: reactive[bool] = reactive(False, init=False)  # under NARROW_WIDTH: the workbench, not the weights
    BINDINGS: ClassVar[list[BindingType]] = [  # in order of importance: a narrow footer drops the last first
        Binding("ctrl+r", "run_operation", "Run", tooltip="Run the operation of the form on the current model"),
        Binding("escape", "stop_operation", "Stop", tooltip="Stop the running operation; nothing changes"),
        Binding("w", "toggle_pane", "Switch pane", tooltip="Show the workbench or the weights (one at a time here)"),
        Binding("u", "undo", "Undo", tooltip="Make the current step's parent the current model again"),
        Binding(
            "m",
            "import_loaded",
            "Import loaded",
            tooltip="Make the loaded model (exactly as it is in memory) the workbench's current model",
        ),
        Binding("c", "compare", "Compare", tooltip="The current model against the step under the history's cursor"),
        Binding("d", "edit_dataset", "Dataset", tooltip="Type the dataset effects are measured on; enter sets it"),
        LOAD_BUNDLED_BINDING,
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Type a regular expression over the names"),
        Binding("o", "cycle_sort", "Sort", tooltip="Order the tensors by the next column (a click on a header too)"),
        Binding("r", "reverse_sort", "Reverse", tooltip="Reverse the tensors' order"),
        Binding("a", "toggle_heat_mode", "|w|/signed", tooltip="Heatmap of the mean |w| per cell, or of the mean w"),
        Binding("escape", "leave_field", "Leave field", tooltip="Stop typing in the field; the keys work again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._init_weights()
        self._init_history()

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="surgery-body"):
            with Vertical(id="weights-viewer"):
                yield Input(
                    placeholder="filter: a regular expression over the names (/)", compact=True, id="weights-filter"
                )
                yield WeightsTable(id="weights-table", classes="panel")
                yield Static(id="weights-note")
                with Horizontal(id="weights-views"):
                    yield WeightHeatmap(id="weight-heatmap", classes="panel")
                    with Vertical(id="weights-numbers"):
                        yield Static(id="weight-histogram", classes="panel")
                        yield Static(id="weight-singular", classes="panel")
            yield from self.compose_history()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#weights-filter", Input).tooltip = "Only the tensors whose name matches (case-insensitive)"
        self.watch(self.app, "session_model", self._model_changed)
        self.mount_history()
        self.show_effect()

    def on_unmount(self) -> None:
        self.close_history()

    def _model_changed(self, _loaded=None) -> None:
        self.refresh_weights()
        self.refresh_bindings()

    def on_session_updated(self, message: SessionUpdated) -> None:
        message.stop()
        if not self._weights_event(message.event):
            self.history_event(message.event)

    # -- the weights viewer's widgets (its handlers live here: Textual reads @on from the screen's class only) ----

    @on(Input.Changed, "#weights-filter")
    def _weights_filter_changed(self) -> None:
        self._filter_changed()

    @on(Input.Submitted, "#weights-filter")
    def _weights_filter_submitted(self) -> None:
        self.weights_table.focus()

    @on(DataTable.RowHighlighted, "#weights-table")
    def _weights_row_highlighted(self) -> None:
        self._show_views()

    @on(WeightHeatmap.SizeChanged, "#weight-heatmap")
    def _weights_heatmap_resized(self) -> None:
        self._show_views()  # a matrix of the heatmap's new size

    @on(DataTable.HeaderSelected, "#weights-table")
    def _weights_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self._sort_by_column(str(event.column_key.value))

    # -- the workbench pane's widgets ----------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#surgery-steps")
    def _history_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.highlight_step(int(str(event.row_key.value)))

    @on(DataTable.RowSelected, "#surgery-steps")
    def _history_row_selected(self, event: DataTable.RowSelected) -> None:
        self.checkout_step(int(str(event.row_key.value)))

    @on(Select.Changed, "#surgery-operation")
    async def _operation_changed(self, event: Select.Changed) -> None:
        if event.value != self.operation_name:
            await self.choose_operation(str(event.value))

    @on(Input.Submitted, "#surgery-fields Input")
    def _field_submitted(self) -> None:
        self.run_form()

    @on(Input.Submitted, "#surgery-dataset")
    def _dataset_submitted(self) -> None:
        self.set_dataset()

    @on(Checkbox.Changed, "#surgery-fields Checkbox")
    def _flag_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.remove_class("-invalid")

    # -- keys ------------------------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one("#weights-filter", Input).focus()

    def action_run_operation(self) -> None:
        self.workbench_shown = True  # where its progress is seen, on a narrow screen
        self.run_form()

    def action_stop_operation(self) -> None:
        self.stop_operation()

    def action_import_loaded(self) -> None:
        self.workbench_shown = True
        self.import_session_model()

    def action_compare(self) -> None:
        self.compare_with_current()

    def action_edit_dataset(self) -> None:
        self.workbench_shown = True
        self.query_one("#surgery-dataset", Input).focus()

    def action_toggle_pane(self) -> None:
        self.workbench_shown = not self.workbench_shown

    def watch_workbench_shown(self, shown: bool) -> None:
        self.set_class(shown, "-workbench-shown")
        if self.has_class("-narrow"):
            self.query_one("#surgery-steps" if shown else "#weights-table").focus()

    def action_undo(self) -> None:
        self.checkout_step(0, undo=True)

    def action_leave_field(self) -> None:
        in_workbench = self.focused is not None and self.query_one("#surgery-history") in self.focused.ancestors
        self.query_one("#surgery-steps" if in_workbench else "#weights-table").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = self.is_current and isinstance(self.focused, Input)
        if action == "leave_field":
            return typing
        if typing and action not in TYPING_ACTIONS:
            return False
        if action in ("run_operation", "undo"):
            return self.workbench is not None and self.operation_job is None
        if action in ("edit_dataset", "compare"):
            return self.workbench is not None
        if action == "import_loaded":
            no_job = self.workbench is not None and self.operation_job is None
            return no_job and self.smol.session_model is not None and not self.loaded_is_current()
        if action == "stop_operation":
            return self.operation_job is not None
        if action == "toggle_pane":
            return self.has_class("-narrow")
        if action == "load_bundled":
            return self.can_load_bundled()
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    def on_resize(self) -> None:
        narrow, medium = self.size.width < NARROW_WIDTH, self.size.width < MEDIUM_WIDTH
        if narrow != self.has_class("-narrow"):
            self.set_class(narrow, "-narrow")  # one pane at a time: w shows the other
            self.refresh_bindings()
        self.set_class(medium, "-medium")
        self.show_history()  # its operation column fits the pane's new width

    def history_width(self) -> int:
        """The workbench pane's width: the screen's when narrow (the panes take turns), else as the CSS sets it."""
        width = self.size.width
        return width if width < NARROW_WIDTH else HISTORY_WIDTHS[width < MEDIUM_WIDTH]
