"""What the streaming decoder yields (PromptTruncated, TokenGenerated, DecodeFinished) and what it asks of a
structured-output constraint (DecodeConstraint). Plain data: importing this module imports no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from smoltui.engine.token_stats import TokenChoice

if TYPE_CHECKING:
    import torch

StopReason = Literal["eos", "stop_string", "max_tokens", "context_full", "constraint", "cancelled"]


class DecodeConstraint(Protocol):
    """What the decoder needs from a structured-output constraint (a grammar or JSON-schema matcher).

    Before each token the decoder asks for `forced_tokens()`; when there are some, it emits them without
    sampling (marked forced). Otherwise it keeps only the tokens where `allowed_tokens()` is True (a bool
    array or tensor over the vocabulary, or None for all) and samples among them. Every emitted token, forced
    or sampled, goes to `consume`. Decoding ends when `done` turns True.
    """

    @property
    def done(self) -> bool: ...

    def allowed_tokens(self): ...

    def forced_tokens(self) -> Sequence[int]: ...

    def consume(self, token_id: int) -> None: ...


@dataclass(frozen=True)
class PromptTruncated:
    """The prompt did not fit the model's context with room to answer; only its most recent tokens were kept."""

    kept_tokens: int
    dropped_tokens: int
    message: str  # one sentence for the user


@dataclass(frozen=True)
class TokenGenerated:
    """One token and what the model thought of it when it was chosen."""

    index: int  # 0 for the first new token
    token_id: int
    text: str  # what this token adds to the text: "" while a multi-byte character is still incomplete
    probability: float  # under the model's raw distribution (before samplers and constraint)
    rank: int  # in the raw distribution: 0 is the model's top choice
    entropy: float  # of the raw distribution, in nats
    top_raw: tuple[TokenChoice, ...]  # the top N of the raw distribution, most probable first
    top_sampled: tuple[TokenChoice, ...]  # the top N after the constraint and samplers (what it was drawn from)
    forced: bool  # emitted by the constraint without sampling
    # With capture_hidden: the residual stream at the position whose logits chose this token, (layers + 1,
    # hidden): the first block's input, then every block's output. Final norm and LM head on the last row give
    # this token's raw logits.
    hidden: torch.Tensor | None = None
    # With capture_hidden too: the raw logits (vocab,) float32 this token was chosen from, so a logit lens need
    # not compute the final layer's row again.
    logits: torch.Tensor | None = None


@dataclass(frozen=True)
class DecodeFinished:
    """The last event: why decoding stopped, the text, and how fast it went."""

    stop_reason: StopReason
    stop_string: str | None  # the stop string found, when stop_reason is "stop_string"
    text: str  # the new text, without the EOS token or the stop string and what followed it
    prompt_tokens: int  # after any truncation
    new_tokens: int  # tokens yielded, forced ones included
    prefill_s: float
    decode_s: float  # time spent in the decoder after prefill (not the time the caller held each event)
    tokens_per_s: float  # new tokens per second of decode_s
    seed: int | None  # the sampling seed used (the one given, or the one drawn); None for greedy
    forward: str  # "fast" (the hand-written Llama-family step), "generic" (the model's own), "none" (never ran)


DecodeEvent = PromptTruncated | TokenGenerated | DecodeFinished
