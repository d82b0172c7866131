"""The streaming decoder: prefill a prompt, then yield one event per token with what the model thought of it.

`decode(model, tokenizer, prompt_ids, ...)` is a generator. It yields `PromptTruncated` first when the prompt
had to be cut to fit the context, then one `TokenGenerated` per token (its text piece, probability, rank,
entropy and the top alternatives before and after the samplers), and last a `DecodeFinished` with the stop
reason and the speed. The caller may stop at any point: breaking out of the loop or closing the generator
frees the KV cache, and a `should_stop` callable (or threading.Event) ends it between tokens with a final
event. Every tensor operation runs under `torch.inference_mode()`, entered per step so no mode leaks into the
caller's code between events (and the generator may be resumed from another thread).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from smoltui.engine.cached_forward import open_cached_forward
from smoltui.engine.decode_events import (
    DecodeConstraint,
    DecodeEvent,
    DecodeFinished,
    PromptTruncated,
    StopReason,
    TokenGenerated,
)
from smoltui.engine.errors import UserError
from smoltui.engine.token_stats import TokenChoice, distribution_stats, first_argmax, top_choices
from smoltui.engine.token_text import IncrementalDetokenizer, TokenTexts

if TYPE_CHECKING:
    import threading

    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from smoltui.engine.sampler_settings import SamplerSettings

__all__ = [
    "DecodeConstraint",
    "DecodeEvent",
    "DecodeFinished",
    "PromptTruncated",
    "StopReason",
    "TokenChoice",
    "TokenGenerated",
    "context_length",
    "decode",
    "eos_token_ids",
]

DEFAULT_TOP_N = 20


def decode(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[int],
    *,
    max_new_tokens: int = 256,
    sampling: SamplerSettings | None = None,
    seed: int | None = None,
    stop_strings: Sequence[str] = (),
    stop_at_eos: bool = True,
    top_n: int = DEFAULT_TOP_N,
    constraint: DecodeConstraint | None = None,
    should_stop: Callable[[], bool] | threading.Event | None = None,
    capture_hidden: bool = False,
    fast: bool = True,
) -> Iterator[DecodeEvent]:
    """Generate up to `max_new_tokens` after `prompt_ids`, yielding events as described in the module docstring.

    `sampling` None (or greedy settings) picks the most probable token, exactly as `model.generate` with
    `do_sample=False`; otherwise the samplers' chain draws from a generator seeded with `seed`. Decoding stops
    at an EOS token (unless `stop_at_eos` is False), as soon as the text contains one of `stop_strings`, after
    `max_new_tokens`, when the model's context is full, when the constraint is done, or when `should_stop`
    says so. `fast=False` forces the model's own forward even where the Llama-family step applies.
    """
    if max_new_tokens < 1:
        raise UserError("max new tokens must be at least 1; raise it.", field="max_new_tokens")
    if top_n < 0:
        raise UserError("the number of alternatives to show cannot be negative; use 0 or more.", field="top_n")
    if any(not stop for stop in stop_strings):
        raise UserError("a stop string cannot be empty; remove the empty one.", field="stop_strings")
    return _decode(
        model,
        tokenizer,
        _prompt_list(prompt_ids, tokenizer),
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        seed=seed,
        stop_strings=tuple(stop_strings),
        eos=frozenset(eos_token_ids(model, tokenizer) if stop_at_eos else ()),
        top_n=top_n,
        constraint=constraint,
        stop_requested=_stop_check(should_stop),
        capture_hidden=capture_hidden,
        fast=fast,
    )


def _decode(
    model, tokenizer, prompt, *, max_new_tokens, sampling, seed, stop_strings, eos, top_n, constraint,
    stop_requested, capture_hidden, fast,
) -> Iterator[DecodeEvent]:  # fmt: skip
    import torch

    context = context_length(model)
    prompt, truncation = fit_prompt(prompt, context, max_new_tokens)
    if truncation is not None:
        yield truncation
    if stop_requested():
        yield _finished("cancelled", None, "", len(prompt), 0, 0.0, 0.0, None, "none")
        return
    capacity = len(prompt) + max_new_tokens - 1  # the last new token is never fed back
    if context is not None:
        capacity = min(capacity, context)
    device = next(model.parameters()).device
    texts = TokenTexts(tokenizer)
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    chooser = _Chooser(model, texts, sampling, seed, eos_token_ids(model, tokenizer), prompt, max_new_tokens)

    started = time.perf_counter()
    with torch.inference_mode():
        forward = open_cached_forward(model, capacity, capture_hidden=capture_hidden, fast=fast)
        logits = forward(torch.tensor(prompt, device=device)).float()  # (1, vocab)
    prefill_s = time.perf_counter() - started
    busy_s, resumed = 0.0, time.perf_counter()
    pieces: list[str] = []
    text = ""
    stop_reason: StopReason | None = None
    found_stop: str | None = None
    try:
        while stop_reason is None:
            if stop_requested():
                stop_reason = "cancelled"
                break
            # Cloned outside inference mode, the caller gets an ordinary tensor it can use anywhere.
            hidden = forward.hidden.clone() if capture_hidden else None
            # Tokens emitted this round, each with the raw logits it was chosen from, and those not yet fed.
            with torch.inference_mode():
                steps, pending, logits = _next_tokens(
                    forward, logits, chooser, constraint, max_new_tokens - len(pieces), capture_hidden, device
                )
                stats = [
                    (
                        token,
                        distribution_stats(raw, token, top_n, texts),
                        _top_sampled(token, forced, processed, texts, top_n),
                    )
                    for token, raw, forced, processed in steps
                ]
            for (token, token_stats, top_sampled), (_, raw, forced, _) in zip(stats, steps, strict=True):
                chooser.observe(token)
                if constraint is not None:
                    constraint.consume(token)
                piece = detokenizer.push(token)
                pieces.append(piece)
                event = TokenGenerated(
                    index=len(pieces) - 1,
                    token_id=token,
                    text=piece,
                    probability=token_stats.probability,
                    rank=token_stats.rank,
                    entropy=token_stats.entropy,
                    top_raw=token_stats.top,
                    top_sampled=token_stats.top if top_sampled is None else top_sampled,
                    forced=forced,
                    hidden=hidden,
                    logits=raw.float().clone() if capture_hidden else None,
                )
                if token in eos:
                    stop_reason = "eos"
                else:
                    text, found_stop = _after_piece(text, piece, stop_strings)
                    if found_stop is not None:
                        stop_reason = "stop_string"
                if stop_reason is None and constraint is not None and constraint.done:
                    stop_reason = "constraint"
                if stop_reason is None and len(pieces) >= max_new_tokens:
                    stop_reason = "max_tokens"
                busy_s += time.perf_counter() - resumed
                yield event
                resumed = time.perf_counter()
                if stop_reason is not None:
                    break
            if stop_reason is None and pending:
                if forward.length + len(pending) > forward.capacity:
                    stop_reason = "context_full"
                else:
                    with torch.inference_mode():
                        logits = forward(torch.tensor(pending, device=device)).float()  # (1, vocab)
        busy_s += time.perf_counter() - resumed
        final_text = _final_text(text, pieces, stop_reason, found_stop)
        yield _finished(
            stop_reason, found_stop, final_text, len(prompt), len(pieces), prefill_s, busy_s, chooser.seed,
            forward.kind,
        )  # fmt: skip
    finally:
        forward.close()


def _next_tokens(forward, logits, chooser, constraint, budget, capture_hidden, device):
    """The tokens of one round: the constraint's forced tokens, or one chosen token.

    Forced tokens go through the model as one chunk, so each one's statistics come from the logits before it;
    with capture_hidden they go one at a time, unfed, as hidden states are kept for the last position only.
    Returns the steps (token, raw logits, forced, processed logits or None), the tokens still to feed, and the
    logits after the last fed token.
    """
    import torch

    forced = list(constraint.forced_tokens()) if constraint is not None else []
    if not forced:
        allowed = constraint.allowed_tokens() if constraint is not None else None
        token, processed = chooser.choose(logits[-1], allowed)
        return [(token, logits[-1], False, processed)], [token], logits
    room = forward.capacity - forward.length
    forced = forced[: min(budget, room + 1, 1 if capture_hidden else len(forced))]
    fed = [] if capture_hidden else forced[:room]
    rows = [logits[-1]]
    if fed:
        rows += list(forward(torch.tensor(fed, device=device), all_logits=True).float())  # T rows of (vocab,)
        logits = rows[-1][None]
    return [(token, rows[i], True, None) for i, token in enumerate(forced)], forced[len(fed) :], logits


def _top_sampled(token, forced, processed, texts, top_n):
    if forced:
        return (TokenChoice(token, texts.get(token), 1.0),)
    return None if processed is None else top_choices(processed, top_n, texts)


class _Chooser:
    """Picks the next token: argmax without samplers, else the samplers' chain with a seeded generator."""

    def __init__(self, model, texts: TokenTexts, sampling, seed, eos_ids, prompt, max_new_tokens) -> None:
        import torch

        self.chain = None
        self.seed = None
        self.generator = None
        device = model.device
        self.history = torch.empty(len(prompt) + max_new_tokens, dtype=torch.int64, device=device)  # (prompt + new,)
        self.history[: len(prompt)] = torch.tensor(prompt, dtype=torch.int64)
        self.length = len(prompt)
        if sampling is not None:
            from smoltui.engine.samplers import SamplerChain

            vocab_size = model.get_output_embeddings().weight.shape[0]
            self.chain = SamplerChain(sampling, vocab_size=vocab_size, eos_token_ids=eos_ids, decode_token=texts.get)
            if not sampling.greedy:
                self.seed = seed if seed is not None else secrets.randbits(62)
                self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def choose(self, logits: torch.Tensor, allowed) -> tuple[int, torch.Tensor | None]:
        """The chosen id, and the logits it was drawn from when they differ from the raw ones (else None)."""
        processed = None if allowed is None else _mask(logits, allowed)
        if self.chain is None:
            return first_argmax(logits if processed is None else processed), processed
        history = self.history[: self.length]
        processed = self.chain.process(history, logits if processed is None else processed, generator=self.generator)
        return int(self.chain.choose(processed, self.generator)), processed

    def observe(self, token_id: int) -> None:
        self.history[self.length] = token_id
        self.length += 1
        if self.chain is not None:
            self.chain.observe(token_id)


def _mask(logits: torch.Tensor, allowed) -> torch.Tensor:
    """`logits` with -inf wherever `allowed` is False; a mask shorter than the logits disallows the rest."""
    import torch

    allowed = torch.as_tensor(allowed, dtype=torch.bool, device=logits.device)[: logits.shape[-1]]
    keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    keep[: allowed.shape[0]] = allowed
    if not keep.any():
        raise ValueError("the constraint allows no token at this position (and forces none)")
    return logits.masked_fill(~keep, float("-inf"))


def _after_piece(text: str, piece: str, stop_strings: tuple[str, ...]) -> tuple[str, str | None]:
    """The text with `piece` added, and the first stop string now in it (searching only where it can begin)."""
    if not stop_strings:
        return text + piece, None
    longest = max(len(stop) for stop in stop_strings)
    start = max(0, len(text) - longest + 1)
    text += piece
    found = [(text.find(stop, start), stop) for stop in stop_strings]
    found = [(at, stop) for at, stop in found if at >= 0]
    return text, min(found)[1] if found else None


def _final_text(text: str, pieces: list[str], stop_reason: StopReason, stop: str | None) -> str:
    if stop_reason == "eos":
        return "".join(pieces[:-1])
    if stop_reason == "stop_string" and stop is not None:
        return text[: text.find(stop)]
    return "".join(pieces)


def _finished(reason, stop, text, prompt_tokens, new_tokens, prefill_s, decode_s, seed, kind) -> DecodeFinished:
    return DecodeFinished(
        stop_reason=reason,
        stop_string=stop,
        text=text,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        prefill_s=prefill_s,
        decode_s=decode_s,
        tokens_per_s=new_tokens / decode_s if decode_s > 0 else 0.0,
        seed=seed,
        forward=kind,
    )


def _prompt_list(prompt_ids: Sequence[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    prompt = [int(token) for token in (prompt_ids.tolist() if hasattr(prompt_ids, "tolist") else prompt_ids)]
    if prompt:
        return prompt
    if tokenizer.bos_token_id is not None:
        return [tokenizer.bos_token_id]
    raise UserError("the prompt is empty and this tokenizer has no start token; type a prompt.", field="prompt")


def fit_prompt(prompt: list[int], context: int | None, max_new_tokens: int) -> tuple[list[int], PromptTruncated | None]:
    """The prompt's most recent tokens that leave room to answer, keeping at least half the context for it."""
    if context is None:
        return prompt, None
    keep = context - min(max_new_tokens, context // 2)
    if len(prompt) <= keep:
        return prompt, None
    message = (
        f"The prompt has {len(prompt)} tokens but this model reads {context} at most, so only its last {keep} "
        f"were kept to leave room for {context - keep} new ones."
    )
    return prompt[-keep:], PromptTruncated(kept_tokens=keep, dropped_tokens=len(prompt) - keep, message=message)


def context_length(model: nn.Module) -> int | None:
    """The most positions the model reads, from its config; None where the config does not say."""
    config = model.config
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def eos_token_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The ids that end a reply: the generation config's (where `generate` stops), the config's, the tokenizer's."""
    found: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(token, int) and token not in found:
                found.append(token)
    return tuple(found)


def _stop_check(should_stop: Callable[[], bool] | threading.Event | None) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    return should_stop.is_set if hasattr(should_stop, "is_set") else should_stop
