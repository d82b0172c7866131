"""The Attention screen's side panel: per layer, the attention's mean entropy and the hidden state's mean norm, as
bars (MAV's layer panels), the layer on the heatmap marked."""

from __future__ import annotations

import numpy as np
from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"
BAR = 6  # cells per bar


def bar(value: float, high: float, width: int = BAR) -> str:
    """`value` as a bar of `width` cells that is full at `high`, in eighths of a cell."""
    filled = 0 if high <= 0 or not np.isfinite(value) else round(min(1.0, max(0.0, value / high)) * width * 8)
    return ("█" * (filled // 8) + (EIGHTHS[filled % 8] if filled % 8 else "")).ljust(width)


def short_number(value: float) -> str:
    """`value` in at most five characters: 0.16, 77.5, 1.3k, 14.2k."""
    if not np.isfinite(value):
        return "–"
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 100:
        return f"{value:.1f}"
    if abs(value) < 1000:
        return f"{value:.0f}"
    return f"{value / 1000:.1f}k" if abs(value) < 100_000 else f"{value:.0e}"


def layer_panel(entropy: np.ndarray, norms: np.ndarray | None, layer: int) -> Text:
    """Rows of layer index, entropy bar and value (nats), norm bar and value. `entropy` (layers,): each layer's
    attention entropy averaged over heads and queries; `norms` (layers,): each block's output norm averaged over
    positions (None: not measured); `layer` is marked ▶."""
    text = Text()
    text.append(f"{'':4}{'entropy':<{BAR + 6}}{'norm':<{BAR}}\n", "bold")
    high_entropy = float(entropy.max()) if entropy.size else 0.0
    high_norm = float(norms.max()) if norms is not None and norms.size else 0.0
    for index, value in enumerate(entropy.tolist()):
        current = index == layer
        text.append(f"{index:>2}{'▶' if current else ' '} ", "bold reverse" if current else "dim")
        text.append(bar(value, high_entropy), "#5ec962")
        text.append(f" {value:4.2f} ")
        if norms is not None:
            text.append(bar(float(norms[index]), high_norm), "#21918c")
            text.append(f" {short_number(float(norms[index]))}")
        text.append("\n")
    text.rstrip()
    return text
