"""SamplerSettings: every sampler's setting with its help and bounds, the presets, and the order. Imports no torch.

The UI and the CLI build their fields and `--options` from `dataclasses.fields(SamplerSettings)`: each field's
metadata holds `help` (one sentence that also says which value turns the sampler off), `option` (the CLI flag),
and its bounds `minimum`/`maximum` (inclusive, None where unbounded) with `minimum_exclusive` for "above".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from smoltui.engine.errors import UserError

# Penalties work on the model's scores and still apply when decoding greedily; the rest shape the distribution
# that a token is drawn from, so greedy decoding skips them.
PENALTY_SAMPLERS = ("repetition_penalty", "presence_penalty", "frequency_penalty", "no_repeat_ngram", "dry")
DISTRIBUTION_SAMPLERS = ("top_n_sigma", "temperature", "top_k", "top_p", "typical_p", "min_p", "mirostat", "xtc")
SAMPLER_NAMES = PENALTY_SAMPLERS + DISTRIBUTION_SAMPLERS

# text-generation-webui's documented order: penalties, DRY, top-n-sigma, temperature, the truncation samplers,
# min-p, mirostat, XTC last (no-repeat-ngram sits with the penalties: it only ever bans).
DEFAULT_ORDER = SAMPLER_NAMES


def _setting(
    default: Any,
    help: str,
    *,
    option: str,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_exclusive: bool = False,
) -> Any:
    metadata = {
        "help": help,
        "option": option,
        "minimum": minimum,
        "maximum": maximum,
        "minimum_exclusive": minimum_exclusive,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SamplerSettings:
    """How the next token is chosen from the model's scores. Every default turns its sampler off.

    Building one validates it (a UserError names the bad field); `replace` returns a validated copy.
    """

    temperature: float = _setting(
        1.0,
        "Divide the scores by this; below 1 is safer, above 1 wilder, 0 picks the likeliest token (greedy).",
        option="--temperature",
        minimum=0.0,
    )
    top_k: int = _setting(0, "Keep only the k likeliest tokens; 0 turns it off.", option="--top-k", minimum=0)
    top_p: float = _setting(
        1.0,
        "Keep the likeliest tokens until their probabilities add up to p (nucleus); 1 turns it off.",
        option="--top-p",
        minimum=0.0,
        maximum=1.0,
    )
    min_p: float = _setting(
        0.0,
        "Drop tokens less likely than min-p times the likeliest token's probability; 0 turns it off.",
        option="--min-p",
        minimum=0.0,
        maximum=1.0,
    )
    typical_p: float = _setting(
        1.0,
        "Keep the tokens whose surprise is closest to the average until they hold this much probability; "
        "1 turns it off.",
        option="--typical-p",
        minimum=0.0,
        maximum=1.0,
        minimum_exclusive=True,
    )
    top_n_sigma: float = _setting(
        0.0,
        "Keep the tokens whose score is within n standard deviations of the best score; 0 turns it off.",
        option="--top-n-sigma",
        minimum=0.0,
    )
    repetition_penalty: float = _setting(
        1.0,
        "Make every token already in the text less likely (above 1) or more likely (below 1); 1 turns it off.",
        option="--repetition-penalty",
        minimum=0.0,
        minimum_exclusive=True,
    )
    repetition_range: int = _setting(
        0,
        "How many of the latest tokens the repetition, presence and frequency penalties look at; "
        "0 looks at the whole text.",
        option="--repetition-range",
        minimum=0,
    )
    presence_penalty: float = _setting(
        0.0,
        "Subtract this from the score of every token already in the text; 0 turns it off.",
        option="--presence-penalty",
    )
    frequency_penalty: float = _setting(
        0.0,
        "Subtract this times the number of times a token is already in the text; 0 turns it off.",
        option="--frequency-penalty",
    )
    no_repeat_ngram: int = _setting(
        0,
        "Forbid any run of this many tokens from appearing twice; 0 turns it off.",
        option="--no-repeat-ngram",
        minimum=0,
    )
    dry_multiplier: float = _setting(
        0.0,
        "DRY: how hard to penalise a token that would continue a repeated passage; 0 turns DRY off.",
        option="--dry-multiplier",
        minimum=0.0,
    )
    dry_base: float = _setting(
        1.75,
        "DRY: the penalty grows by this factor for each token a repeat runs past the allowed length.",
        option="--dry-base",
        minimum=1.0,
    )
    dry_allowed_length: int = _setting(
        2,
        "DRY: a passage may repeat for this many tokens; a token that would make the repeat longer is penalised.",
        option="--dry-allowed-length",
        minimum=1,
    )
    dry_range: int = _setting(
        0,
        "DRY: how many of the latest tokens to search for repeats; 0 searches the whole text.",
        option="--dry-range",
        minimum=0,
    )
    dry_sequence_breakers: tuple[str, ...] = _setting(
        ("\n", ":", '"', "*"),
        "DRY: a repeat never runs across a token that contains one of these strings.",
        option="--dry-sequence-breakers",
    )
    xtc_threshold: float = _setting(
        0.1,
        "XTC: tokens at least this likely count as top choices; above 0.5 XTC can never act.",
        option="--xtc-threshold",
        minimum=0.0,
        maximum=1.0,
        minimum_exclusive=True,
    )
    xtc_probability: float = _setting(
        0.0,
        "XTC: the chance, at each token, of removing every top choice but the least likely one; 0 turns XTC off.",
        option="--xtc-probability",
        minimum=0.0,
        maximum=1.0,
    )
    mirostat_tau: float = _setting(
        0.0,
        "Mirostat 2: the surprise (bits per token) to hold the text at, e.g. 5; 0 turns mirostat off.",
        option="--mirostat-tau",
        minimum=0.0,
    )
    mirostat_eta: float = _setting(
        0.1,
        "Mirostat 2: how fast it corrects toward the target surprise.",
        option="--mirostat-eta",
        minimum=0.0,
        maximum=1.0,
        minimum_exclusive=True,
    )
    banned_tokens: tuple[int, ...] = _setting(
        (), "Token ids that are never chosen (--ban takes token strings or ids).", option="--ban", minimum=0
    )
    ban_eos: bool = _setting(
        False, "Never choose the end-of-text token, so the text runs to its length.", option="--ban-eos"
    )
    order: tuple[str, ...] = _setting(
        DEFAULT_ORDER,
        "The order in which the samplers that are on take their turn (comma-separated names).",
        option="--order",
    )

    def __post_init__(self) -> None:
        for setting in dataclasses.fields(self):
            value = getattr(self, setting.name)
            # Whole numbers are fine where a float is wanted; lists are fine where a tuple is (the CLI gives lists).
            if setting.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, setting.name, float(value))
            elif setting.type.startswith("tuple") and isinstance(value, list):
                object.__setattr__(self, setting.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Raise UserError for the first bad value, naming its field and what it takes."""
        for setting in dataclasses.fields(self):
            value = getattr(self, setting.name)
            if setting.type == "bool":
                if not isinstance(value, bool):
                    raise UserError(
                        f"{_label(setting)} is on or off (true or false), not {value!r}.", field=setting.name
                    )
            elif setting.type in ("int", "float"):
                _check_number(setting, value)
            elif setting.type == "tuple[int, ...]":
                _check_tuple(setting, value, int)
                for item in value:
                    _check_number(setting, item)
            else:
                _check_tuple(setting, value, str)
        if any(not breaker for breaker in self.dry_sequence_breakers):
            raise UserError("dry_sequence_breakers holds an empty string; remove it.", field="dry_sequence_breakers")
        self._check_order()

    def _check_order(self) -> None:
        for name in self.order:
            if name not in SAMPLER_NAMES:
                raise UserError(
                    f"order names an unknown sampler {name!r}; known samplers: {', '.join(SAMPLER_NAMES)}.",
                    field="order",
                )
        if len(set(self.order)) != len(self.order):
            twice = next(name for name in self.order if self.order.count(name) > 1)
            raise UserError(f"order names {twice} twice; name each sampler once.", field="order")
        for name in self.switched_on():
            if name not in self.order:
                raise UserError(
                    f"{name} is switched on but order leaves it out; add it to the order or turn it off.", field="order"
                )

    def replace(self, **changes: Any) -> SamplerSettings:
        """A validated copy with `changes` applied."""
        known = {setting.name for setting in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise UserError(f"unknown sampler setting {name!r}; known settings: {', '.join(sorted(known))}.")
        return dataclasses.replace(self, **changes)

    @property
    def greedy(self) -> bool:
        """Temperature 0: always the likeliest token after the penalties; the other samplers stand aside."""
        return self.temperature == 0

    def switched_on(self) -> tuple[str, ...]:
        """The samplers whose settings turn them on, in SAMPLER_NAMES order (greedy or not)."""
        on = {
            "repetition_penalty": self.repetition_penalty != 1,
            "presence_penalty": self.presence_penalty != 0,
            "frequency_penalty": self.frequency_penalty != 0,
            "no_repeat_ngram": self.no_repeat_ngram > 0,
            "dry": self.dry_multiplier > 0,
            "top_n_sigma": self.top_n_sigma > 0,
            "temperature": self.temperature not in (0, 1),
            "top_k": self.top_k > 0,
            "top_p": self.top_p < 1,
            "typical_p": self.typical_p < 1,
            "min_p": self.min_p > 0,
            "mirostat": self.mirostat_tau > 0,
            "xtc": self.xtc_probability > 0,
        }
        return tuple(name for name in SAMPLER_NAMES if on[name])

    def active_order(self) -> tuple[str, ...]:
        """The samplers that take part, in the order they run: greedy decoding keeps only the penalties."""
        on = self.switched_on()
        return tuple(name for name in self.order if name in on and (name in PENALTY_SAMPLERS or not self.greedy))


def parse_order(text: str) -> tuple[str, ...]:
    """An order as the user types it (comma-separated, `top-p` or `top_p`); checked when the settings are built."""
    return tuple(part.strip().replace("-", "_") for part in text.split(",") if part.strip())


def _label(setting: dataclasses.Field) -> str:
    return f"{setting.name} ({setting.metadata['option']})"


def _check_tuple(setting: dataclasses.Field, value: Any, item_type: type) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(item, item_type) and not isinstance(item, bool) for item in value
    ):
        kind = "whole numbers" if item_type is int else "strings"
        raise UserError(f"{_label(setting)} takes a list of {kind}, not {value!r}.", field=setting.name)


def _check_number(setting: dataclasses.Field, value: Any) -> None:
    whole = setting.type in ("int", "tuple[int, ...]")
    allowed = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
        kind = "a whole number" if whole else "a number"
        raise UserError(f"{_label(setting)} must be {kind}, not {value!r}.", field=setting.name)
    low, high = setting.metadata["minimum"], setting.metadata["maximum"]
    exclusive = setting.metadata["minimum_exclusive"]
    too_low = low is not None and (value <= low if exclusive else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        raise UserError(
            f"{_label(setting)} must be {_bounds(low, high, exclusive)}, not {value!r}.", field=setting.name
        )


def _bounds(low: float | None, high: float | None, exclusive: bool) -> str:
    lower = f"above {low:g}" if exclusive else f"at least {low:g}"
    if high is None:
        return lower
    if exclusive:
        return f"above {low:g} and at most {high:g}"
    return f"between {low:g} and {high:g}"


PRESETS: dict[str, SamplerSettings] = {
    "greedy": SamplerSettings(temperature=0.0),
    "balanced": SamplerSettings(temperature=0.7, top_p=0.9, repetition_penalty=1.1, repetition_range=256),
    "creative": SamplerSettings(
        temperature=1.0, min_p=0.05, dry_multiplier=0.8, xtc_threshold=0.1, xtc_probability=0.5
    ),
}
"""The named starting points that the UI and the CLI offer; PRESET_HELP says what each one is for."""

PRESET_HELP: dict[str, str] = {
    "greedy": "Always the likeliest token: reproducible answers, and the same text as transformers' greedy generate.",
    "balanced": "Everyday chat and completion: mild randomness in the nucleus, a light penalty on recent repeats.",
    "creative": "Stories and brainstorming: full temperature cut by min-p, DRY against loops, XTC against cliches.",
}
