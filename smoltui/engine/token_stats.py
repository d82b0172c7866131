"""What a next-token distribution says about one token: probability, rank, entropy and the top alternatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


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


class TokenTexts:
    """Each token id's text on its own, decoded once per id and remembered."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._texts: dict[int, str] = {}

    def get(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self._texts[token_id] = text
        return text


def distribution_stats(logits: torch.Tensor, token_id: int, top_n: int, texts: TokenTexts) -> DistributionStats:
    """Statistics of softmax(`logits`) (V,) float32 for `token_id`, with the `top_n` most probable tokens."""
    import torch

    logprobs = torch.log_softmax(logits, dim=-1)  # (V,)
    probs = logprobs.exp()
    entropy = torch.special.entr(probs).sum()  # entr(0) = 0, so tokens at -inf add nothing
    rank = (logits > logits[token_id]).sum()
    return DistributionStats(
        probability=float(probs[token_id]),
        rank=int(rank),
        entropy=float(entropy),
        top=_top(probs, top_n, texts),
    )


def top_choices(logits: torch.Tensor, top_n: int, texts: TokenTexts) -> tuple[TokenChoice, ...]:
    """The `top_n` most probable tokens of softmax(`logits`), leaving out the impossible ones (-inf logits)."""
    import torch

    return _top(torch.softmax(logits, dim=-1), top_n, texts)


def _top(probs: torch.Tensor, top_n: int, texts: TokenTexts) -> tuple[TokenChoice, ...]:
    import torch

    if top_n == 0:
        return ()
    values, indices = torch.topk(probs, min(top_n, probs.shape[-1]))
    return tuple(
        TokenChoice(token, texts.get(token), probability)
        for probability, token in zip(values.tolist(), indices.tolist(), strict=True)
        if probability > 0.0
    )
