"""Attention weights of a prompt: every layer's heads, query by key, with each row's entropy and the head average.

SDPA and flash attention return no weights, so the trace switches the model to transformers' eager attention
for one forward pass and back to what it was loaded with (`eager_attention`). Eager is each family's own
reference implementation, so whatever it does before the softmax (Gemma 2's softcap, sliding windows, grouped
query heads, ALiBi) is in the weights; recomputing softmax(q·kᵀ) from captured queries and keys would have to
redo all of that per family. The switch costs nothing measurable at screen sizes (bench/bench_lens.py). Families
whose attention predates transformers' switchable implementations (Falcon) compute weights when asked with
`output_attentions`, which the trace then passes. The weights are read by forward hooks on the chosen layers'
attention modules only, so a long prompt holds one layer's (heads, T, T) at a time beyond what is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from smoltui.engine.architecture import model_parts
from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class AttentionMaps:
    """Attention weights of some layers of a model on a sequence.

    `weights[i, head, query, key]` is how much position `query` attends to position `key` in block
    `layers[i]`: each row sums to one, and keys after the query are zero (causal).
    """

    token_ids: np.ndarray  # (T,) int64
    tokens: tuple[str, ...]  # (T,) each position's token text
    layers: tuple[int, ...]  # the block indices held, in order
    weights: np.ndarray  # (len(layers), heads, T, T) float32
    entropy: np.ndarray  # (len(layers), heads, T) float32: each query row's entropy, nats
    truncation: PromptTruncated | None = None  # set when the prompt was cut to fit the context

    @property
    def heads(self) -> int:
        return self.weights.shape[1]

    @property
    def head_average(self) -> np.ndarray:
        """(len(layers), T, T): the weights averaged over heads."""
        return self.weights.mean(axis=1)

    @property
    def head_entropy(self) -> np.ndarray:
        """(len(layers), heads): each head's entropy averaged over its query rows (how spread out it looks)."""
        return self.entropy.mean(axis=2)

    def layer(self, block: int) -> np.ndarray:
        """(heads, T, T): the weights of block `block` (which must be one of `layers`)."""
        return self.weights[self.layers.index(block)]


def check_layer_and_head(model: nn.Module, layer: int | None, head: int | None) -> None:
    """UserError (field "layer" or "head") for an index the model does not have."""
    layers = len(model_parts(model).blocks)
    if layer is not None and not 0 <= layer < layers:
        raise UserError(f"layer {layer} does not exist; this model has layers 0 to {layers - 1}.", field="layer")
    heads = model.config.get_text_config(decoder=True).num_attention_heads
    if head is not None and not 0 <= head < heads:
        raise UserError(f"head {head} does not exist; this model has heads 0 to {heads - 1}.", field="head")


def attention_maps(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[int],
    *,
    layers: Sequence[int] | None = None,
) -> AttentionMaps:
    """The attention weights of `prompt` (text or ids) in `layers` (block indices; every layer when None).

    A prompt longer than the context keeps its most recent tokens and says so in `truncation`. For the current
    generation, pass the prompt's ids followed by the generated ones.
    """
    import torch

    from smoltui.engine.inspect_prompt import fit_to_context, prompt_token_ids
    from smoltui.engine.token_text import TokenTexts

    parts = model_parts(model)
    chosen = tuple(range(len(parts.blocks))) if layers is None else tuple(layers)
    for layer in chosen:
        check_layer_and_head(model, layer, None)
    ids, truncation = fit_to_context(model, prompt_token_ids(tokenizer, prompt))
    kept: dict[int, torch.Tensor] = {}

    def keeper(layer: int):
        def keep(_module, _args, output) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError(f"{type(_module).__name__} returned no attention weights under eager attention")
            kept[layer] = weights[0].float()  # (heads, T, T)

        return keep

    handles = [parts.attentions[layer].register_forward_hook(keeper(layer)) for layer in sorted(set(chosen))]
    try:
        with eager_attention(model) as ask_for_weights, torch.inference_mode():
            input_ids = torch.tensor([ids], device=parts.embed_tokens.weight.device)  # (1, T)
            parts.base_model(input_ids=input_ids, output_attentions=ask_for_weights, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    weights = torch.stack([kept[layer] for layer in chosen])  # (layers, heads, T, T)
    if float(torch.triu(weights, diagonal=1).abs().max()) > 1e-6:  # a causal LM never looks ahead
        raise UserError(f"not supported yet: the attention weights of {parts.family} come out non-causal.")
    entropy = torch.special.entr(weights).sum(-1)  # (layers, heads, T)
    texts = TokenTexts(tokenizer)
    return AttentionMaps(
        token_ids=np.asarray(ids, dtype=np.int64),
        tokens=tuple(texts.get(token) for token in ids),
        layers=chosen,
        weights=weights.cpu().numpy(),
        entropy=entropy.cpu().numpy(),
        truncation=truncation,
    )


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[bool]:
    """Run `model` with transformers' eager attention inside, as loaded afterwards.

    Yields whether the forward must also pass `output_attentions=True`: for the families that cannot switch
    through `set_attn_implementation` (Falcon), whose attention computes weights only when asked and whose mask
    follows the config (so the config says eager too, or an SDPA-style mask would be added to the scores). The
    switch changes the model for every caller, so it belongs on the model session's one worker thread, like
    every other job on the model.
    """
    loaded_with = model.config._attn_implementation
    switchable = model._can_set_attn_implementation()
    if loaded_with == "eager":
        yield not switchable
        return
    if switchable:
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    try:
        yield not switchable
    finally:
        if switchable:
            model.set_attn_implementation(loaded_with)
        else:
            model.config._attn_implementation = loaded_with
