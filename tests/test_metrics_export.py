"""Export of a run's metrics: wide and long layouts, as CSV and as JSONL."""

from __future__ import annotations

import io
import json
import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from smoltui.engine.errors import UserError
from smoltui.engine.metrics_export import export_metrics
from smoltui.engine.runstore import RunStore


@pytest.fixture
def exported_store(workspace):
    run_dir = workspace / "runs" / "run-1"
    writer = RunStore.create(run_dir, "run-1")
    writer.log_metrics(0, {"train/loss": 4.0, "lr": 0.0})
    writer.log_metrics(1, {"train/loss": 3.5, "lr": 1e-4})
    writer.log_metrics(2, {"train/loss": math.nan, "lr": 2e-4, "val/loss": 3.75})
    writer.flush()
    yield RunStore.open(run_dir)
    writer.close()


def test_export_wide_csv_has_one_row_per_step_and_one_column_per_metric(exported_store):
    out = io.StringIO()
    export_metrics(exported_store, "csv", out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "step,time,time_iso,lr,train/loss,val/loss"
    cells = [line.split(",") for line in lines[1:]]
    assert [(c[0], c[3], c[4], c[5]) for c in cells] == [
        ("0", "0.0", "4.0", ""),
        ("1", "0.0001", "3.5", ""),
        ("2", "0.0002", "nan", "3.75"),
    ]
    assert all(float(c[1]) > 1e9 for c in cells)


def test_export_long_csv_and_jsonl(exported_store):
    out = io.StringIO()
    export_metrics(exported_store, "csv", out, layout="long")
    lines = out.getvalue().splitlines()
    assert lines[0] == "step,name,value,time,time_iso" and len(lines) == 1 + 7
    assert lines[1].startswith("0,lr,0.0,")

    out = io.StringIO()
    export_metrics(exported_store, "jsonl", out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [{k: v for k, v in r.items() if k not in ("time", "time_iso")} for r in rows] == [
        {"step": 0, "lr": 0.0, "train/loss": 4.0},
        {"step": 1, "lr": 1e-4, "train/loss": 3.5},
        {"step": 2, "lr": 2e-4, "train/loss": None, "val/loss": 3.75},
    ]

    out = io.StringIO()
    export_metrics(exported_store, "jsonl", out, layout="long")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows[-1]["step"] == 2 and {r["name"] for r in rows} == {"lr", "train/loss", "val/loss"}
    with pytest.raises(UserError, match="use csv or jsonl"):
        export_metrics(exported_store, "xlsx", io.StringIO())


def test_times_are_written_as_iso_8601_in_utc_beside_the_epoch_seconds(exported_store):
    csv_out = io.StringIO()
    export_metrics(exported_store, "csv", csv_out)
    header, *rows = [line.split(",") for line in csv_out.getvalue().splitlines()]
    assert header[:3] == ["step", "time", "time_iso"]
    jsonl_out = io.StringIO()
    export_metrics(exported_store, "jsonl", jsonl_out, layout="long")
    records = [json.loads(line) for line in jsonl_out.getvalue().splitlines()]
    pairs = [(float(row[1]), row[2]) for row in rows] + [(r["time"], r["time_iso"]) for r in records]
    for epoch, iso in pairs:
        assert iso.endswith("Z") and "T" in iso
        # the same instant, to the millisecond the ISO text keeps
        parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        assert parsed.utcoffset() == timedelta(0)
        assert abs(parsed.timestamp() - epoch) < 1e-3


def test_iso_time_is_utc_whatever_the_local_time_zone(exported_store, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: a local-time bug would show as a 5.5 h shift
    time.tzset()
    try:
        out = io.StringIO()
        export_metrics(exported_store, "jsonl", out)
        first = json.loads(out.getvalue().splitlines()[0])
    finally:
        monkeypatch.undo()
        time.tzset()
    expected = datetime.fromtimestamp(first["time"], tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert first["time_iso"].startswith(expected)
