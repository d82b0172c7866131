"""Scoring a text: the log-probability and rank of each of its tokens under a model, its perplexity, and the
"surprise diff" between two models that share a tokenizer.

A text longer than the model's context is read in overlapping windows (each token is scored once, with up to
`window - stride` tokens of context carried over from the window before), and windows of equal length go
through the model in batches bounded by `batch_tokens`. `perplexity_of_ids` reads the same windows but keeps
only the summed cross-entropy: no ranks, no per-token records, no detokenising, for evaluations on many tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.decoder import context_length
from smoltui.engine.errors import UserError
from smoltui.engine.token_text import IncrementalDetokenizer

if TYPE_CHECKING:
    import numpy as np
    from torch import nn
    from transformers import PreTrainedTokenizerBase

DEFAULT_WINDOW = 1024  # at most; a model with a shorter context uses its own
DEFAULT_BATCH_TOKENS = 2048  # positions per forward: bounds the (batch, window, vocab) logits in memory


@dataclass(frozen=True)
class TokenScore:
    token_id: int
    text: str  # what this token adds to the text
    logprob: float | None  # natural log; None for a first token with no start token to condition it on
    rank: int | None  # how many tokens the model found more likely (0 = its top choice); None with logprob


@dataclass(frozen=True)
class TextScore:
    tokens: tuple[TokenScore, ...]
    total_logprob: float  # sum over the scored tokens
    scored_tokens: int

    @property
    def mean_nll(self) -> float:
        """Mean negative log-likelihood per scored token (nats), the log of the perplexity."""
        return -self.total_logprob / self.scored_tokens if self.scored_tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_nll) if self.scored_tokens else float("nan")


def score_text(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> TextScore:
    """Score every token of `text` (see the module docstring). The tokenizer's start token, when it has one,
    conditions the first token; without one the first token is not scored."""
    if not text:
        raise UserError("there is no text to score; type or load some.", field="text")
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return score_ids(model, tokenizer, ids, window=window, stride=stride, batch_tokens=batch_tokens)


def score_ids(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    ids: Sequence[int],
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> TextScore:
    """`score_text` for token ids already made."""
    import torch

    window, stride = _window_and_stride(model, window, stride)
    bos = tokenizer.bos_token_id
    sequence = ([bos] if bos is not None else []) + [int(token) for token in ids]
    offset = len(sequence) - len(ids)  # 1 when a start token leads
    logprobs = [None] * len(sequence)
    ranks = [None] * len(sequence)
    device = next(model.parameters()).device
    spans = _windows(len(sequence), window, stride)
    with torch.inference_mode():
        for batch in _batches(spans, max(1, batch_tokens)):
            inputs = torch.tensor([sequence[begin:end] for begin, end, _ in batch], device=device)  # (B, T)
            logits = model(input_ids=inputs).logits.float()  # (B, T, vocab)
            for row, (begin, end, first) in enumerate(batch):
                targets = inputs[row, first - begin :]  # (scored,)
                predicted = logits[row, first - begin - 1 : end - begin - 1]  # (scored, vocab)
                chosen = predicted.gather(-1, targets[:, None])  # (scored, 1)
                token_logprobs = chosen[:, 0] - torch.logsumexp(predicted, dim=-1)
                token_ranks = (predicted > chosen).sum(-1)
                logprobs[first:end] = token_logprobs.tolist()
                ranks[first:end] = token_ranks.tolist()
    detokenizer = IncrementalDetokenizer(tokenizer)
    tokens = tuple(
        TokenScore(token, detokenizer.push(token), logprobs[offset + i], ranks[offset + i])
        for i, token in enumerate(ids)
    )
    scored = [token.logprob for token in tokens if token.logprob is not None]
    return TextScore(tokens=tokens, total_logprob=float(sum(scored)), scored_tokens=len(scored))


@dataclass(frozen=True)
class PerplexityScore:
    """The loss of a token sequence, without per-token records."""

    total_nll: float  # natural log, summed over the scored tokens
    scored_tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.total_nll / self.scored_tokens) if self.scored_tokens else float("nan")


def perplexity_of_ids(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    ids: Sequence[int] | np.ndarray,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    on_batch: Callable[[int, int], None] | None = None,
) -> PerplexityScore:
    """The perplexity `score_ids` gives for the same ids, windows and start token, from the loss alone.

    `on_batch(scored, total)` is called after each batch of windows (to show progress, or to stop by raising)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    window, stride = _window_and_stride(model, window, stride)
    bos = tokenizer.bos_token_id
    device = next(model.parameters()).device
    ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))  # (N,)
    sequence = torch.cat([torch.tensor([bos]), ids]) if bos is not None else ids  # (L,)
    sequence = sequence.to(device)
    spans = _windows(len(sequence), window, stride)
    to_score = sum(end - first for _, end, first in spans)
    total_nll, scored = 0.0, 0
    with torch.inference_mode():
        for batch in _batches(spans, max(1, batch_tokens)):
            inputs = torch.stack([sequence[begin:end] for begin, end, _ in batch])  # (B, T)
            logits = model(input_ids=inputs).logits  # (B, T, vocab)
            for row, (begin, end, first) in enumerate(batch):
                predicted = logits[row, first - begin - 1 : end - begin - 1].float()  # (scored, vocab)
                targets = inputs[row, first - begin :]  # (scored,)
                total_nll += F.cross_entropy(predicted, targets, reduction="sum").item()
                scored += end - first
            if on_batch is not None:
                on_batch(scored, to_score)
    return PerplexityScore(total_nll, scored)


def surprise_diff(first: TextScore, second: TextScore) -> list[float | None]:
    """Per token, how much more surprised `second` is than `first` (nats: first's logprob minus second's).

    Both must score the same tokens, i.e. come from models that share a tokenizer.
    """
    if [token.token_id for token in first.tokens] != [token.token_id for token in second.tokens]:
        raise UserError("the two models tokenize this text differently; compare models that share a tokenizer.")
    return [
        None if a.logprob is None or b.logprob is None else a.logprob - b.logprob
        for a, b in zip(first.tokens, second.tokens, strict=True)
    ]


def _window_and_stride(model: nn.Module, window: int | None, stride: int | None) -> tuple[int, int]:
    window = _window(model, window)
    stride = stride or max(1, window // 2)
    if not 0 < stride < window:
        raise UserError(
            f"the stride must be at least 1 and less than the window ({window}); change it.", field="stride"
        )
    return window, stride


def _window(model: nn.Module, window: int | None) -> int:
    context = context_length(model)
    if window is None:
        return min(context or DEFAULT_WINDOW, DEFAULT_WINDOW)
    if window < 2 or (context is not None and window > context):
        limit = f" and at most the model's context ({context})" if context else ""
        raise UserError(f"the scoring window must be at least 2{limit}; change it.", field="window")
    return window


def _windows(length: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) per window; each position from 1 on is scored by exactly one."""
    spans = []
    scored_to = 1  # position 0 has nothing before it
    begin = 0
    while scored_to < length:
        end = min(begin + window, length)
        spans.append((begin, end, scored_to))
        scored_to = end
        begin += stride
    return spans


def _batches(spans: list[tuple[int, int, int]], batch_tokens: int) -> list[list[tuple[int, int, int]]]:
    """Consecutive windows of one length, at most `batch_tokens` positions per batch (one window at least)."""
    batches: list[list[tuple[int, int, int]]] = []
    for span in spans:
        length = span[1] - span[0]
        last = batches[-1] if batches else None
        if last and last[0][1] - last[0][0] == length and (len(last) + 1) * length <= batch_tokens:
            last.append(span)
        else:
            batches.append([span])
    return batches
