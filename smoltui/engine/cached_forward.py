"""A model's forward pass with its own KV cache: feed tokens, get the next-token logits, one call per chunk.

The decoder and anything else that walks a sequence token by token (forced tokens, the logit lens as it
generates) use `open_cached_forward`: a hand-written step for the Llama-like families (see llama_forward.py)
where it applies, and the model's own Hugging Face forward with a `DynamicCache` for every other family.
Both take token ids, append them to the cache and return logits for the last position (or every fed one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoltui.engine.architecture import model_parts

if TYPE_CHECKING:
    import torch
    from torch import nn


class CachedForward:
    """One sequence's cache over one model. `capacity` positions; `length` of them are filled.

    Call it with token ids (T,) to append them; it returns logits (T or 1, vocab) in the model's dtype. With
    `capture_hidden`, `hidden` then holds the residual stream of the last fed position: the input to the first
    block and the output of every block, (layers + 1, hidden), overwritten by the next call.
    """

    kind = "generic"  # "fast" for the hand-written Llama-family step
    capacity: int
    length: int
    hidden: torch.Tensor | None

    def __call__(self, token_ids: torch.Tensor, *, all_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the cache at once (the garbage collector would too, later)."""
        raise NotImplementedError


class HFCachedForward(CachedForward):
    """The model's own forward with a transformers `DynamicCache`: works for every family the adapter reads."""

    def __init__(self, model: nn.Module, capacity: int, *, capture_hidden: bool = False) -> None:
        from transformers import DynamicCache

        self.model = model
        self.capacity = capacity
        self.length = 0
        self.cache = DynamicCache(config=model.config)
        self.hidden = None
        self._hooks = _hidden_hooks(model, self) if capture_hidden else []

    def __call__(self, token_ids: torch.Tensor, *, all_logits: bool = False) -> torch.Tensor:
        count = token_ids.shape[0]
        if self.length + count > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {self.length} + {count} do not fit")
        output = self.model(
            input_ids=token_ids[None],
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=0 if all_logits else 1,
        )
        self.cache = output.past_key_values
        self.length += count
        return output.logits[0]  # (T or 1, vocab)

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self.cache = None
        self.hidden = None


def _hidden_hooks(model: nn.Module, owner: HFCachedForward) -> list:
    """Hooks that copy the last position's residual stream into `owner.hidden` on every forward."""
    import torch

    parts = model_parts(model)
    layers = len(parts.blocks)

    def keep(index: int, hidden_states) -> None:
        states = hidden_states[0] if isinstance(hidden_states, tuple) else hidden_states  # (B, T, hidden)
        if index == 0:
            owner.hidden = torch.empty(layers + 1, states.shape[-1], dtype=states.dtype, device=states.device)
        owner.hidden[index].copy_(states[0, -1])

    handles = [parts.blocks[0].register_forward_pre_hook(lambda _module, args: keep(0, args[0]))]
    for index, block in enumerate(parts.blocks, start=1):
        handles.append(block.register_forward_hook(lambda _module, _args, output, i=index: keep(i, output)))
    return handles


def open_cached_forward(
    model: nn.Module, capacity: int, *, capture_hidden: bool = False, fast: bool = True
) -> CachedForward:
    """The fastest cached forward that gives `model`'s own results: the Llama-family step where it applies.

    `fast=False` always takes the model's own forward (the reference the fast step is tested against).
    """
    from smoltui.engine.llama_forward import LlamaCachedForward
    from smoltui.engine.llama_weights import fast_path_obstacle

    if fast and fast_path_obstacle(model, capacity) is None:
        return LlamaCachedForward(model, capacity, capture_hidden=capture_hidden)
    return HFCachedForward(model, capacity, capture_hidden=capture_hidden)
