"""What a next-token distribution says about one token: probability, rank, entropy and the top alternatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from smoltui.engine.token_text import TokenTexts

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TokenChoice:
    """A token the model could have chosen, with its probability."""

    token_id: int
    text: str  # the token decoded on its own (a lone byte of a multi-byte character shows as U+FFFD)
    probability: float


@dataclass(frozen=True)
class DistributionStats:
    probability: float  # of the chosen token
    rank: int  # of the chosen token: how many tokens have a strictly higher logit (0 = the top choice)
    entropy: float  # nats
    top: tuple[TokenChoice, ...]


def distribution_stats(logits: torch.Tensor, token_id: int, top_n: int, texts: TokenTexts) -> DistributionStats:
    """Statistics of softmax(`logits`) (V,) float32 for `token_id`, with the `top_n` most probable tokens."""
    import torch

    logprobs = torch.log_softmax(logits, dim=-1)  # (V,)
    probs = logprobs.exp()
    # -sum(p log p); a token at -inf has p = 0, and the clamp keeps 0 * -inf from turning the sum into NaN.
    entropy = -float(torch.dot(probs, logprobs.clamp_min(torch.finfo(logprobs.dtype).min)))
    return DistributionStats(
        probability=float(probs[token_id]),
        rank=count_above(logits, token_id),
        entropy=entropy,
        top=_top(probs, top_n, texts),
    )


def top_choices(logits: torch.Tensor, top_n: int, texts: TokenTexts) -> tuple[TokenChoice, ...]:
    """The `top_n` most probable tokens of softmax(`logits`), leaving out the impossible ones (-inf logits)."""
    import torch

    return _top(torch.softmax(logits, dim=-1), top_n, texts)


def first_argmax(logits: torch.Tensor) -> int:
    """The first index of the largest value, as `torch.argmax` (and so `generate`) picks it; numpy's is ~15x
    faster on a CPU vocabulary row."""
    import torch

    if logits.device.type == "cpu":
        return int(np.argmax(logits.numpy()))
    return int(torch.argmax(logits))


def count_above(logits: torch.Tensor, token_id: int) -> int:
    """How many entries of `logits` (V,) are strictly larger than the one at `token_id`: its rank, 0 = top."""
    if logits.device.type == "cpu":
        row = logits.numpy()
        return int(np.count_nonzero(row > row[token_id]))
    return int((logits > logits[token_id]).sum())


def top_k(values: torch.Tensor, k: int, width: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(values, k)` for a long 1-D row, in two cheap passes instead of one slow one.

    The row is cut into rows of `width`; every one of the k largest entries lies in a row whose maximum is
    among the k largest row maxima (a row holding one of them has a maximum at least as large), so the k
    largest of those rows' entries are the answer.
    """
    import torch

    k = min(k, values.shape[0])
    rows = values.shape[0] // width
    if rows <= k:
        return torch.topk(values, k)
    best_rows = torch.topk(values[: rows * width].view(rows, width).amax(dim=1), k).indices  # (k,)
    offsets = torch.arange(width, device=values.device)
    candidates = (best_rows[:, None] * width + offsets).flatten()  # (k * width,)
    if values.shape[0] > rows * width:
        tail = torch.arange(rows * width, values.shape[0], device=values.device)
        candidates = torch.cat([candidates, tail])
    top_values, at = torch.topk(values[candidates], k)
    return top_values, candidates[at]


def _top(probs: torch.Tensor, top_n: int, texts: TokenTexts) -> tuple[TokenChoice, ...]:
    if top_n == 0:
        return ()
    values, indices = top_k(probs, top_n)
    return tuple(
        TokenChoice(token, texts.get(token), probability)
        for probability, token in zip(values.tolist(), indices.tolist(), strict=True)
        if probability > 0.0
    )
