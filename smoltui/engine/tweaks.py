"""Tweaks: temporary changes to a model's weights for sampling, never saved.

A tweak is a set of PARAM=DELTA pairs: DELTA is added to every entry of every parameter whose name PARAM (a
regex, searched in dotted names) matches; a tied weight matched by either of its names gets it once per pattern.
`tweaked(model, deltas)` applies them for the length of a `with` block and puts back the exact weights after
(bit for bit: the originals are copied, not the deltas subtracted), also when the block raises.
`tweaked_copy(loaded, deltas)` gives a second model for an A/B comparison with the same seed: it shares every
untouched tensor with the original, so it costs only the tweaked tensors' memory, and the original stays as is.
`compare_tweak` samples a prompt with one seed from the untouched model and under `tweaked`, with the perplexity of
each on given token ids: what `smoltui tweak` prints.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from smoltui.engine.errors import UserError
from smoltui.engine.weight_selection import matching_parameters

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from smoltui.engine.models import LoadedModel

FIELD = "tweak"


@dataclass(frozen=True)
class Tweak:
    """A checked tweak: the deltas as given and what each pattern matched in the model it was checked against."""

    deltas: dict[str, float]  # pattern → delta, in the order given
    matches: dict[str, tuple[str, ...]]  # pattern → the names of the parameters it matched

    @property
    def summary(self) -> str:
        """One line, e.g. "tweak: +0.01 to 2 parameters matching mlp.down_proj (sampling only)"."""
        parts = [
            f"{delta:+g} to {len(self.matches[pattern])} parameters matching {pattern}"
            for pattern, delta in self.deltas.items()
        ]
        return f"tweak: {'; '.join(parts)} (applied only while sampling)"

    @property
    def details(self) -> dict[str, Any]:
        """JSON-able: the deltas and the matched names, for the history and --json."""
        return {
            "operation": "tweak",
            "deltas": dict(self.deltas),
            "matches": {k: list(v) for k, v in self.matches.items()},
        }


def parse_tweaks(specs: Iterable[str]) -> dict[str, float]:
    """{"mlp.down_proj": 0.01} from ["mlp.down_proj=0.01"]; UserError for a malformed or repeated one."""
    deltas: dict[str, float] = {}
    for spec in specs:
        pattern, equals, value = spec.rpartition("=")
        pattern = pattern.strip()
        if not equals or not pattern:
            raise UserError(f"the tweak {spec!r} is not PARAM=DELTA; write e.g. mlp.down_proj=0.01.", field=FIELD)
        try:
            delta = float(value)
        except ValueError:
            raise UserError(f"the delta in {spec!r} is not a number; write e.g. {pattern}=0.01.", field=FIELD) from None
        if pattern in deltas:
            raise UserError(f"the tweak names {pattern!r} twice; give each pattern once.", field=FIELD)
        deltas[pattern] = delta
    return deltas


def tweak(loaded: LoadedModel, deltas: dict[str, float]) -> Tweak:
    """`deltas` checked against `loaded`'s parameters (the model is not changed); UserError for a bad one."""
    return _checked(loaded.model, deltas)[0]


@contextmanager
def tweaked(model: nn.Module, deltas: dict[str, float]) -> Iterator[Tweak]:
    """Add the deltas to `model`'s matching parameters inside the block; the exact weights come back after."""
    import torch

    checked, targets = _checked(model, deltas)
    originals = [(parameter, parameter.detach().clone()) for parameter, _ in targets]
    try:
        with torch.no_grad():
            for parameter, delta in targets:
                parameter.add_(delta)
        yield checked
    finally:
        with torch.no_grad():
            for parameter, original in originals:
                parameter.copy_(original)


def tweaked_copy(loaded: LoadedModel, deltas: dict[str, float]) -> LoadedModel:
    """A second model with the deltas added, sharing every untouched tensor with `loaded`'s (which stays as is):
    the model B of the Sample screen's A/B, decoded with the same seed as the original."""
    import torch

    model = loaded.model
    _, targets = _checked(model, deltas)
    changed = {id(parameter): parameter for parameter, _ in targets}
    memo: dict[int, Any] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in changed:
            memo[id(tensor)] = tensor  # deepcopy then reuses the tensor itself
    with torch.no_grad():
        for parameter, delta in targets:
            memo[id(parameter)] = torch.nn.Parameter(parameter.detach() + delta, requires_grad=parameter.requires_grad)
    return replace(loaded, model=copy.deepcopy(model, memo))


@dataclass(frozen=True)
class TweakComparison:
    """The untouched model against the tweaked one: the same prompt and seed, the same evaluation tokens."""

    tweak: Tweak
    sample_before: str
    sample_after: str
    perplexity_before: float | None  # None when no evaluation tokens were given
    perplexity_after: float | None
    scored_tokens: int


def compare_tweak(
    loaded: LoadedModel,
    deltas: dict[str, float],
    *,
    prompt: str,
    seed: int,
    max_tokens: int,
    eval_ids: np.ndarray | None = None,
) -> TweakComparison:
    """Sample `prompt` with `seed` (temperature 1, no other sampler) and score `eval_ids` before and under the
    tweak; the model's weights are exactly as they were afterwards."""
    from smoltui.engine.decoder import DecodeFinished, context_length, decode
    from smoltui.engine.sampler_settings import SamplerSettings
    from smoltui.engine.scoring import DEFAULT_WINDOW, perplexity_of_ids

    prompt_ids = list(loaded.tokenizer(prompt)["input_ids"])
    window = min(context_length(loaded.model) or DEFAULT_WINDOW, DEFAULT_WINDOW)

    def sample_and_score() -> tuple[str, float | None, int]:
        sampling = SamplerSettings()
        events = decode(
            loaded.model, loaded.tokenizer, prompt_ids, max_new_tokens=max_tokens, sampling=sampling, seed=seed, top_n=0
        )
        text = [event for event in events if isinstance(event, DecodeFinished)][-1].text
        if eval_ids is None:
            return text, None, 0
        score = perplexity_of_ids(loaded.model, loaded.tokenizer, eval_ids, window=window, stride=window - 1)
        return text, score.perplexity, score.scored_tokens

    checked = tweak(loaded, deltas)
    sample_before, perplexity_before, scored = sample_and_score()
    with tweaked(loaded.model, deltas):
        sample_after, perplexity_after, _ = sample_and_score()
    return TweakComparison(checked, sample_before, sample_after, perplexity_before, perplexity_after, scored)


def _checked(model: nn.Module, deltas: dict[str, float]) -> tuple[Tweak, list[tuple[torch.nn.Parameter, float]]]:
    """The Tweak, and each matched parameter with the sum of the deltas whose patterns match it."""
    if not deltas:
        raise UserError("no tweak given; write one or more PARAM=DELTA, e.g. mlp.down_proj=0.01.", field=FIELD)
    totals: dict[int, tuple[torch.nn.Parameter, float]] = {}
    matches: dict[str, tuple[str, ...]] = {}
    for pattern, delta in deltas.items():
        if isinstance(delta, bool) or not isinstance(delta, int | float) or not math.isfinite(delta):
            raise UserError(f"the delta for {pattern!r} must be a finite number, not {delta!r}.", field=FIELD)
        found = matching_parameters(model, pattern, FIELD)
        matches[pattern] = tuple(name for name, _ in found)
        for _, parameter in found:
            previous = totals.get(id(parameter), (parameter, 0.0))[1]
            totals[id(parameter)] = (parameter, previous + float(delta))
    return Tweak(dict(deltas), matches), list(totals.values())
