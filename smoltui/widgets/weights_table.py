"""WeightsTable: every tensor of a model with its statistics, one row each, sorted by any column and filtered by
a regular expression over the tensors' names (a tied tensor's other names match too)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from smoltui.engine.errors import UserError
from smoltui.engine.weights import TensorStats
from smoltui.screens.base import sync_table
from smoltui.weight_look import format_shape, short_number


@dataclass(frozen=True)
class SortKey:
    """A way to order the table: its column, the words that name it, and the value compared."""

    column: str
    title: str
    value: Callable[[TensorStats], object]
    largest_first: bool = True  # numbers read best largest first; names and the model's order from the top


SORT_KEYS: tuple[SortKey, ...] = (
    SortKey("order", "model order", lambda stats: 0, largest_first=False),
    SortKey("name", "name", lambda stats: stats.name, largest_first=False),
    SortKey("shape", "size", lambda stats: stats.numel),
    SortKey("mean", "mean", lambda stats: stats.mean),
    SortKey("std", "std", lambda stats: stats.std),
    SortKey("min", "min", lambda stats: stats.min),
    SortKey("max", "max", lambda stats: stats.max),
    SortKey("zeros", "zeros", lambda stats: stats.sparsity),
    SortKey("norm", "norm", lambda stats: stats.norm),
)
COLUMNS = (
    ("tensor", "name"),
    ("shape", "shape"),
    ("dtype", "dtype"),
    ("mean", "mean"),
    ("std", "std"),
    ("min", "min"),
    ("max", "max"),
    ("zeros", "zeros"),
    ("norm", "norm"),
)
DTYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}


def sort_key(column: str) -> SortKey:
    for key in SORT_KEYS:
        if key.column == column:
            return key
    raise ValueError(f"no sort key for column {column!r}")


def name_filter(pattern: str) -> re.Pattern[str]:
    """The regular expression typed in the filter (searched in each name, case-insensitive)."""
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        raise UserError(
            f"the filter is not a regular expression ({error}); fix it or clear it.", field="filter"
        ) from None


def table_rows(
    table: Sequence[TensorStats], *, pattern: str = "", sort: str = "order", reverse: bool = False
) -> list[TensorStats]:
    """The tensors that match `pattern`, in the order `sort` (a SORT_KEYS column) gives; `reverse` flips it."""
    wanted = name_filter(pattern)
    shown = [stats for stats in table if any(wanted.search(name) for name in (stats.name, *stats.also))]
    key = sort_key(sort)
    if key.column != "order":
        shown.sort(key=key.value, reverse=key.largest_first)
    return shown[::-1] if reverse else shown


def row_cells(stats: TensorStats) -> list[str | Text]:
    name = Text(stats.name)
    if stats.also:
        name.append(f" = {', '.join(stats.also)}", "dim")
    if stats.kind == "buffer":
        name.append(" (buffer)", "dim")
    zeros = f"{stats.sparsity:.1%}" if stats.sparsity else "0"
    numbers = (stats.mean, stats.std, stats.min, stats.max)
    return [name, format_shape(stats.shape), DTYPES.get(stats.dtype, stats.dtype), *map(short_number, numbers), zeros,
            short_number(stats.norm)]  # fmt: skip


class WeightsTable(DataTable):
    """The model's tensors, one row each keyed by name; the cursor's row is the tensor the viewer shows."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.shown: list[TensorStats] = []

    def show(self, shown: Sequence[TensorStats], *, sort: str = "order", reverse: bool = False) -> None:
        """Show these rows (see table_rows); the cursor stays on its tensor when it is still listed."""
        self.shown = list(shown)
        labels = [(self._label(label, key, sort, reverse), key) for label, key in COLUMNS]
        sync_table(self, labels, [(stats.name, row_cells(stats)) for stats in shown])

    @staticmethod
    def _label(label: str, column: str, sort: str, reverse: bool) -> str:
        if column != sort:
            return label
        return label + (" ▲" if sort_key(sort).largest_first == reverse else " ▼")

    @property
    def selected(self) -> TensorStats | None:
        """The tensor under the cursor, if any row is listed."""
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]
