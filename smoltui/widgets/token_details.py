"""What the Sample screen shows about one token: its top alternatives before and after the samplers (as in
text-generation-webui's logits tab and MAV's panels), or how two models scored it; and the colour scales' legends.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smoltui.engine.token_stats import TokenChoice
from smoltui.formatting import PROBABILITY_BANDS

if TYPE_CHECKING:
    from smoltui.engine.decode_events import TokenGenerated
    from smoltui.screens.sample_jobs import DiffToken

# How much more likely model B finds a token than model A (log p_B − log p_A, nats), as a diverging colour
# scale: warm where B finds it less likely, cool where more, the theme's own text colour where they agree.
# Each band is an upper bound.
DIFF_BANDS: tuple[tuple[float, str, str], ...] = (
    (-2.0, "#e5484d", "≤−2"),
    (-0.5, "#f28e2b", "≤−½"),
    (0.5, "", "±½"),
    (2.0, "#14b8c4", "≤+2"),
    (math.inf, "#4c9be8", ">+2"),
)
CHOSEN_MARK = "▶"


def diff_colour(delta: float | None) -> str:
    """The style of a token whose log-probability under B exceeds A's by `delta` nats ("dim" where unscored)."""
    if delta is None:
        return "dim"
    return next(colour for bound, colour, _ in DIFF_BANDS if delta <= bound)


def probability_legend() -> Text:
    """The probability scale's legend, as `smoltui sample` prints it."""
    parts: list[tuple[str, str] | str] = [("probability", "dim")]
    for _, colour, label in PROBABILITY_BANDS:
        parts += [(" ■", colour), label]
    return Text.assemble(*parts)


def diff_legend() -> Text:
    parts: list[tuple[str, str] | str] = [("B vs A, log p nats", "dim")]
    for _, colour, label in DIFF_BANDS:
        parts += [(" ■", colour or "dim"), label]
    return Text.assemble(*parts, (" (cool: B finds it likelier)", "dim"))


def visible_token(text: str) -> str:
    """A token's text with its spaces and line breaks made visible: "␣Paris", "↵"; "∅" for no text."""
    if not text:
        return "∅"
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")


def percent(probability: float) -> str:
    if probability >= 0.1:
        return f"{probability:.0%}"
    return f"{probability:.1%}" if probability >= 0.001 else f"{probability:.0e}"


def token_panel(index: int, event: TokenGenerated, *, top: int = 20) -> RenderableType:
    """One generated token: its probability, rank and the entropy where it was chosen, then the top `top`
    alternatives with their probability under the model and after the samplers, the chosen one marked."""
    head = Text.assemble(
        (f"token {index + 1} ", "bold"),
        (visible_token(event.text), "bold reverse"),
        "\n",
        f"p {percent(event.probability)} · rank {event.rank} · entropy {event.entropy:.2f} nats",
    )
    if event.forced:
        head.append("\nforced by the JSON schema: not sampled", style="italic")
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=True, show_edge=False)
    table.add_column("", width=1, no_wrap=True)
    table.add_column("token", ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column("raw", justify="right", no_wrap=True)
    table.add_column("sampled", justify="right", no_wrap=True)
    sampled = {choice.token_id: choice.probability for choice in event.top_sampled}
    pruned = len(event.top_sampled) < top  # every token left after the samplers is listed: the rest were cut
    rows = list(event.top_raw[:top])
    if all(choice.token_id != event.token_id for choice in rows):
        rows.append(TokenChoice(event.token_id, event.text, event.probability))  # a rare draw, below the top
    for choice in rows:
        chosen = choice.token_id == event.token_id
        after = sampled.get(choice.token_id)
        after_text = percent(after) if after is not None else ("0%" if pruned else "·")
        table.add_row(
            CHOSEN_MARK if chosen else "",
            visible_token(choice.text),
            percent(choice.probability),
            after_text,
            style="bold" if chosen else "",
        )
    legend = Text("raw: the model's p · sampled: after the samplers", style="dim")
    return Group(head, legend, Text(""), table)


def diff_panel(index: int, token: DiffToken) -> RenderableType:
    """One token of a surprise diff: its probability and rank under both models, and how they differ."""
    lines = Text.assemble((f"token {index + 1} ", "bold"), (visible_token(token.text), "bold reverse"), "\n\n")
    for name, logprob, rank in (("A", token.logprob_a, token.rank_a), ("B", token.logprob_b, token.rank_b)):
        if logprob is None:
            lines.append(f"{name}: not scored (no start token to condition it on)\n")
        else:
            lines.append(f"{name}: p {percent(math.exp(logprob))} · rank {rank} · surprise {-logprob:.2f} nats\n")
    delta = token.delta
    if delta is not None:
        lines.append("\n")
        lines.append(f"{delta:+.2f} nats: B finds it {math.exp(delta):.3g}× as likely as A", style=diff_colour(delta))
    return lines
