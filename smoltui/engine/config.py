"""TrainConfig: every setting of a training run, validated with one sentence per mistake. Imports no torch."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from smoltui.engine.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")
OPTIMIZERS = ("adamw", "muon")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BATCHING = ("random", "sequential")
HOOK_NAMES = ("activation_stats", "clip_per_layer", "freeze", "grad_noise")


@dataclass
class TrainConfig:
    """One training run. Defaults follow the Experimental SLM recipe for `nano-char`."""

    model: str = "nano-char"
    tokenizer: str | None = None  # None: the preset's own, or the folder's
    corpus: str = "builtin:pydocs"
    context: int | None = None  # None: the model's context (capped at 256 for presets)
    batch_size: int = 16
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 5000
    time_budget_s: float | None = None  # stop (with a checkpoint) after this many seconds of training
    lr: float = 3e-4
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    optimizer: str = "adamw"  # "muon": torch's Muon for 2-D hidden weights, AdamW for the rest
    grad_clip: float = 1.0  # 0 turns clipping off
    dropout: float | None = None  # None: the model's own
    precision: str = "auto"  # auto: bf16 autocast on cuda, fp32 on cpu (measured faster there)
    device: str = "auto"
    seed: int = 1337
    batching: str = "random"  # random windows (nanoGPT) or sequential non-overlapping windows
    eval_every: int = 200
    eval_batches: int = 20
    sample_every: int = 200  # 0 turns periodic samples off
    sample_prompt: str = "\n"
    sample_length: int = 200
    temperature: float = 0.8
    checkpoint_every: int = 500
    keep_last: int = 3
    hooks: list[str] = field(default_factory=list)  # e.g. "activation_stats:50", "freeze:transformer.h.0."
    model_overrides: dict[str, Any] = field(default_factory=dict)  # preset numbers, e.g. {"n_layer": 2}
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UserError for the first bad value, naming the field and what it takes."""
        _non_empty("model", self.model)
        _non_empty("corpus", self.corpus)
        if self.context is not None:
            _positive_int("context", self.context)
        _positive_int("batch_size", self.batch_size)
        _positive_int("grad_accum", self.grad_accum)
        _positive_int("max_steps", self.max_steps)
        if self.time_budget_s is not None:
            _positive_number("time_budget_s", self.time_budget_s)
        _positive_number("lr", self.lr)
        if self.min_lr is not None:
            _number("min_lr", self.min_lr)
            if not 0 <= self.min_lr <= self.lr:
                raise UserError(f"min_lr is {self.min_lr:g} but must lie between 0 and lr ({self.lr:g}).")
        _non_negative_int("warmup_steps", self.warmup_steps)
        if self.warmup_steps >= self.max_steps > 1:
            raise UserError(
                f"warmup_steps ({self.warmup_steps}) must be fewer than max_steps ({self.max_steps}); "
                "lower --warmup-steps."
            )
        _choice("schedule", self.schedule, SCHEDULES)
        _non_negative_number("weight_decay", self.weight_decay)
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            _number(name, value)
            if not 0 <= value < 1:
                raise UserError(f"{name} is {value:g} but must be at least 0 and below 1, e.g. 0.9.")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _non_negative_number("grad_clip", self.grad_clip)
        if self.dropout is not None:
            _number("dropout", self.dropout)
            if not 0 <= self.dropout < 1:
                raise UserError(f"dropout is {self.dropout:g} but must be at least 0 and below 1, e.g. 0.1.")
        _choice("precision", self.precision, PRECISIONS)
        _non_empty("device", self.device)
        _non_negative_int("seed", self.seed)
        _choice("batching", self.batching, BATCHING)
        _positive_int("eval_every", self.eval_every)
        _positive_int("eval_batches", self.eval_batches)
        _non_negative_int("sample_every", self.sample_every)
        _positive_int("sample_length", self.sample_length)
        _positive_number("temperature", self.temperature)
        _positive_int("checkpoint_every", self.checkpoint_every)
        _positive_int("keep_last", self.keep_last)
        for spec in self.hooks:
            parse_hook(spec)
        if not isinstance(self.model_overrides, dict):
            raise UserError("model_overrides must be a mapping of config names to numbers, e.g. {'n_layer': 2}.")

    @property
    def effective_min_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def tokens_per_step(self) -> int | None:
        return None if self.context is None else self.batch_size * self.grad_accum * self.context

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from stored or user-given values; unknown keys are a mistake, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}.")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def config_hash(self) -> str:
        """A short stable hash of the settings, recorded with each run so equal configs are recognisable."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_hook(spec: str) -> tuple[str, str | None]:
    """Split "name:argument" and check the name and the argument's form."""
    name, _, argument = spec.partition(":")
    name, argument = name.strip(), argument.strip() or None
    if name not in HOOK_NAMES:
        raise UserError(f"unknown hook {name!r}; known hooks: {', '.join(HOOK_NAMES)}.")
    if name == "freeze" and not argument:
        raise UserError("the freeze hook needs a parameter-name prefix, e.g. freeze:transformer.h.0.")
    if name == "activation_stats" and argument is not None and not (argument.isdigit() and int(argument) > 0):
        raise UserError(f"activation_stats takes a positive step interval, e.g. activation_stats:50, not {argument!r}.")
    if name in ("clip_per_layer", "grad_noise") and argument is not None:
        try:
            value = float(argument)
        except ValueError:
            value = -1.0
        if not value > 0 or not math.isfinite(value):
            raise UserError(f"{name} takes a positive number, e.g. {name}:0.5, not {argument!r}.")
    return name, argument


def _non_empty(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{name} is empty; give a value.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{name} must be a number, not {value!r}.")


def _positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise UserError(f"{name} must be a whole number above 0, not {value!r}.")


def _non_negative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise UserError(f"{name} must be a whole number, 0 or more, not {value!r}.")


def _positive_number(name: str, value: Any) -> None:
    _number(name, value)
    if value <= 0:
        raise UserError(f"{name} must be above 0, not {value!r}.")


def _non_negative_number(name: str, value: Any) -> None:
    _number(name, value)
    if value < 0:
        raise UserError(f"{name} must be 0 or more, not {value!r}.")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name} {value!r} is not one of {', '.join(choices)}.")
