"""The prompt an inspection (lens, attention, activations) reads: its token ids, cut to fit the model's context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: str | Sequence[int]) -> list[int]:
    """The ids of `prompt` (text through the tokenizer, as the Sample screen does, or ids as they are)."""
    ids = list(tokenizer(prompt)["input_ids"]) if isinstance(prompt, str) else [int(token) for token in prompt]
    if ids:
        return ids
    if tokenizer.bos_token_id is not None:
        return [tokenizer.bos_token_id]
    raise UserError("the prompt is empty and this tokenizer has no start token; type a prompt.", field="prompt")


def fit_to_context(model: nn.Module, ids: list[int], new_tokens: int = 0) -> tuple[list[int], PromptTruncated | None]:
    """The prompt's most recent tokens that fit the context, leaving room for `new_tokens` as the decoder does."""
    from smoltui.engine.decoder import context_length, fit_prompt

    context = context_length(model)
    if new_tokens:
        return fit_prompt(ids, context, new_tokens)
    if context is None or len(ids) <= context:
        return ids, None
    message = (
        f"The prompt has {len(ids)} tokens but this model reads {context} at most, so only its last {context} "
        "were kept."
    )
    return ids[-context:], PromptTruncated(kept_tokens=context, dropped_tokens=len(ids) - context, message=message)
