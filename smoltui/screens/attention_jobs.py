"""The Attention screen's work on the session's worker: a prompt's attention maps and activation report, as one
job. Plain code, no textual: the job's events reach the screen through the session like any other job's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from smoltui.engine.activations import Activations
    from smoltui.engine.attention import AttentionMaps
    from smoltui.engine.session import JobContext

# The screen reads at most this many tokens: every layer's weights are kept (SmolLM2's 30 layers × 9 heads × 256²
# float32 is 71 MB, and grows with the square), and the heatmap draws about 110 keys at most anyway.
MAX_TOKENS = 256


@dataclass(frozen=True)
class Inspection:
    """What one compute job found: the attention maps, and the activation report where the family allows it."""

    maps: AttentionMaps
    activations: Activations | None
    note: str = ""  # that the prompt was cut, or why the activations are missing


def inspect_work(prompt: str) -> Callable[[JobContext], Inspection]:
    """A session job's work: the attention maps and activation report of `prompt` on the session's model."""

    def work(context: JobContext) -> Inspection:
        from smoltui.engine.activations import activation_report
        from smoltui.engine.attention import attention_maps
        from smoltui.engine.inspect_prompt import prompt_token_ids

        loaded = context.require_model()
        ids = prompt_token_ids(loaded.tokenizer, prompt)
        notes = []
        if len(ids) > MAX_TOKENS:
            notes.append(f"The prompt has {len(ids)} tokens; the Attention screen reads its last {MAX_TOKENS}.")
            ids = ids[-MAX_TOKENS:]
        maps = attention_maps(loaded.model, loaded.tokenizer, ids)
        if maps.truncation is not None:
            notes.append(maps.truncation.message)
        activations = None
        if not context.cancelled.is_set():
            try:
                activations = activation_report(loaded.model, loaded.tokenizer, maps.token_ids.tolist())
            except UserError as error:
                notes.append(f"No hidden-state norms: {error}")
        return Inspection(maps, activations, " ".join(notes))

    return work
