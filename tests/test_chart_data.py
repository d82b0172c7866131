"""Chart series: the debiased EMA against its definition, and storage that grows, skips NaN and merges late points."""

from __future__ import annotations

import numpy as np
import pytest

from smoltui.widgets.chart_data import Series, ema_debiased


def slow_ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """The definition, one point at a time: TensorBoard's debiased EMA."""
    out, biased = [], 0.0
    for t, x in enumerate(values, start=1):
        biased = alpha * biased + (1 - alpha) * x
        out.append(biased / (1 - alpha**t))
    return np.array(out)


def series(name: str, steps, values, style="line", colour="#ff0000") -> Series:
    s = Series(name, colour, style)
    s.append(steps, values)
    return s


# ---------------------------------------------------------------------------------------------- EMA


@pytest.mark.parametrize("alpha", [0.0, 0.001, 0.3, 0.6, 0.9, 0.99, 0.999])
def test_ema_matches_the_definition_and_starts_at_the_first_value(alpha):
    values = np.random.default_rng(1).normal(3.0, 1.0, 5_000) + np.linspace(4, 0, 5_000)
    smoothed, state = ema_debiased(values, alpha)
    assert smoothed[0] == pytest.approx(values[0], rel=1e-12)
    np.testing.assert_allclose(smoothed, slow_ema(values, alpha), rtol=1e-10)
    assert state.count == 5_000


def test_ema_has_no_start_up_bias_on_a_constant_series():
    smoothed, _ = ema_debiased(np.full(1_000, 2.5), 0.99)
    np.testing.assert_allclose(smoothed, 2.5, rtol=1e-12)


def test_ema_appended_in_pieces_equals_full_recompute():
    values = np.random.default_rng(2).normal(size=20_000)
    full, _ = ema_debiased(values, 0.95)
    parts, state = [], None
    for piece in np.array_split(values, [1, 2, 700, 701, 9_000, 15_000]):
        smoothed, state = ema_debiased(piece, 0.95, state)
        parts.append(smoothed)
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-12, atol=1e-12)


def test_ema_rejects_a_weight_of_one():
    with pytest.raises(ValueError, match="smoothing"):
        ema_debiased(np.ones(3), 1.0)


# ---------------------------------------------------------------------------------------------- storage


def test_series_storage_doubles_instead_of_copying_every_append():
    s = Series("loss", "#fff")
    capacities = set()
    for start in range(0, 100_000, 100):
        s.append(np.arange(start, start + 100), np.ones(100))
        capacities.add(s._steps.capacity)
    assert len(s) == 100_000
    assert len(capacities) <= 12  # log2(100_000 / 256) + 1 reallocations
    assert s._steps.capacity < 2 * len(s) + 256


def test_series_skips_nan_and_inf_and_merges_late_points():
    s = series("loss", [0, 1, 2, 3, np.nan], [1.0, np.nan, np.inf, 4.0, 5.0])
    assert s.steps.tolist() == [0, 3] and s.values.tolist() == [1.0, 4.0]
    s.append([2], [9.0])  # older than the newest point: merged in order
    assert s.steps.tolist() == [0, 2, 3] and s.values.tolist() == [1.0, 9.0, 4.0]
    with pytest.raises(ValueError, match="same length"):
        s.append([1, 2], [1.0])


def test_series_keeps_its_ema_running_on_append():
    values = np.random.default_rng(3).normal(size=3_000)
    s = series("loss", np.arange(1_000), values[:1_000])
    s.smoothed(0.9)
    s.append(np.arange(1_000, 3_000), values[1_000:])
    np.testing.assert_allclose(s.smoothed(0.9), slow_ema(values, 0.9), rtol=1e-10)
