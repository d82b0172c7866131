"""What the Lens screen says beside and under its grid: one cell's top tokens with bars, its entropy, KL and the
target's rank (the side panel), and the colour legend of the current mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from smoltui.formatting import probability_colour, visible
from smoltui.lens_look import MARK, LensMode

if TYPE_CHECKING:
    from smoltui.engine.lens import LensGrid

EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(share: float, width: int) -> str:
    """A bar `share` (0..1) of `width` cells long, in eighths of a cell."""
    eighths = round(min(1.0, max(0.0, share)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


def cell_panel(grid: LensGrid, row: int, position: int, *, width: int = 36) -> Text:
    """The side panel for one cell (`width` cells wide): where it is, its top tokens (probability and a bar), and
    its numbers."""
    bar_width = max(3, width - 27)  # after the rank, the token, the probability; before the mark
    token, following = int(grid.token_ids[position]), int(grid.next_ids[position])
    panel = Text.assemble((f"{grid.row_label(row)} · position {position}\n", "bold"))
    panel.append(f"input {visible(grid.text(token))!r}")
    panel.append(f" → next {visible(grid.text(following))!r}\n\n" if following >= 0 else " → next not known yet\n\n")
    tops = zip(grid.top_ids[row, position], grid.top_probs[row, position], strict=True)
    for rank, (top, probability) in enumerate(tops):
        name = repr(visible(grid.text(top)))
        name = name if len(name) <= 12 else name[:11] + "…"
        came_next = int(top) == following
        panel.append(f"{rank + 1:>2} {name:<12} {float(probability):>6.1%} ", "bold" if came_next else "")
        panel.append(bar(float(probability), bar_width), probability_colour(float(probability)))
        panel.append(f" {MARK}\n" if came_next else "\n")
    panel.append(f"\nentropy      {float(grid.entropy[row, position]):.3f} nats\n")
    panel.append(f"KL to final  {float(grid.kl_to_final[row, position]):.3f} nats\n")
    if following >= 0:
        panel.append(f"p(next)      {float(grid.next_prob[row, position]):.2%}\n")
    if grid.target_id is not None and grid.target_rank is not None:
        rank = int(grid.target_rank[row, position]) + 1
        probability = float(grid.target_prob[row, position])
        panel.append(f"target {visible(grid.text(grid.target_id))!r}: rank {rank:,}, p {probability:.2%}\n")
    return panel


def mode_legend(mode: LensMode, *, has_target: bool) -> Text:
    """One line: the mode, its colour bands, and what the mark means."""
    legend = Text.assemble(("m ", "bold"), f"{mode.title}: ")
    if mode.needs_target and not has_target:
        legend.append("set a target token (t) to colour the cells by its rank")
        return legend
    for colour, label in mode.legend():
        legend.append_text(Text.assemble(("■", colour), f" {label} "))
    legend.append(f" {MARK} came next")
    return legend
