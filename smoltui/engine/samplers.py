"""SamplerChain: from the model's scores for the next position to a chosen token, through the samplers switched on.

The decoder calls, for each new token: `process(history, logits)` (penalties and truncation, -inf where a token
is removed), `choose(processed, generator)` (argmax when greedy, else one draw), then `observe(token)` (mirostat's
feedback). Use one chain per generated text: mirostat's state lives in it. The settings live in sampler_settings,
which imports no torch (the CLI and the first frame read them); they are re-exported here for the decoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from smoltui.engine.errors import UserError
from smoltui.engine.sampler_settings import (
    DEFAULT_ORDER,
    PRESET_HELP,
    PRESETS,
    SAMPLER_NAMES,
    SamplerSettings,
    parse_order,
)

__all__ = [
    "DEFAULT_ORDER",
    "PRESETS",
    "PRESET_HELP",
    "SAMPLER_NAMES",
    "SamplerChain",
    "SamplerSettings",
    "parse_banned",
    "parse_order",
]

NEG_INF = float("-inf")
LN2 = math.log(2.0)
# DRY counts a repeat up to this many tokens: the penalty is already astronomical well before, and the backward
# search over the history stays bounded however long the model has been looping.
DRY_MAX_MATCH = 64
# Top-p and typical-p look at this many candidates first (a partial top-k, not a sort of the whole vocabulary),
# and eight times more until the cut falls inside them.
FIRST_CANDIDATES = 64


class _Position:
    """What the samplers share at one position: the history, the penalties' window of it, and its token counts."""

    def __init__(self, history: torch.Tensor, repetition_range: int, vocab_size: int, generator) -> None:
        self.history = history  # (T,)
        self.window = history[-repetition_range:] if repetition_range else history  # (W,)
        self.generator = generator
        self._vocab_size = vocab_size
        self._counts: torch.Tensor | None = None

    def counts(self) -> torch.Tensor:
        """How often each token occurs in the window (computed once, for presence and frequency together)."""
        if self._counts is None:
            counts = torch.bincount(self.window, minlength=self._vocab_size)
            self._counts = counts[: self._vocab_size]  # (V,) ids past the model's vocabulary dropped
        return self._counts


class SamplerChain:
    """The samplers that `settings` switches on, in their order, for a model with `vocab_size` scores a position.

    `eos_token_ids` are what `ban_eos` bans. `decode_token` turns an id into its text, so DRY can tell which
    tokens contain a sequence breaker; without it no token breaks a repeat.
    """

    def __init__(
        self,
        settings: SamplerSettings,
        *,
        vocab_size: int,
        eos_token_ids: Sequence[int] = (),
        decode_token: Callable[[int], str] | None = None,
    ) -> None:
        self.settings = settings
        self.vocab_size = vocab_size
        for token_id in settings.banned_tokens:
            if token_id >= vocab_size:
                raise UserError(
                    f"banned token id {token_id} is outside the model's vocabulary of {vocab_size} tokens; "
                    f"ban ids below {vocab_size}.",
                    field="banned_tokens",
                )
        banned = set(settings.banned_tokens)
        if settings.ban_eos:
            banned.update(token_id for token_id in eos_token_ids if 0 <= token_id < vocab_size)
        self._banned = torch.tensor(sorted(banned), dtype=torch.long)
        self._decode_token = decode_token
        self._breaks: torch.Tensor | None = None  # (V + 1,) whether each token contains a DRY sequence breaker
        self._breaks_known: torch.Tensor | None = None  # (V + 1,) whether that token has been decoded yet
        self._mu = 2 * settings.mirostat_tau  # mirostat's running cap on surprise, in bits (Basu et al.: 2·tau)
        self._last_output: torch.Tensor | None = None
        self._stages = [getattr(self, f"_apply_{name}") for name in settings.active_order()]
        self._mirostat_on = "mirostat" in settings.active_order()
        s = settings
        self._temperature = TemperatureLogitsWarper(s.temperature) if "temperature" in s.active_order() else None
        self._top_k = TopKLogitsWarper(s.top_k) if s.top_k > 0 else None
        self._min_p = MinPLogitsWarper(s.min_p) if s.min_p > 0 else None
        repetition_on = s.repetition_penalty != 1
        self._repetition = RepetitionPenaltyLogitsProcessor(s.repetition_penalty) if repetition_on else None
        self._no_repeat = NoRepeatNGramLogitsProcessor(s.no_repeat_ngram) if s.no_repeat_ngram > 0 else None

    def process(
        self, history: torch.Tensor, logits: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The scores after bans and every sampler that is on, -inf where a token was removed; inputs untouched.

        `history` (T,) int64 holds every token so far, prompt included; `logits` (V,) the model's raw scores.
        `generator` drives XTC's roll (one uniform draw a position while XTC is on): pass the one given to
        `choose` so that a seed reproduces the whole text.
        """
        if logits.shape != (self.vocab_size,):
            raise ValueError(f"expected logits of shape ({self.vocab_size},), got {tuple(logits.shape)}")
        scores = logits.float()  # (V,) the same tensor when it is float32 already; no stage writes in place
        if self._banned.numel():
            scores = scores.index_fill(0, self._banned.to(scores.device), NEG_INF)
        position = _Position(history, self.settings.repetition_range, self.vocab_size, generator)
        for apply in self._stages:
            scores = apply(scores, position)
        if scores is logits:
            scores = scores.clone()  # the caller may write into what it gets back
        self._last_output = scores
        return scores

    def choose(self, logits: torch.Tensor, generator: torch.Generator | None) -> int:
        """The next token from `process`'s output: the first argmax when greedy, else a draw from its softmax."""
        best = float(logits.max())
        if math.isnan(best):
            raise ValueError("the scores hold NaN: the model's output is broken, not the sampler settings")
        if best == NEG_INF:
            raise UserError(
                "every token was removed by the bans and samplers at this position; "
                "ban fewer tokens or lower --no-repeat-ngram."
            )
        if self.settings.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits, dim=0)  # (V,)
        cumulative = torch.cumsum(probs, dim=0, dtype=torch.float64)  # (V,)
        target = _uniform(generator, logits.device) * float(cumulative[-1])
        # The first token whose cumulative probability passes the target; a removed token never does.
        return int((cumulative <= target).sum())

    def observe(self, token_id: int) -> None:
        """Tell the chain which token was taken: mirostat moves its cap by the surprise it brought."""
        if not self._mirostat_on or self._last_output is None:
            return
        scores = self._last_output
        surprise = float(torch.logsumexp(scores, dim=0) - scores[token_id]) / LN2  # bits, under what was sampled
        if math.isfinite(surprise):  # a token forced from outside the distribution (a grammar's) teaches nothing
            self._mu -= self.settings.mirostat_eta * (surprise - self.settings.mirostat_tau)

    # The samplers: each takes scores (V,) and returns new scores (V,), never writing into the ones it got.

    def _apply_repetition_penalty(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return self._repetition(position.window[None], scores[None])[0]

    def _apply_presence_penalty(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return scores - self.settings.presence_penalty * (position.counts() > 0)

    def _apply_frequency_penalty(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return scores - self.settings.frequency_penalty * position.counts()

    def _apply_no_repeat_ngram(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return self._no_repeat(position.history[None], scores[None])[0]

    def _apply_dry(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        """DRY (p-e-w): penalise each token that would continue a passage already in the text.

        For every earlier copy of the last token, count how far the text before it matches the text before the
        end (stopping at a sequence breaker); the token that followed that copy would extend a repeat of that
        length L, and L >= allowed_length costs it multiplier·base^(L − allowed_length) (the largest, when
        several copies point to one token). Breaker tokens themselves are never penalised.
        """
        s = self.settings
        window = position.history[-s.dry_range :] if s.dry_range else position.history
        size = window.shape[0]
        if size < 2:
            return scores
        ids = window.clamp(max=self.vocab_size)  # (W,) ids past the vocabulary share one spare slot
        breaks = self._breaker_mask(ids)  # (W,)
        if breaks[-1]:
            return scores
        starts = torch.nonzero(ids[:-1] == ids[-1]).squeeze(1)  # (M,) earlier copies of the last token
        if starts.numel() == 0:
            return scores
        lengths = torch.ones_like(starts)  # (M,) each copy matches the last token itself
        matching = torch.ones_like(starts, dtype=torch.bool)  # (M,)
        for back in range(1, min(DRY_MAX_MATCH, size)):
            earlier = starts - back
            inside = earlier >= 0
            earlier = earlier.clamp(min=0)
            matching = matching & inside & (ids[earlier] == ids[size - 1 - back]) & ~breaks[earlier]
            if not matching.any():
                break
            lengths += matching
        followers = ids[starts + 1]  # (M,)
        penalised = (lengths >= s.dry_allowed_length) & ~breaks[starts + 1]
        if not penalised.any():
            return scores
        excess = (lengths[penalised] - s.dry_allowed_length).double()
        penalties = (s.dry_multiplier * s.dry_base**excess).float()
        per_token = torch.zeros(self.vocab_size + 1, dtype=scores.dtype, device=scores.device)
        per_token = per_token.scatter_reduce(0, followers[penalised], penalties, reduce="amax")  # (V + 1,)
        return scores - per_token[: self.vocab_size]

    def _breaker_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """(W,) whether each id's text contains a sequence breaker; each id is decoded once, when first seen."""
        breakers = self.settings.dry_sequence_breakers
        if self._decode_token is None or not breakers:
            return torch.zeros_like(ids, dtype=torch.bool)
        if self._breaks is None:
            self._breaks = torch.zeros(self.vocab_size + 1, dtype=torch.bool, device=ids.device)
            self._breaks_known = torch.zeros(self.vocab_size + 1, dtype=torch.bool, device=ids.device)
            self._breaks_known[self.vocab_size] = True
        fresh = torch.unique(ids[~self._breaks_known[ids]])
        for token_id in fresh.tolist():
            text = self._decode_token(token_id)
            self._breaks[token_id] = any(breaker in text for breaker in breakers)
        self._breaks_known[fresh] = True
        return self._breaks[ids]

    def _apply_top_n_sigma(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        """Top-nσ (Tang et al. 2024): keep scores within n population standard deviations of the best one.

        The deviation is taken over the scores still in play; the result does not depend on temperature.
        """
        finite = scores[torch.isfinite(scores)]  # (F,)
        cutoff = finite.max() - self.settings.top_n_sigma * finite.std(correction=0)
        return scores.masked_fill(scores < cutoff, NEG_INF)

    def _apply_temperature(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return self._temperature(position.history[None], scores[None])[0]

    def _apply_top_k(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return self._top_k(position.history[None], scores[None])[0]

    def _apply_top_p(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        """Keep each token whose likelier tokens hold less than top_p (transformers' rule), the likeliest always."""
        top_p = self.settings.top_p
        probs = torch.softmax(scores, dim=0)  # (V,)
        count = min(FIRST_CANDIDATES, self.vocab_size)
        while True:
            top_probs, top_ids = torch.topk(probs, count)  # (count,) likeliest first
            cumulative = torch.cumsum(top_probs, dim=0)  # (count,)
            if cumulative[-1] >= top_p or count == self.vocab_size:
                break
            count = min(count * 8, self.vocab_size)
        kept = top_ids[: min(int((cumulative < top_p).sum()) + 1, count)]
        processed = torch.full_like(scores, NEG_INF)
        processed[kept] = scores[kept]
        return processed

    def _apply_typical_p(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        """Typical sampling (Meister et al.), as transformers' TypicalLogitsWarper, without sorting the vocabulary."""
        log_probs = torch.log_softmax(scores, dim=0)  # (V,)
        probs = log_probs.exp()
        entropy = -(log_probs * probs).nansum()
        distance = (-log_probs - entropy).abs()  # (V,) how far each token's surprise is from the average
        mass = self.settings.typical_p
        count = min(FIRST_CANDIDATES, self.vocab_size)
        while True:
            nearest, order = torch.topk(distance, count, largest=False)  # (count,) most typical first
            cumulative = torch.cumsum(probs[order], dim=0)  # (count,)
            if cumulative[-1] >= mass or count == self.vocab_size:
                break
            count = min(count * 8, self.vocab_size)
        cutoff = nearest[min(int((cumulative < mass).sum()), count - 1)]
        removed = distance > cutoff
        removed[order[0]] = False
        return scores.masked_fill(removed, NEG_INF)

    def _apply_min_p(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        return self._min_p(position.history[None], scores[None])[0]

    def _apply_mirostat(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        """Mirostat 2 (Basu et al. 2021): remove tokens more surprising than mu bits; `observe` steers mu to tau."""
        log_probs = torch.log_softmax(scores, dim=0)  # (V,)
        removed = log_probs < -self._mu * LN2
        removed[torch.argmax(log_probs)] = False
        return scores.masked_fill(removed, NEG_INF)

    def _apply_xtc(self, scores: torch.Tensor, position: _Position) -> torch.Tensor:
        """XTC (p-e-w): with xtc_probability, remove every token at least xtc_threshold likely but the least likely.

        It acts only when two or more tokens reach the threshold, so one viable choice always stays.
        """
        if _uniform(position.generator, scores.device) >= self.settings.xtc_probability:
            return scores
        probs = torch.softmax(scores, dim=0)  # (V,)
        top_choices = probs >= self.settings.xtc_threshold
        if int(top_choices.sum()) < 2:
            return scores
        least_likely = torch.argmin(probs.masked_fill(~top_choices, math.inf))
        top_choices[least_likely] = False
        return scores.masked_fill(top_choices, NEG_INF)


def _uniform(generator: torch.Generator | None, device: torch.device) -> float:
    """One uniform draw in [0, 1) from `generator` (torch's default one for `device` when None)."""
    where = generator.device if generator is not None else device
    return float(torch.rand((), generator=generator, dtype=torch.float64, device=where))


def parse_banned(specs: Iterable[str], tokenizer: Any) -> tuple[int, ...]:
    """Token ids for `--ban` values: digits are an id, anything else is a token's exact text (" Paris" with its space).

    A text that the tokenizer splits into several tokens is refused with the split, so the user can pick a piece.
    """
    vocab_size = len(tokenizer)
    ids: list[int] = []
    for spec in specs:
        if not spec:
            raise UserError("--ban got an empty value; give a token's text or its id.", field="banned_tokens")
        if spec.isascii() and spec.isdigit():
            token_id = int(spec)
            if token_id >= vocab_size:
                raise UserError(
                    f"--ban {spec} is outside the tokenizer's {vocab_size} tokens; give an id below {vocab_size}.",
                    field="banned_tokens",
                )
        else:
            encoded = tokenizer.encode(spec, add_special_tokens=False)
            if len(encoded) != 1:
                pieces = " | ".join(repr(tokenizer.decode([piece])) for piece in encoded)
                raise UserError(
                    f"--ban {spec!r} is {len(encoded)} tokens ({pieces}), not one; ban one piece at a time.",
                    field="banned_tokens",
                )
            token_id = encoded[0]
            if token_id == tokenizer.unk_token_id and spec != tokenizer.unk_token:
                raise UserError(f"--ban {spec!r} is not in the tokenizer's vocabulary.", field="banned_tokens")
        ids.append(token_id)
    return tuple(dict.fromkeys(ids))
