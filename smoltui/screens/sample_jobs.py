"""The Sample screen's work on the session's worker: model B of its A/B runs (loaded by the first job that needs
it and kept, or model A tweaked), and the surprise diff of one text under models A and B. Plain code, no textual:
the jobs' events reach the screen through the session like any other job's."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel
    from smoltui.engine.session import JobContext
    from smoltui.engine.tweaks import Tweak

# Model B typed as "tweak: mlp.down_proj=0.01 layers.1=-0.002" (or "tweak mlp=0.01"): model A with the deltas.
TWEAK_SOURCE = re.compile(r"\s*tweak\s*[:\s]\s*(?P<specs>.*)", re.IGNORECASE | re.DOTALL)
TWEAK_HELP = (
    "or tweak: PATTERN=DELTA … for model A with DELTA added to every parameter whose name the regex PATTERN "
    "matches, e.g. tweak: mlp.down_proj=0.01 layers.1=-0.002 (only while sampling, never saved)"
)


@dataclass(frozen=True)
class SecondModelReady:
    """Model B is loaded (or was already): what its column needs to show its tokens."""

    title: str  # what B is: its source as loaded, or "A tweaked: mlp.down_proj +0.01 (2 params)"
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
    and replaced (the old one freed first) when a job asks for another source. A tweak source makes B a copy of
    the session's model with the tweak (`tweaked_copy`: only the tweaked tensors are new), made again when the
    session's model changes."""

    def __init__(self, device: str, workspace: Path) -> None:
        self.device = device
        self.workspace = workspace
        # Read and written by the session's one worker, job after job.
        self._loaded: LoadedModel | None = None
        self._source = ""  # what B was made from, as typed
        self._tweak_base: LoadedModel | None = None  # the model A that B is a tweak of; None for a loaded B
        self._title = ""

    @property
    def loaded(self) -> LoadedModel | None:
        """Model B as the last job left it (None before the first)."""
        return self._loaded

    @property
    def is_tweak(self) -> bool:
        """Whether model B is a tweaked copy of a model A (whose tensors it shares)."""
        return self._tweak_base is not None

    def provider(self, source: str) -> Callable[[JobContext], LoadedModel]:
        """What a session job calls (as `generate(using=...)`) to get model B made from `source`."""
        source = source.strip()
        specs = tweak_specs(source)

        def get(context: JobContext) -> LoadedModel:
            from smoltui.engine.decoder import eos_token_ids

            base = None if specs is None else context.require_model()
            if self._loaded is None or self._source != source or self._tweak_base is not base:
                self._forget()  # the old model B goes before the new one takes its memory
                if specs is None:
                    context.emit(f"loading model B: {source}")
                    self._loaded = _load(source, self.device, self.workspace, context.emit)
                    self._title = self._loaded.source
                else:
                    self._loaded, checked = _tweaked(base, specs)
                    self._title = tweak_title(checked)
                self._source, self._tweak_base = source, base
            loaded = self._loaded
            context.emit(SecondModelReady(self._title, frozenset(eos_token_ids(loaded.model, loaded.tokenizer))))
            return loaded

        return get

    def forget_stale_tweak(self, context: JobContext) -> None:
        """A session job's work: free model B if it is a tweak of a model A that is no longer the session's."""
        if self._tweak_base is not None and self._tweak_base is not context.loaded:
            self._forget()

    def _forget(self) -> None:
        self._loaded, self._source, self._tweak_base, self._title = None, "", None, ""


def tweak_specs(source: str) -> list[str] | None:
    """["mlp=0.01", "layers.1=-0.002"] from "tweak: mlp = 0.01 layers.1=-0.002"; None for any other source."""
    match = TWEAK_SOURCE.fullmatch(source)
    if match is None:
        return None
    return re.sub(r"\s*=\s*", "=", match["specs"]).split()


def tweak_title(checked: Tweak) -> str:
    """Model B's column title for a tweak, as short as a column's border allows, the patterns as typed:
    e.g. "A tweaked: mlp.down_proj +0.01 (2 params), ln_f -0.5 (1 param)"."""
    parts = []
    for pattern, delta in checked.deltas.items():
        count = len(checked.matches[pattern])
        parts.append(f"{pattern} {delta:+g} ({count} {'param' if count == 1 else 'params'})")
    return f"A tweaked: {', '.join(parts)}"


def _tweaked(base: LoadedModel, specs: list[str]) -> tuple[LoadedModel, Tweak]:
    from smoltui.engine.tweaks import parse_tweaks, tweak, tweaked_copy

    deltas = parse_tweaks(specs)
    return tweaked_copy(base, deltas), tweak(base, deltas)


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
