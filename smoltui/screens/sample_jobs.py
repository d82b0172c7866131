"""The Sample screen's work on the session's worker: model B of its A/B runs (loaded by the first job that needs
it and kept), and the surprise diff of one text under models A and B. Plain code, no textual: the jobs' events
reach the screen through the session like any other job's."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel
    from smoltui.engine.session import JobContext


@dataclass(frozen=True)
class SecondModelReady:
    """Model B is loaded (or was already): what its column needs to show its tokens."""

    source: str
    eos_ids: frozenset[int]


@dataclass(frozen=True)
class DiffToken:
    """One token of a text scored by both models: its log-probability under each (None where unscored)."""

    text: str
    logprob_a: float | None
    logprob_b: float | None
    rank_a: int | None
    rank_b: int | None

    @property
    def delta(self) -> float | None:
        """How much more likely model B finds the token than model A, in nats (log p_B − log p_A)."""
        if self.logprob_a is None or self.logprob_b is None:
            return None
        return self.logprob_b - self.logprob_a


@dataclass(frozen=True)
class SurpriseDiff:
    tokens: tuple[DiffToken, ...]
    perplexity_a: float
    perplexity_b: float

    def surprises(self) -> dict[str, list[float]]:
        """Each model's surprise (−log p, nats) per token, NaN where unscored."""
        return {
            "A": [math.nan if t.logprob_a is None else -t.logprob_a for t in self.tokens],
            "B": [math.nan if t.logprob_b is None else -t.logprob_b for t in self.tokens],
        }


class SecondModel:
    """Model B: loaded on the session's worker by the first job that asks for its source, kept for the next ones,
    and replaced (the old one freed first) when a job asks for another source."""

    def __init__(self, device: str, workspace: Path) -> None:
        self.device = device
        self.workspace = workspace
        self._loaded: LoadedModel | None = None  # read and written by the session's one worker, job after job

    @property
    def loaded(self) -> LoadedModel | None:
        """Model B as the last job left it (None before the first)."""
        return self._loaded

    def provider(self, source: str) -> Callable[[JobContext], LoadedModel]:
        """What a session job calls (as `generate(using=...)`) to get model B loaded from `source`."""
        source = source.strip()

        def get(context: JobContext) -> LoadedModel:
            from smoltui.engine.decoder import eos_token_ids

            if self._loaded is None or self._loaded.source != source:
                self._loaded = None  # the old model B goes before the new one takes its memory
                context.emit(f"loading model B: {source}")
                self._loaded = _load(source, self.device, self.workspace, context.emit)
            loaded = self._loaded
            context.emit(SecondModelReady(loaded.source, frozenset(eos_token_ids(loaded.model, loaded.tokenizer))))
            return loaded

        return get


def _load(source: str, device: str, workspace: Path, progress: Callable[[str], None]) -> LoadedModel:
    from transformers.utils import logging as transformers_logging

    from smoltui.engine.models import load_model

    transformers_logging.disable_progress_bar()  # its bars would write over the screen; steps come as events
    transformers_logging.set_verbosity_error()
    return load_model(source, device=device, workspace=workspace, progress=progress)


def surprise_diff_work(text: str, second: Callable[[JobContext], LoadedModel]) -> Callable[[JobContext], SurpriseDiff]:
    """A session job's work: score `text` under the session's model (A) and model B, token by token."""

    def work(context: JobContext) -> SurpriseDiff:
        from smoltui.engine.scoring import score_text, surprise_diff

        first = context.require_model()
        other = second(context)
        score_a = score_text(first.model, first.tokenizer, text)
        if context.cancelled.is_set():
            return SurpriseDiff((), float("nan"), float("nan"))
        score_b = score_text(other.model, other.tokenizer, text)
        surprise_diff(score_a, score_b)  # refuses two tokenizations of the text in one sentence
        tokens = tuple(
            DiffToken(a.text, a.logprob, b.logprob, a.rank, b.rank)
            for a, b in zip(score_a.tokens, score_b.tokens, strict=True)
        )
        return SurpriseDiff(tokens, score_a.perplexity, score_b.perplexity)

    return work
