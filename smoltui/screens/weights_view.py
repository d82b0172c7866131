"""The weights viewer of the Surgery screen: the table of the session model's tensors (sorted, filtered) and, for
the tensor under the cursor, its heatmap, histogram and top singular values.

Every number is computed on the model session's worker (the table once per model, a tensor's views when it is
first selected, its heatmap again for another size) and kept per tensor name until the model changes or
`refresh_weights()` is called (after an operation edited the weights), so moving the cursor back is instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import Input, Static

from smoltui.engine.errors import UserError
from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished
from smoltui.engine.weights import HEAT_MODES, TensorStats
from smoltui.screens.base import model_name
from smoltui.weight_look import format_shape, histogram_text, short_number, singular_values_text
from smoltui.widgets.weight_heatmap import WeightHeatmap
from smoltui.widgets.weights_table import SORT_KEYS, WeightsTable, table_rows
from smoltui.widgets.worker_errors import describe_error, report_error

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from smoltui.engine.session import JobContext
    from smoltui.screens.base import Workbench

HISTOGRAM_BINS = 128  # computed once per tensor; drawn on as many columns as the panel has (weight_look.fit_bins)
HISTOGRAM_SIGMAS = 6  # the histogram spans mean ± 6 std at most: a few outliers would squeeze the bulk into a spike
TOP_SINGULAR = 12
MODE_TITLES = {"abs": "|w|", "signed": "signed w"}


@dataclass
class TensorViews:
    """What has been computed for one tensor: its histogram, top singular values and heatmaps by size."""

    histogram: tuple[np.ndarray, np.ndarray] | None = None  # (edges, counts)
    singular: np.ndarray | None = None  # (k,), largest first; stays None for a vector
    heatmaps: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict)  # (rows, cols) → mode → matrix


@dataclass(frozen=True)
class ViewsComputed:
    """A views job's answer: the pieces it was asked for (None where not asked)."""

    name: str
    histogram: tuple[np.ndarray, np.ndarray] | None
    singular: np.ndarray | None
    cells: tuple[int, int] | None
    heatmaps: dict[str, np.ndarray] | None


def table_work(context: JobContext) -> list[TensorStats]:
    """The session job: the statistics of every tensor of the session's model."""
    from smoltui.engine.weights import tensor_table

    return tensor_table(context.require_model().model, should_stop=context.cancelled)


def histogram_range(stats: TensorStats) -> tuple[float, float]:
    """Where a tensor's histogram starts and ends: its min and max, or mean ± HISTOGRAM_SIGMAS std within them."""
    spread = HISTOGRAM_SIGMAS * stats.std
    return max(stats.min, stats.mean - spread), min(stats.max, stats.mean + spread)


def views_work(
    stats: TensorStats, *, histogram: bool, singular: bool, cells: tuple[int, int] | None
) -> Callable[[JobContext], ViewsComputed]:
    """The session job: what is still missing of one tensor's views (a histogram, singular values, heatmaps)."""
    name = stats.name

    def work(context: JobContext) -> ViewsComputed:
        from smoltui.engine import weights

        tensor = weights.find_tensor(context.require_model().model, name)
        low, high = histogram_range(stats)
        counts = weights.histogram(tensor, HISTOGRAM_BINS, low=low, high=high) if histogram else None
        heatmaps = None
        if cells is not None and not context.cancelled.is_set():
            heatmaps = {mode: weights.downsample(tensor, *cells, mode=mode) for mode in HEAT_MODES}
        values = None
        if singular and tensor.ndim >= 2 and not context.cancelled.is_set():
            values = weights.top_singular_values(tensor, TOP_SINGULAR)
        return ViewsComputed(name, counts, values, cells, heatmaps)

    return work


class WeightsViewer:
    """The weights viewer's part of SurgeryScreen (see module doc): its widgets are composed by the screen."""

    # What the screen provides (SmolScreen and SurgeryScreen; _load_job, load_event and no_model_hint are
    # BundledModelOffer's).
    smol: Workbench
    query_one: Any
    refresh_bindings: Callable[[], None]
    _load_job: Job | None

    def _init_weights(self) -> None:
        self.weights: list[TensorStats] = []  # the table of the session's model, in model order
        self.views: dict[str, TensorViews] = {}  # per tensor name
        self.heat_mode = "abs"
        self.sort = "order"
        self.reverse = False
        self._pattern = ""  # the last valid filter
        self._table_job: Job | None = None
        self._views_job: Job | None = None
        self._views_asked: tuple[str, tuple[int, int] | None] | None = None  # (name, cells) of the job in flight

    # -- what tests, benchmarks and the history pane use -----------------------------------------------------

    @property
    def weights_table(self) -> WeightsTable:
        return self.query_one("#weights-table", WeightsTable)

    @property
    def heatmap(self) -> WeightHeatmap:
        return self.query_one("#weight-heatmap", WeightHeatmap)

    @property
    def weights_busy(self) -> bool:
        """Whether the table or a tensor's views are being computed."""
        return self._table_job is not None or self._views_job is not None

    def refresh_weights(self) -> None:
        """Read the session model's tensors again (its weights changed): the table anew, every view forgotten."""
        for job in (self._table_job, self._views_job):
            if job is not None:
                job.cancel()
        self.weights, self.views = [], {}
        self._views_job = self._views_asked = self._table_job = None
        if self.smol.session_model is not None:
            self._table_job = self.smol.session.submit("weights", table_work, "weights table", tag=self)
        self._show_table()

    # -- the model -------------------------------------------------------------------------------------------

    def _weights_event(self, event: Any) -> bool:
        """Take a session event if it belongs to one of the viewer's jobs; whether it did."""
        job = getattr(event, "job", None)
        if job is None:
            return False
        if job is self._load_job:
            self.load_event(event)
        elif job is self._table_job:
            if isinstance(event, JobFinished):
                self._table_job = None
                self.weights = event.result
                self._say("")
                self._show_table()
            elif isinstance(event, JobFailed | JobCancelled):
                self._job_failed(event)
        elif job is self._views_job:
            if isinstance(event, JobFinished):
                self._views_job = self._views_asked = None
                self._take_views(event.result)
            elif isinstance(event, JobFailed | JobCancelled):
                self._views_job = self._views_asked = None
                self._job_failed(event)
        else:
            return False
        return True

    def _job_failed(self, event: JobFailed | JobCancelled) -> None:
        if event.job is self._table_job:
            self._table_job = None
        if isinstance(event, JobFailed):
            if not isinstance(event.error, UserError):
                report_error(self, event.error)
            self._say(describe_error(event.error))

    # -- the table -------------------------------------------------------------------------------------------

    def _show_table(self) -> None:
        table = self.weights_table
        loaded = self.smol.session_model
        note = None
        try:
            shown = table_rows(self.weights, pattern=self._filter_text(), sort=self.sort, reverse=self.reverse)
        except UserError as error:
            note = str(error)
            shown = table_rows(self.weights, pattern=self._pattern, sort=self.sort, reverse=self.reverse)
        else:
            self._pattern = self._filter_text()
        table.show(shown, sort=self.sort, reverse=self.reverse)
        name = "no model" if loaded is None else model_name(loaded)
        count = f"{len(shown)} of {len(self.weights)}" if len(shown) != len(self.weights) else f"{len(shown)}"
        table.border_title = f"Tensors · {name}" + (f" · {count}" if self.weights else "")
        order = next(key.title for key in SORT_KEYS if key.column == self.sort)
        table.border_subtitle = f"by {order}{' reversed' if self.reverse else ''} (o r) · filter (/)"
        if loaded is None:
            note = self.no_model_hint()
        elif self._table_job is not None:
            note = f"reading the weights of {model_name(loaded)}…"
        elif note is None and self.weights and not shown:
            note = f"No tensor matches {self._pattern!r}: change the filter (/) or clear it."
        if note is not None:
            self._say(note)
        self._show_views()

    def _filter_text(self) -> str:
        return self.query_one("#weights-filter", Input).value

    def _filter_changed(self) -> None:
        self._say("")
        self._show_table()

    def _sort_by_column(self, column: str) -> None:
        """A click on a column's header: order by it; a second click on the same header reverses the order."""
        if column == self.sort:
            self.reverse = not self.reverse
        else:
            known = any(key.column == column for key in SORT_KEYS)  # dtype is not an order: back to the model's
            self.sort, self.reverse = (column if known else "order"), False
        self._show_table()

    def action_cycle_sort(self) -> None:
        columns = [key.column for key in SORT_KEYS]
        self.sort = columns[(columns.index(self.sort) + 1) % len(columns)]
        self.reverse = False
        self._show_table()

    def action_reverse_sort(self) -> None:
        self.reverse = not self.reverse
        self._show_table()

    def action_toggle_heat_mode(self) -> None:
        self.heat_mode = HEAT_MODES[(HEAT_MODES.index(self.heat_mode) + 1) % len(HEAT_MODES)]
        self._show_views()

    # -- the selected tensor's views -------------------------------------------------------------------------

    def _show_views(self) -> None:
        """Draw what is known of the selected tensor, and ask the worker for what is not."""
        stats = self.weights_table.selected
        heatmap, histogram, singular = self._view_widgets()
        if stats is None:
            heatmap.border_title = "Heatmap"
            hint = self.no_model_hint() or "No tensor selected."
            heatmap.show(None, self.heat_mode, hint if not self._table_job else "reading the weights…")
            histogram.update("")
            singular.update("")
            return
        if not heatmap.content_size.width:
            return  # not laid out yet: its SizeChanged asks again
        cached = self.views.setdefault(stats.name, TensorViews())
        cells = heatmap.cells_wanted
        matrix = cached.heatmaps.get(cells, {}).get(self.heat_mode)
        also = f" = {', '.join(stats.also)}" if stats.also else ""
        heatmap.border_title = f"{stats.name}{also} · {format_shape(stats.shape)}"
        heatmap.border_subtitle = f"{MODE_TITLES[self.heat_mode]} (a)" + (
            "" if matrix is None else f" · {matrix.shape[0]}×{matrix.shape[1]} block means"
        )
        heatmap.show(matrix, self.heat_mode, "computing…")
        self._draw_histogram(stats, cached, histogram)
        self._draw_singular(stats, cached, singular)
        wants_singular = stats.is_matrix and cached.singular is None
        if matrix is None or cached.histogram is None or wants_singular:
            self._ask_views(stats, cells if matrix is None else None, cached.histogram is None, wants_singular)

    def _view_widgets(self) -> tuple[WeightHeatmap, Static, Static]:
        return self.heatmap, self.query_one("#weight-histogram", Static), self.query_one("#weight-singular", Static)

    def _ask_views(self, stats: TensorStats, cells: tuple[int, int] | None, histogram: bool, singular: bool) -> None:
        if self._views_asked == (stats.name, cells):
            return  # already on its way
        if self._views_job is not None:
            self._views_job.cancel()  # a tensor the cursor has left
        work = views_work(stats, histogram=histogram, singular=singular, cells=cells)
        self._views_job = self.smol.session.submit("weights", work, f"views of {stats.name}", tag=self)
        self._views_asked = (stats.name, cells)

    def _take_views(self, computed: ViewsComputed) -> None:
        cached = self.views.setdefault(computed.name, TensorViews())
        if computed.histogram is not None:
            cached.histogram = computed.histogram
        if computed.singular is not None:
            cached.singular = computed.singular
        if computed.cells is not None and computed.heatmaps is not None:
            cached.heatmaps[computed.cells] = computed.heatmaps
        self._show_views()

    def _draw_histogram(self, stats: TensorStats, cached: TensorViews, panel: Static) -> None:
        panel.border_title = f"Histogram · {stats.numel:,} values"
        panel.border_subtitle = f"mean {short_number(stats.mean)} · std {short_number(stats.std)}"
        width, height = panel.content_size
        if cached.histogram is None:
            panel.update(Text("computing…", style="dim italic"))
            return
        edges, counts = cached.histogram
        outside = stats.numel - int(counts.sum())
        if outside:
            panel.border_subtitle += f" · {outside:,} beyond ±{HISTOGRAM_SIGMAS}σ"  # cut first where the room is short
        panel.update(histogram_text(edges, counts, width or 40, max(height - 1, 1)))

    def _draw_singular(self, stats: TensorStats, cached: TensorViews, panel: Static) -> None:
        panel.border_title = "Top singular values"
        if not stats.is_matrix:
            panel.update(Text(f"a vector: no singular values (its norm is {short_number(stats.norm)})", style="dim"))
            return
        if cached.singular is None:
            panel.update(Text("computing…", style="dim italic"))
            return
        width, height = panel.content_size
        panel.update(singular_values_text(cached.singular[: max(height, 1)], width or 40))

    def _say(self, sentence: str) -> None:
        """One sentence about the last thing asked (a bad filter, a load, no model), until the next."""
        note = self.query_one("#weights-note", Static)
        note.update(sentence)
        note.display = bool(sentence)
