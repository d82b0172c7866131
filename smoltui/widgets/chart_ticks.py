"""Chart ticks and numbers: round tick values on linear and log axes, and short labels for ticks and values."""

from __future__ import annotations

import math

import numpy as np


def nice_ticks(lo: float, hi: float, max_ticks: int, min_step: float = 0.0) -> tuple[np.ndarray, float]:
    """Round tick values (1, 2 or 5 times a power of ten) inside [lo, hi], at most about `max_ticks` of them."""
    span = hi - lo
    raw = max(span / max(1, max_ticks), min_step, 1e-300)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return first + step * np.arange(max(count, 0)), step


def log_ticks(lo: float, hi: float, max_ticks: int) -> tuple[np.ndarray, float]:
    """Ticks for a log axis between 10**lo and 10**hi, as values; the step is 0 when ticks are not evenly spaced."""
    best: list[float] = []
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(lo), math.ceil(hi) + 1)
            for m in mantissas
            if lo - 1e-9 <= e + math.log10(m) <= hi + 1e-9
        ]
        if len(ticks) > max_ticks:
            break
        best = ticks
    if len(best) >= 2:
        return np.array(best), 0.0
    if not best and math.ceil(lo) < math.floor(hi):  # many decades: every k-th power of ten
        every = math.ceil((math.floor(hi) - math.ceil(lo) + 1) / max_ticks)
        powers = 10.0 ** np.arange(math.ceil(lo), math.floor(hi) + 1, every)
        return powers, 0.0
    return nice_ticks(10.0**lo, 10.0**hi, max_ticks)


def _tidy_exponent(text: str, strip_zeros: bool = False) -> str:
    """ "1.50e-04" -> "1.50e-4" (or "1.5e-4" with `strip_zeros`)."""
    mantissa, _, exponent = text.partition("e")
    if strip_zeros and "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def _decimals(step: float) -> int:
    """How many decimals it takes to write multiples of `step`: 0.25 -> 2, 2.5 -> 1, 500 -> 0."""
    return next((d for d in range(12) if abs(round(step, d) - step) <= step * 1e-6), 12)


def format_tick(value: float, step: float) -> str:
    """A short label for a tick: 1500 -> "1500", 12500 -> "12.5k", 0.00015 -> "1.5e-4", precise to `step`."""
    if value == 0 or abs(value) < step * 1e-6:
        return "0"
    size = abs(value)
    if size >= 1e4:
        unit, suffix = next((u, x) for u, x in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if size >= u)
        return f"{value / unit:.{_decimals(step / unit)}f}{suffix}"
    if size < 1e-3:
        return _tidy_exponent(f"{value:.{_decimals(step / 10 ** math.floor(math.log10(size)))}e}")
    return f"{value:.{_decimals(step)}f}"


def format_value(value: float, digits: int = 4) -> str:
    """A value to about `digits` significant digits, for the legend and the compact range labels."""
    size = abs(value)
    if size >= 1e4:
        return format_tick(value, 10 ** (math.floor(math.log10(size)) - digits + 1))
    if 0 < size < 1e-3:
        return _tidy_exponent(f"{value:.{digits - 1}e}", strip_zeros=True)
    text = f"{value:.{max(0, digits - 1 - math.floor(math.log10(size or 1)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
