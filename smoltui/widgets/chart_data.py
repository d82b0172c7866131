"""Chart series: finite points sorted by step in growable float64 buffers, and their debiased EMA."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, NamedTuple

import numpy as np

SeriesStyle = Literal["line", "points"]

# Chunk length of the vectorised EMA: short enough that a**-k neither overflows nor loses precision.
_EMA_CHUNK = 4096


# ---------------------------------------------------------------------------------------------- EMA smoothing


class EmaState(NamedTuple):
    """The running state of a debiased EMA: the biased average so far and how many points it has seen."""

    biased: float = 0.0
    count: int = 0


def _ema_biased(x: np.ndarray, a: float, carry: float) -> np.ndarray:
    """`e_t = a*e_{t-1} + (1-a)*x_t` from `e_0 = carry`, vectorised in chunks of the closed form.

    Inside a chunk `e_i = a**(i+1)*carry + (1-a)*a**i * cumsum(a**-k * x_k)`; only the carries between chunks
    (n / chunk of them) go through a Python loop.
    """
    n = len(x)
    length = min(_EMA_CHUNK, n, 1 + int(150 / -math.log10(a)))  # keeps a**-length under 1e150
    chunks = -(-n // length)
    padded = np.zeros(chunks * length)
    padded[:n] = x
    k = np.arange(length)
    local = np.cumsum(padded.reshape(chunks, length) * a**-k, axis=1)
    local *= (1.0 - a) * a**k
    decay, ends = a**length, local[:, -1].tolist()
    carries = np.empty(chunks)
    for i, end in enumerate(ends):
        carries[i] = carry
        carry = decay * carry + end
    local += np.outer(carries, a ** (k + 1))
    return local.ravel()[:n]


def ema_debiased(values: np.ndarray, alpha: float, state: EmaState | None = None) -> tuple[np.ndarray, EmaState]:
    """Smooth `values` as TensorBoard does: an EMA divided by `1 - alpha**t` so that it has no start-up bias.

    `state` continues an earlier call, so smoothing appended points costs O(new points). Returns the smoothed
    values and the state to pass next time.
    """
    x = np.asarray(values, dtype=np.float64)
    state = state or EmaState()
    if not len(x):
        return x.copy(), state
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {alpha}")
    if alpha == 0.0:
        return x.copy(), EmaState(float(x[-1]), state.count + len(x))
    biased = _ema_biased(x, alpha, state.biased)
    t = np.arange(state.count + 1, state.count + len(x) + 1, dtype=np.float64)
    return biased / -np.expm1(t * math.log(alpha)), EmaState(float(biased[-1]), state.count + len(x))


# ---------------------------------------------------------------------------------------------- storage


class _GrowableArray:
    """A float64 buffer whose capacity doubles, so appending n points in small batches costs O(n) overall."""

    __slots__ = ("_data", "_size")

    def __init__(self, capacity: int = 256) -> None:
        self._data = np.empty(capacity)
        self._size = 0

    def extend(self, new: np.ndarray) -> None:
        end = self._size + len(new)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data)))
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = new
        self._size = end

    def reset(self, data: np.ndarray) -> None:
        self._data = np.array(data, dtype=np.float64)
        self._size = len(self._data)

    @property
    def capacity(self) -> int:
        return len(self._data)

    @property
    def view(self) -> np.ndarray:
        """The filled part; do not hold it across `extend`, which may move the buffer."""
        return self._data[: self._size]


def finite_points(steps: Iterable[float] | np.ndarray, values: Iterable[float] | np.ndarray) -> tuple[np.ndarray, ...]:
    """`steps` and `values` as float64 arrays, without the points where either is NaN or infinite."""
    s = np.asarray(steps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if s.shape != v.shape:
        raise ValueError(f"steps and values must have the same length, got {len(s)} and {len(v)}")
    keep = np.isfinite(s) & np.isfinite(v)
    return (s, v) if keep.all() else (s[keep], v[keep])


class Series:
    """One named series: finite points sorted by step, and its EMA kept up to date as points arrive.

    `max_steps` is the length of the run it comes from, where known: runs of different lengths line up on it
    when a chart aligns them by fraction.
    """

    def __init__(self, name: str, colour: str, style: SeriesStyle = "line", max_steps: float | None = None) -> None:
        if style not in ("line", "points"):
            raise ValueError(f'series style must be "line" or "points", got {style!r}')
        self.name, self.colour, self.style = name, colour, style
        self.max_steps = max_steps
        self._steps, self._values, self._smoothed = _GrowableArray(), _GrowableArray(), _GrowableArray()
        self._alpha: float | None = None
        self._ema = EmaState()

    def __len__(self) -> int:
        return len(self._steps.view)

    @property
    def steps(self) -> np.ndarray:
        return self._steps.view

    @property
    def values(self) -> np.ndarray:
        return self._values.view

    def append(self, steps: Iterable[float] | np.ndarray, values: Iterable[float] | np.ndarray) -> int:
        """Add points and return how many were kept: non-finite ones are dropped. Points older than the newest
        one are merged in order (rare, and O(n) when it happens)."""
        s, v = finite_points(steps, values)
        if not len(s):
            return 0
        if (len(self) and s[0] < self.steps[-1]) or (len(s) > 1 and bool(np.any(s[1:] < s[:-1]))):
            merged_s, merged_v = np.concatenate([self.steps, s]), np.concatenate([self.values, v])
            order = np.argsort(merged_s, kind="stable")
            self._steps.reset(merged_s[order])
            self._values.reset(merged_v[order])
            self._alpha = None
            return len(s)
        self._steps.extend(s)
        self._values.extend(v)
        if self._alpha is not None:
            smoothed, self._ema = ema_debiased(v, self._alpha, self._ema)
            self._smoothed.extend(smoothed)
        return len(s)

    def clear(self) -> None:
        self._steps, self._values, self._smoothed = _GrowableArray(), _GrowableArray(), _GrowableArray()
        self._alpha, self._ema = None, EmaState()

    def smoothed(self, alpha: float) -> np.ndarray:
        """The debiased EMA of the values; recomputed in full only when `alpha` differs from the last call."""
        if alpha != self._alpha:
            smoothed, self._ema = ema_debiased(self.values, alpha)
            self._smoothed.reset(smoothed)
            self._alpha = alpha
        return self._smoothed.view
