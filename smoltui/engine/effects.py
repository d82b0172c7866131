"""The effect of an operation on a model: perplexity, size, decoding speed and a sample, before and after it.

Bounded so it takes seconds on a CPU: perplexity is scored on at most `eval_tokens` tokens of the dataset's
validation split (its last 5%, split as the trainer splits it) in windows that overlap by one token, and one
greedy decode of `sample_tokens` tokens from a fixed prompt gives both the sample and the tokens/s. Parameters
and bytes count each tensor once, so tied embeddings are not counted twice. Imports torch only inside `measure`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from smoltui.engine.models import LoadedModel

# The numbers an effect compares, in the order tables show them.
METRICS = ("perplexity", "params", "bytes", "tokens_per_s")
METRIC_LABELS = {"perplexity": "perplexity", "params": "parameters", "bytes": "bytes", "tokens_per_s": "tokens/s"}


@dataclass(frozen=True)
class EvalSettings:
    """What a measurement is taken with; two measurements compare only when these agree."""

    dataset: str  # a corpus source, as read_corpus takes it
    eval_tokens: int  # at most this many validation tokens are scored; 0 skips perplexity
    prompt: str  # the sample's prompt
    sample_tokens: int  # the sample's length, which is also the decode that tokens/s is measured on

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], dataset: str) -> EvalSettings:
        """From the workbench's settings (see workbench.SETTINGS) and the dataset it requires."""
        return cls(dataset, settings["eval_tokens"], settings["prompt"], settings["sample_tokens"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Measurement:
    """One model measured; the evaluated fields are None when only its tensors were counted."""

    params: int  # unique parameters
    bytes: int  # unique parameters and buffers, in memory
    perplexity: float | None = None
    scored_tokens: int = 0
    tokens_per_s: float | None = None  # of the greedy sample, its prefill left out
    sample: str | None = None
    basis: dict[str, Any] | None = None  # EvalSettings.to_json() of the evaluation, None when not evaluated

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Measurement:
        return cls(**{key: data.get(key) for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class Effect:
    """A model before and after an operation; `before` is None where the operation started from no model."""

    before: Measurement | None
    after: Measurement

    def delta(self, metric: str) -> float | None:
        """after minus before for one of METRICS; None where either side lacks it."""
        if self.before is None:
            return None
        old, new = getattr(self.before, metric), getattr(self.after, metric)
        if old is None or new is None:
            return None
        return new - old

    def to_json(self) -> dict[str, Any]:
        return {
            "before": None if self.before is None else self.before.to_json(),
            "after": self.after.to_json(),
            "delta": {metric: self.delta(metric) for metric in METRICS},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Effect:
        before = data.get("before")
        return cls(None if before is None else Measurement.from_json(before), Measurement.from_json(data["after"]))


def measure(
    loaded: LoadedModel,
    settings: EvalSettings | None,
    *,
    workspace: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Measurement:
    """Count the model's tensors and, with `settings`, score the validation tokens and decode the sample."""
    from smoltui.engine.models import summarize

    say = progress or (lambda _message: None)
    summary = summarize(loaded.model)
    if settings is None:
        return Measurement(summary.total_params, summary.bytes)
    perplexity, scored = None, 0
    if settings.eval_tokens > 0:
        say(f"scoring up to {settings.eval_tokens:,} validation tokens of {settings.dataset}")
        ids = validation_ids(settings.dataset, loaded.tokenizer, settings.eval_tokens, workspace)
        perplexity, scored = _perplexity(loaded, ids, say)
    say(f"decoding {settings.sample_tokens} tokens")
    sample, tokens_per_s = _greedy_sample(loaded, settings.prompt, settings.sample_tokens)
    return Measurement(
        params=summary.total_params,
        bytes=summary.bytes,
        perplexity=perplexity,
        scored_tokens=scored,
        tokens_per_s=tokens_per_s,
        sample=sample,
        basis=settings.to_json(),
    )


def validation_ids(
    dataset: str, tokenizer, eval_tokens: int, workspace: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The first `eval_tokens` tokens of the dataset's validation split, tokenised through the workspace's cache."""
    from smoltui.engine.data import read_corpus, tokenize_corpus
    from smoltui.engine.workspace import cache_dir, open_workspace

    corpus = read_corpus(dataset)
    tokenized = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(open_workspace(workspace), "tokens"))
    ids = tokenized.val[:eval_tokens]
    if len(ids) < 2:
        raise UserError(
            f"the validation split of {dataset} (its last 5%) has {len(ids)} tokens, too few to score; "
            "set a longer dataset with `smoltui set dataset FILE`.",
            field="dataset",
        )
    return ids


def _perplexity(loaded: LoadedModel, ids: np.ndarray, say: Callable[[str], None]) -> tuple[float, int]:
    from smoltui.engine.decoder import context_length
    from smoltui.engine.scoring import DEFAULT_WINDOW, perplexity_of_ids

    window = min(context_length(loaded.model) or DEFAULT_WINDOW, DEFAULT_WINDOW)
    # Windows that overlap by one token score each token once at about the cost of reading it once; the
    # perplexity is that of the text read in pieces of `window`, the same before and after an operation.
    score = perplexity_of_ids(
        loaded.model,
        loaded.tokenizer,
        ids,
        window=window,
        stride=window - 1,
        on_batch=lambda scored, total: say(f"scored {scored:,} of {total:,} validation tokens"),
    )
    perplexity = score.perplexity
    return (perplexity if math.isfinite(perplexity) else float("inf")), score.scored_tokens


def _greedy_sample(loaded: LoadedModel, prompt: str, tokens: int) -> tuple[str, float]:
    """The greedy continuation of `prompt` (end-of-text does not stop it) and the decoding speed."""
    from smoltui.engine.decoder import DecodeFinished, decode

    prompt_ids = list(loaded.tokenizer(prompt)["input_ids"])
    # A first short decode pays the one-off costs (lazy initialisation, compiling the fast step), so that the
    # speed compares the model before with the model after rather than a cold start with a warm one.
    for max_new_tokens in (2, tokens):
        events = decode(
            loaded.model, loaded.tokenizer, prompt_ids, max_new_tokens=max_new_tokens, stop_at_eos=False, top_n=0
        )
        finished = [event for event in events if isinstance(event, DecodeFinished)][-1]
    return finished.text, finished.tokens_per_s
