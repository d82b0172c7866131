"""How a logit-lens grid's cells look, shared by `smoltui lens` (cli/lens_views) and the Lens screen: their size,
and what colours a cell in each mode (probability, target rank, entropy, KL to the final layer), with the bands a
legend names. Neither torch nor textual here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from smoltui.formatting import PROBABILITY_BANDS

if TYPE_CHECKING:
    from smoltui.engine.lens import LensGrid

CELL = 8  # characters per position in a lens grid: up to 6 of the token, a mark, a space
LABEL = 12  # the row labels' column ("embeddings", "layer 29")
MARK = "•"  # after a cell's token: its top token is the token that came next
# Good to bad, as the probability bands run from ≥80% (blue) down to <1% (red): every mode reads the same way.
GOOD_TO_BAD = tuple(colour for _, colour, _ in reversed(PROBABILITY_BANDS))


@dataclass(frozen=True)
class LensMode:
    """What colours the cells: a value per cell (`values`), cut into bands whose upper bounds are `bounds`."""

    name: str  # the mode key cycles through these: "probability", "target rank", "entropy", "KL to final"
    title: str  # the legend's name for the values
    bounds: tuple[float, ...]  # upper bounds, lowest first: the band of v is the first bound > v (the last is inf)
    labels: tuple[str, ...]
    colours: tuple[str, ...]
    needs_target: bool = False

    def values(self, grid: LensGrid) -> np.ndarray | None:
        """(layers + 1, T) floats, or None when the mode needs a target the grid has not got."""
        if self.name == "probability":
            return grid.top_probs[:, :, 0]
        if self.name == "target rank":
            return None if grid.target_rank is None else grid.target_rank.astype(np.float64)
        if self.name == "entropy":
            return grid.entropy
        return grid.kl_to_final

    def bands(self, values: np.ndarray) -> np.ndarray:
        """The band index of every value (same shape, ints into `colours`)."""
        return np.searchsorted(np.asarray(self.bounds[:-1]), values, side="right")

    def legend(self) -> list[tuple[str, str]]:
        """(colour, label) pairs, in the bands' order."""
        return list(zip(self.colours, self.labels, strict=True))


INF = float("inf")
LENS_MODES: tuple[LensMode, ...] = (
    LensMode(
        "probability",
        "probability",
        tuple(bound for bound, _, _ in PROBABILITY_BANDS[:-1]) + (INF,),
        tuple(label for _, _, label in PROBABILITY_BANDS),
        tuple(colour for _, colour, _ in PROBABILITY_BANDS),
    ),
    LensMode(
        "target rank",
        "target rank",
        (1, 10, 100, 1_000, 10_000, INF),
        ("top", "<10", "<100", "<1k", "<10k", "≥10k"),
        GOOD_TO_BAD,
        needs_target=True,
    ),
    LensMode(
        "entropy",
        "entropy (nats)",
        (0.5, 1.0, 2.0, 3.0, 5.0, INF),
        ("<0.5", "<1", "<2", "<3", "<5", "≥5"),
        GOOD_TO_BAD,
    ),
    LensMode(
        "KL to final",
        "KL to final (nats)",
        (0.1, 0.5, 1.0, 2.0, 5.0, INF),
        ("<0.1", "<0.5", "<1", "<2", "<5", "≥5"),
        GOOD_TO_BAD,
    ),
)
MODES_BY_NAME = {mode.name: mode for mode in LENS_MODES}
