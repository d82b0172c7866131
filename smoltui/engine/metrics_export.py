"""Export of a run's metrics as CSV or JSONL, one row per step (wide) or one row per point (long)."""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from smoltui.engine.errors import UserError
from smoltui.engine.runstore import RunStore


def iso_time(epoch_s: float) -> str:
    """`epoch_s` as ISO 8601 in UTC with a Z, to the millisecond: the same text on every machine that exports it,
    whatever its time zone, and it sorts as it reads."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _export_records(store: RunStore, names: list[str], wide: bool) -> Iterator[dict[str, Any]]:
    """The export's rows in step order."""
    points = store.metric_points_by_step(names)
    for step, group in itertools.groupby(points, key=lambda row: row[0]):
        cells = [(names[index], math.nan if value is None else value, t) for _, index, value, t in group]
        if wide:
            first = min(t for _, _, t in cells)
            record = {"step": step, "time": first, "time_iso": iso_time(first)}
            record.update((name, value) for name, value, _ in cells)
            yield record
        else:
            for name, value, t in cells:
                yield {"step": step, "name": name, "value": value, "time": t, "time_iso": iso_time(t)}


def export_metrics(store: RunStore, fmt: str, out: TextIO, layout: str = "wide") -> None:
    """Write every metric of `store` to `out` as "csv" or "jsonl", in step order.

    layout "wide" (default, what a spreadsheet or `pandas.read_csv` expects): one row per step with columns
    step, time (when the step was logged, in seconds since the epoch), time_iso (the same instant as ISO 8601 in
    UTC, e.g. 2026-12-02T13:45:02.123Z) and one column per metric, empty where a metric was not logged.
    layout "long": one row per (step, name, value, time, time_iso). NaN is written as `nan` in CSV; NaN and
    infinities as null in JSONL, which has no spelling for them.
    """
    if fmt not in ("csv", "jsonl"):
        raise UserError(f"unknown export format {fmt!r}; use csv or jsonl.")
    if layout not in ("wide", "long"):
        raise UserError(f"unknown export layout {layout!r}; use wide or long.")
    wide = layout == "wide"
    with store.snapshot():  # one snapshot for every metric
        names = store.metric_names()
        records = _export_records(store, names, wide)
        if fmt == "csv":
            columns = ["step", "time", "time_iso", *names] if wide else ["step", "name", "value", "time", "time_iso"]
            writer = csv.DictWriter(out, columns)
            writer.writeheader()
            writer.writerows(records)
        else:
            for record in records:
                finite = {k: v if isinstance(v, str) or math.isfinite(v) else None for k, v in record.items()}
                out.write(json.dumps(finite) + "\n")
