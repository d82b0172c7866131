"""How `smoltui lens` and `smoltui attention` draw in a terminal: the lens grid and the attention heatmap as rich
Text lines (coloured for a terminal, plain for a pipe), and both as JSON records for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from smoltui.formatting import PROBABILITY_BANDS, fit_text, probability_colour, visible
from smoltui.heatmap import half_block_rows, heat_levels, shade_row
from smoltui.lens_look import CELL, LABEL

if TYPE_CHECKING:
    from rich.text import Text

    from smoltui.engine.attention import AttentionMaps
    from smoltui.engine.lens import LensGrid

RANK = 8  # the target's rank column


# -- the lens grid ------------------------------------------------------------------------------------------


def lens_lines(grid: LensGrid, width: int, *, colour: bool) -> list[Text]:
    """The grid as lines: the next tokens on top, then the final layer down to the embeddings, then the input
    tokens. Each cell is its top token, its background the probability (colour), marked where it is the token
    that came next (underlined, or a `*` without colour). Only the last positions that fit `width` are drawn."""
    from rich.text import Text

    rank_width = RANK if grid.target_id is not None else 0
    fits = max(1, (width - LABEL - rank_width) // CELL)
    start = max(0, grid.positions - fits)
    shown = grid.columns(start)
    hits = shown.top_is_next

    def tokens_line(label: str, ids, style: str) -> Text:
        line = Text(label.ljust(LABEL))
        line.stylize("bold")
        for token in ids:
            line.append(fit_text(visible(grid.text(token)), CELL - 2).ljust(CELL) if token >= 0 else " " * CELL, style)
        return line

    lines = [tokens_line("next", shown.next_ids, "dim")]
    if grid.target_id is not None:
        lines[0].append("target".rjust(RANK), "bold")
    for row in reversed(range(grid.rows)):
        line = Text(grid.row_label(row).ljust(LABEL))
        line.stylize("bold")
        for position in range(shown.positions):
            token, probability = shown.top_ids[row, position, 0], float(shown.top_probs[row, position, 0])
            text = fit_text(visible(grid.text(token)), CELL - 2)
            if colour:
                style = f"black on {probability_colour(probability)}" + (
                    " bold underline" if hits[row, position] else ""
                )
                line.append(text.ljust(CELL - 1), style)
                line.append(" ")
            else:
                line.append((text + ("*" if hits[row, position] else "")).ljust(CELL))
        if grid.target_rank is not None:
            line.append(f"{int(grid.target_rank[row, -1]):>{RANK},}")
        lines.append(line)
    lines.append(tokens_line("input", shown.token_ids, "dim"))
    return lines


def lens_caption(grid: LensGrid, width: int, *, colour: bool) -> str:
    """One line under the grid: what is drawn, what the marks mean, and the probability scale."""
    fits = max(1, (width - LABEL - (RANK if grid.target_id is not None else 0)) // CELL)
    parts = []
    if grid.positions > fits:
        parts.append(f"the last {fits} of {grid.positions} positions")
    parts.append("underlined: the top token came next" if colour else "*: the top token came next")
    if grid.target_id is not None:
        parts.append(f"target: rank of {grid.text(grid.target_id)!r} at the last position")
    if colour:
        parts.append("probability: " + "  ".join(f"[{shade}]■[/] {label}" for _, shade, label in PROBABILITY_BANDS))
    return "; ".join(parts)


def lens_column_record(grid: LensGrid, position: int) -> dict[str, Any]:
    """One position of the grid as JSON: its token, the token after it, and every layer's view of it."""

    def token(token_id: int) -> dict[str, Any] | None:
        return None if token_id < 0 else {"id": int(token_id), "text": grid.text(token_id)}

    layers = []
    for row in range(grid.rows):
        known = grid.next_ids[position] >= 0
        record = {
            "layer": grid.row_label(row),
            "top": [
                [grid.text(t), float(p)]
                for t, p in zip(grid.top_ids[row, position], grid.top_probs[row, position], strict=True)
            ],
            "entropy": float(grid.entropy[row, position]),
            "kl_to_final": float(grid.kl_to_final[row, position]),
            "next_probability": float(grid.next_prob[row, position]) if known else None,
        }
        if grid.target_rank is not None:
            record["target_rank"] = int(grid.target_rank[row, position])
            record["target_probability"] = float(grid.target_prob[row, position])
        layers.append(record)
    return {
        "position": position,
        "token": token(grid.token_ids[position]),
        "next": token(grid.next_ids[position]),
        "layers": layers,
    }


# -- the attention heatmap ----------------------------------------------------------------------------------


def heatmap_lines(matrix: np.ndarray, tokens: tuple[str, ...], width: int, *, colour: bool) -> list[Text]:
    """A (T, T) attention matrix (query rows, key columns) as lines of text, drawn as smoltui.heatmap draws it.

    With colour: half-block characters, two query rows per line, one column per key; without: one shade
    character per cell, one query per line. Keys after the query stay blank. Keys are labelled above, written
    downwards; queries on the left. The last keys that fit `width` are drawn (with their queries).
    """
    from rich.text import Text

    label_width = 14
    count = len(tokens)
    keep = max(1, min(count, width - label_width))
    matrix, first = matrix[-keep:, -keep:], count - keep
    shown = [visible(token).replace(" ", "·") for token in tokens[first:]]
    levels = heat_levels(matrix)  # (keep, keep)
    lines = []
    for depth in range(min(6, max(len(token) for token in shown))):
        line = Text(" " * label_width, style="dim")
        line.append("".join(token[depth] if depth < len(token) else " " for token in shown), "dim")
        lines.append(line)
    step = 2 if colour else 1
    cells = half_block_rows(levels) if colour else None
    for query in range(0, keep, step):
        names = [f"{first + q}:{fit_text(shown[q], 4)}" for q in range(query, min(query + step, keep))]
        line = Text(fit_text(" ".join(names), label_width - 1).ljust(label_width))
        line.stylize("dim")
        if cells is None:
            line.append(shade_row(levels[query]))
        else:
            for cell in cells[query // 2]:
                line.append(cell.text, cell.style)
        lines.append(line)
    return lines


def attention_record(maps: AttentionMaps, layer: int, head: int | None) -> dict[str, Any]:
    """One layer's weights as JSON: every head (or the one asked for) and the head average, with entropies."""
    weights = maps.layer(layer)  # (heads, T, T)
    index = maps.layers.index(layer)
    heads = range(maps.heads) if head is None else [head]
    return {
        "tokens": [{"id": int(t), "text": text} for t, text in zip(maps.token_ids.tolist(), maps.tokens, strict=True)],
        "layer": layer,
        "heads": [
            {
                "head": h,
                "weights": weights[h].round(6).tolist(),
                "entropy": maps.entropy[index, h].round(6).tolist(),
                "mean_entropy": float(maps.head_entropy[index, h]),
            }
            for h in heads
        ],
        "average": maps.head_average[index].round(6).tolist(),
    }
