"""The weights viewer's numbers: statistics of every tensor of a model, and for one tensor its histogram, a
downsampled heatmap matrix and its top singular values. Plain torch and numpy, no textual.

Statistics take one pass per tensor: a big tensor is read in chunks small enough to stay in the CPU's cache
while every reduction (sum, sum of squares, min and max, zeros) runs over it. The sums are taken of x - shift,
the shift being the first chunk's mean, so a tensor of norm weights near 1 keeps its small std (E[x²] - E[x]²
would cancel it away in float32); torch.var_mean would do that too, but ran 10x slower than sum and dot here.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

CHUNK = 1 << 18  # elements read at once: 1 MiB of fp32, so the reductions over a chunk find it in the cache
HeatMode = Literal["abs", "signed"]
HEAT_MODES: tuple[HeatMode, ...] = ("abs", "signed")


@dataclass(frozen=True)
class TensorStats:
    """One tensor of a model: its name, shape and summary numbers. `also` names the other names of a tied tensor
    (an LM head sharing the embedding's matrix), which the table lists once."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch's name without "torch.", e.g. "float32"
    numel: int
    mean: float
    std: float  # population std (ddof 0)
    min: float
    max: float
    sparsity: float  # the share of entries exactly zero, 0..1
    norm: float  # L2 (Frobenius) norm
    kind: str = "parameter"  # or "buffer" (a persistent floating-point buffer)
    also: tuple[str, ...] = ()

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2


def weight_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor, str, tuple[str, ...]]]:
    """(name, tensor, kind, other names) for every parameter and persistent floating-point buffer of `model`, in
    the model's order; a tensor reachable under several names (tied) comes once, under its first name."""
    buffers = {id(buffer) for buffer in model.buffers()}
    first: dict[int, int] = {}  # id(tensor) → its index in `found`
    found: list[tuple[str, torch.Tensor, str, list[str]]] = []
    for name, tensor in model.state_dict(keep_vars=True).items():  # persistent buffers only, tied names repeated
        if not tensor.is_floating_point():
            continue
        index = first.get(id(tensor))
        if index is not None:
            found[index][3].append(name)
            continue
        first[id(tensor)] = len(found)
        found.append((name, tensor, "buffer" if id(tensor) in buffers else "parameter", []))
    return [(name, tensor, kind, tuple(also)) for name, tensor, kind, also in found]


def tensor_stats(
    name: str, tensor: torch.Tensor, *, kind: str = "parameter", also: tuple[str, ...] = ()
) -> TensorStats:
    """The summary numbers of one tensor (see module doc for how a big one is read)."""
    import torch

    flat = tensor.detach().reshape(-1)  # a view of a contiguous tensor
    count = flat.numel()
    if count == 0:
        return TensorStats(name, tuple(tensor.shape), _dtype_name(tensor), 0, math.nan, math.nan, math.nan, math.nan,
                           0.0, 0.0, kind, also)  # fmt: skip
    shifted = torch.empty(min(count, CHUNK), dtype=torch.float32)  # (≤ CHUNK,) reused by every chunk
    shift = 0.0  # the first chunk's mean: sums of (x - shift) keep a small std beside a large mean exact
    total = squares = 0.0  # Σ (x - shift) and Σ (x - shift)², in double
    low, high, zeros = math.inf, -math.inf, 0
    with torch.no_grad():
        for start in range(0, count, CHUNK):
            chunk = flat[start : start + CHUNK].float()  # (≤ CHUNK,)
            size = chunk.numel()
            if start == 0:
                shift = float(chunk.sum()) / size
            deviations = torch.sub(chunk, shift, out=shifted[:size])  # (≤ CHUNK,)
            total += float(deviations.sum())
            squares += float(torch.dot(deviations, deviations))
            chunk_low, chunk_high = torch.aminmax(chunk)
            low, high = min(low, float(chunk_low)), max(high, float(chunk_high))
            zeros += size - int(torch.count_nonzero(chunk))
    offset = total / count  # the mean's distance from the shift
    variance = max(squares / count - offset * offset, 0.0)
    sum_of_squares = squares + 2 * shift * total + count * shift * shift  # Σ x²
    return TensorStats(
        name=name,
        shape=tuple(tensor.shape),
        dtype=_dtype_name(tensor),
        numel=count,
        mean=shift + offset,
        std=math.sqrt(variance),
        min=low,
        max=high,
        sparsity=zeros / count,
        norm=math.sqrt(max(sum_of_squares, 0.0)),
        kind=kind,
        also=also,
    )


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def tensor_table(model: nn.Module, *, should_stop: threading.Event | None = None) -> list[TensorStats]:
    """The statistics of every parameter and floating-point buffer of `model`, tied tensors once, in model order.
    Stops early (returning what it has) when `should_stop` is set."""
    table = []
    for name, tensor, kind, also in weight_tensors(model):
        if should_stop is not None and should_stop.is_set():
            break
        table.append(tensor_stats(name, tensor, kind=kind, also=also))
    return table


def find_tensor(model: nn.Module, name: str) -> torch.Tensor:
    """The parameter or buffer of `model` called `name` (any of a tied tensor's names)."""
    tensor = model.state_dict(keep_vars=True).get(name)
    if tensor is None:
        names = ", ".join(list(model.state_dict())[:3])
        raise UserError(f"the model has no tensor named {name!r}; its tensors are named like {names}.", field="name")
    return tensor.detach()


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor as a 2-D float32 matrix: a vector is one row, a tensor of more dimensions keeps its first as rows."""
    if tensor.ndim == 0:
        return tensor.detach().float().reshape(1, 1)
    if tensor.ndim == 1:
        return tensor.detach().float().reshape(1, -1)
    return tensor.detach().float().reshape(tensor.shape[0], -1)


def histogram(
    tensor: torch.Tensor, bins: int = 64, *, low: float | None = None, high: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts): `bins` equal bins from `low` to `high` (the tensor's min and max unless given; values
    outside are not counted); edges has bins + 1 entries."""
    import torch

    if bins < 1:
        raise UserError("a histogram needs at least one bin.", field="bins")
    values = tensor.detach().reshape(-1).float()  # (N,)
    if values.numel() == 0:
        return np.linspace(0.0, 1.0, bins + 1), np.zeros(bins, dtype=np.int64)
    if low is None or high is None:
        smallest, largest = (float(value) for value in torch.aminmax(values))
        low, high = smallest if low is None else low, largest if high is None else high
    if low == high:  # one value: a bin of width 1 around it
        low, high = low - 0.5, high + 0.5
    counts = torch.histc(values, bins=bins, min=low, max=high)  # (bins,)
    return np.linspace(low, high, bins + 1), counts.numpy().astype(np.int64)


def downsample(matrix: torch.Tensor, rows: int, cols: int, *, mode: HeatMode = "abs") -> np.ndarray:
    """The block means of `matrix` (2-D; see as_matrix) on a grid of at most rows × cols: of |w| in "abs" mode,
    of w in "signed" mode. A side shorter than asked keeps its length (nothing is stretched)."""
    import torch

    if mode not in HEAT_MODES:
        raise UserError(f"the heatmap's mode is one of {', '.join(HEAT_MODES)}, not {mode!r}.", field="mode")
    if rows < 1 or cols < 1:
        raise UserError("a heatmap needs at least one row and one column.", field="rows")
    values = as_matrix(matrix)  # (R, C)
    if mode == "abs":
        values = values.abs()
    out_rows, out_cols = min(rows, values.shape[0]), min(cols, values.shape[1])
    with torch.no_grad():
        pooled = torch.nn.functional.adaptive_avg_pool2d(values[None, None], (out_rows, out_cols))  # (1, 1, r, c)
    return pooled[0, 0].numpy()


def top_singular_values(matrix: torch.Tensor, k: int = 16, *, method: str = "gram") -> np.ndarray:
    """The `k` largest singular values of `matrix` (2-D; see as_matrix), largest first.

    "gram" (the default) takes the eigenvalues of the smaller Gram matrix (AᵀA or AAᵀ, one matrix product) in
    float64: the top values to float32 precision, several times faster than an SVD on the CPU
    (bench/bench_weights.py). "full" is torch.linalg.svdvals."""
    import torch

    if k < 1:
        raise UserError("ask for at least one singular value.", field="k")
    values = as_matrix(matrix)  # (R, C)
    with torch.no_grad():
        if method == "full":
            singular = torch.linalg.svdvals(values)
        elif method == "gram":
            gram = (
                values.T @ values if values.shape[0] >= values.shape[1] else values @ values.T
            )  # (m, m), m = min side
            eigen = torch.linalg.eigvalsh(gram.double())  # ascending
            singular = eigen.flip(0).clamp_min(0.0).sqrt()
        else:
            raise UserError(f"the singular values' method is gram or full, not {method!r}.", field="method")
    return singular[:k].numpy().astype(np.float64)
