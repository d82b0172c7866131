"""TrainConfig: every setting of a training run, declared once with its help, bounds and place in the form.

Each field carries a `Setting` (its help sentence, form section, CLI flags, bounds or choices); `smoltui train`'s
options and the dashboard's new-run form are both generated from them, and `validate()` checks every value from
the same bounds, raising a UserError that names the field. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from smoltui.engine.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")
OPTIMIZERS = ("adamw", "muon")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BATCHING = ("random", "sequential")
HOOK_NAMES = ("activation_stats", "clip_per_layer", "freeze", "grad_noise")

# The one rule for the context of a run that does not set one: the model's positions, capped here, since a
# longer context costs memory and time on a laptop CPU and a preset such as smollm2-135m has 8192 positions.
DEFAULT_CONTEXT_CAP = 1024
# The one rule for an unset warmup: a small fraction of the run (nanoGPT-like), at most DEFAULT_WARMUP_STEPS.
DEFAULT_WARMUP_STEPS = 100
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class Setting:
    """How one TrainConfig field reads to a person: help, place in the form, CLI flags, and its bounds."""

    help: str  # one sentence: the option's help in `smoltui train --help` and the form field's tooltip
    section: str  # the form section that holds it
    label: str = ""  # the form's label (default: the name with spaces)
    flags: tuple[str, ...] = ()  # CLI option names (default: --the-name)
    unset: str = ""  # for optional settings: what leaving it empty means, shown in the empty field and --help
    placeholder: str = ""  # an example for a text field
    minimum: float | None = None  # inclusive lower bound
    above: float | None = None  # exclusive lower bound
    below: float | None = None  # exclusive upper bound
    choices: tuple[str, ...] = ()
    example: str = ""  # a good value, quoted when a value is out of range
    blank_ok: bool = False  # a text that may be empty or only whitespace (a prompt)
    in_form: bool = True  # False for a switch only the CLI offers on purpose (trust_remote_code)
    # Filled in from the field itself when the class is built:
    name: str = ""
    kind: str = ""  # "text", "choice", "int", "float", "list", "mapping", "flag"
    optional: bool = False  # None is allowed: the model's own value, or the rule in `unset`
    default: Any = None

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)


def setting(default: Any, help: str, section: str, **details: Any) -> Any:
    """A TrainConfig field with its Setting (mutable defaults are copied per instance)."""
    meta = {"setting": Setting(help, section, **details)}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


MODEL_AND_DATA = "Model and data"
BATCHES = "Batches and length"
OPTIMIZER = "Optimizer"
EVALUATION = "Evaluation and samples"
HARDWARE = "Hardware"
CHECKPOINTS = "Checkpoints and hooks"


@dataclass
class TrainConfig:
    """One training run. Defaults follow the Experimental SLM recipe for `nano-char`."""

    # -- model and data
    model: str = setting(
        "nano-char",
        "The model to train: a preset (nano-char, smollm2-135m, gpt2-small, tiny), a folder, a Hub id or "
        "run:<id>[@step].",
        MODEL_AND_DATA,
        flags=("--model", "--preset"),
        placeholder="preset, folder, Hub id or run:<id>",
    )
    tokenizer: str | None = setting(
        None,
        "char, bpe:N (trained on the corpus), or a tokenizer folder or Hub id.",
        MODEL_AND_DATA,
        unset="the model's own",
    )
    corpus: str = setting(
        "builtin:pydocs",
        "What to train on: a .txt/.md file, a folder of them, a .jsonl with a text field, or builtin:pydocs.",
        MODEL_AND_DATA,
        placeholder="a .txt/.md/.jsonl file, a folder, builtin:pydocs",
    )
    context: int | None = setting(
        None,
        "Tokens per training window.",
        MODEL_AND_DATA,
        unset=f"the model's positions, at most {DEFAULT_CONTEXT_CAP}",
        minimum=1,
    )
    model_overrides: dict[str, Any] = setting(
        {},
        "Change a preset's config numbers, e.g. --set n_layer=2 (repeatable).",
        MODEL_AND_DATA,
        label="overrides",
        flags=("--set",),
        placeholder="e.g. n_layer=2, n_embd=64",
    )
    trust_remote_code: bool = setting(
        False, "Allow a model folder's own Python code to run.", MODEL_AND_DATA, in_form=False
    )
    # -- batches and length
    batch_size: int = setting(16, "Sequences per micro-batch.", BATCHES, minimum=1)
    grad_accum: int = setting(1, "Micro-batches per optimizer step.", BATCHES, minimum=1)
    max_steps: int = setting(5000, "Optimizer steps to train for.", BATCHES, minimum=1)
    time_budget_s: float | None = setting(
        None,
        "Stop with a checkpoint after this many seconds of training.",
        BATCHES,
        label="time budget (s)",
        flags=("--time-budget",),
        unset="none",
        above=0,
    )
    batching: str = setting(
        "random", "random windows (nanoGPT) or sequential non-overlapping windows.", BATCHES, choices=BATCHING
    )
    seed: int = setting(1337, "Random seed of the weights, the batches and the samples.", BATCHES, minimum=0)
    # -- optimizer
    optimizer: str = setting(
        "adamw", "adamw, or muon: Muon for 2-D hidden weights, AdamW for the rest.", OPTIMIZER, choices=OPTIMIZERS
    )
    lr: float = setting(3e-4, "Peak learning rate.", OPTIMIZER, above=0)
    min_lr: float | None = setting(None, "Final learning rate of the schedule.", OPTIMIZER, unset="lr / 10", minimum=0)
    warmup_steps: int | None = setting(
        None,
        "Steps of linear warmup.",
        OPTIMIZER,
        unset=f"{WARMUP_FRACTION:.0%} of max steps, at most {DEFAULT_WARMUP_STEPS}",
        minimum=0,
    )
    schedule: str = setting("cosine", "Learning-rate decay after warmup.", OPTIMIZER, choices=SCHEDULES)
    weight_decay: float = setting(0.1, "AdamW weight decay of the weight matrices.", OPTIMIZER, minimum=0)
    beta1: float = setting(0.9, "Adam beta1.", OPTIMIZER, minimum=0, below=1)
    beta2: float = setting(0.95, "Adam beta2.", OPTIMIZER, minimum=0, below=1)
    grad_clip: float = setting(1.0, "Clip the gradient norm to this; 0 turns clipping off.", OPTIMIZER, minimum=0)
    dropout: float | None = setting(
        None,
        "Dropout rate of every dropout in the model.",
        OPTIMIZER,
        unset="the model's own",
        minimum=0,
        below=1,
        example="0.1",
    )
    # -- evaluation and samples
    eval_every: int = setting(200, "Validate every N steps.", EVALUATION, minimum=1)
    eval_batches: int = setting(20, "Validation batches per evaluation.", EVALUATION, minimum=1)
    sample_every: int = setting(200, "Sample every N steps; 0 turns periodic samples off.", EVALUATION, minimum=0)
    sample_prompt: str = setting(
        "\n", r"Prompt for the samples (\n and \t stand for a newline and a tab).", EVALUATION, blank_ok=True
    )
    sample_length: int = setting(200, "Tokens per sample.", EVALUATION, minimum=1)
    temperature: float = setting(0.8, "Sampling temperature of the samples.", EVALUATION, above=0)
    # -- hardware
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps.", HARDWARE, placeholder="auto, cpu, cuda, mps")
    precision: str = setting(
        "auto", "auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, bf16 or fp16.", HARDWARE, choices=PRECISIONS
    )
    nproc_per_node: int = setting(
        1,
        "Processes on this machine for data-parallel training under torchrun (one per GPU, or CPU processes).",
        HARDWARE,
        label="processes",
        minimum=1,
    )
    # -- checkpoints and hooks
    checkpoint_every: int = setting(500, "Save a checkpoint every N steps.", CHECKPOINTS, minimum=1)
    keep_last: int = setting(3, "Checkpoints to keep, besides the best by val loss.", CHECKPOINTS, minimum=1)
    hooks: list[str] = setting(
        [],
        f"Enable a hook (repeatable): {', '.join(HOOK_NAMES)}, e.g. activation_stats:50.",
        CHECKPOINTS,
        flags=("--hook",),
        placeholder="e.g. activation_stats:50, freeze:transformer.h.0.",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UserError for the first bad value, naming the field and what it takes."""
        for spec in SETTINGS.values():
            check_setting(spec, getattr(self, spec.name))
        if self.min_lr is not None and self.min_lr > self.lr:
            raise UserError(f"min_lr is {self.min_lr:g} but must lie between 0 and lr ({self.lr:g}).", field="min_lr")
        if self.warmup_steps is not None and self.warmup_steps >= self.max_steps > 1:
            raise UserError(
                f"warmup_steps ({self.warmup_steps}) must be fewer than max_steps ({self.max_steps}); "
                "lower --warmup-steps or leave it unset.",
                field="warmup_steps",
            )
        for spec in self.hooks:
            parse_hook(spec)

    @property
    def effective_min_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def effective_warmup_steps(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(DEFAULT_WARMUP_STEPS, int(self.max_steps * WARMUP_FRACTION))

    def context_for(self, model_positions: int | None) -> int:
        """The context this run trains with, given the model's positions (None where its config does not say)."""
        if self.context is None:
            if model_positions is None:
                raise UserError("this model does not say how many positions it has; pass --context.", field="context")
            return min(model_positions, DEFAULT_CONTEXT_CAP)
        if model_positions is not None and self.context > model_positions:
            raise UserError(
                f"context {self.context} is longer than the model's {model_positions} positions; "
                f"pass --context {model_positions} or less.",
                field="context",
            )
        return self.context

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from stored or user-given values; unknown keys are a mistake, not silently dropped."""
        unknown = sorted(set(values) - SETTINGS.keys())
        if unknown:
            raise UserError(f"unknown training setting {unknown[0]!r}; known settings: {', '.join(sorted(SETTINGS))}.")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def config_hash(self) -> str:
        """A short stable hash of the settings, recorded with each run so equal configs are recognisable."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _describe_settings() -> dict[str, Setting]:
    """Each field's Setting, completed with its name, kind and whether it may be None, in declaration order."""
    hints = typing.get_type_hints(TrainConfig)
    described = {}
    for item in dataclasses.fields(TrainConfig):
        spec: Setting = item.metadata["setting"]
        annotation = hints[item.name]
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        base = typing.get_origin(annotation) or annotation
        if optional:
            base = arguments[0]
        kind = {bool: "flag", int: "int", float: "float", list: "list", dict: "mapping"}.get(base, "text")
        if spec.choices:
            kind = "choice"
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        described[item.name] = dataclasses.replace(spec, name=item.name, kind=kind, optional=optional, default=default)
    return described


SETTINGS: dict[str, Setting] = _describe_settings()


def sections() -> list[tuple[str, list[Setting]]]:
    """The form's sections in order, each with its settings (the CLI-only ones left out)."""
    grouped: dict[str, list[Setting]] = {}
    for spec in SETTINGS.values():
        if spec.in_form:
            grouped.setdefault(spec.section, []).append(spec)
    return list(grouped.items())


# -- checking one value -------------------------------------------------------------------------------------


def check_setting(spec: Setting, value: Any) -> None:
    """Raise UserError (naming the field) when `value` does not fit the setting's type, bounds or choices."""
    name = spec.name
    if value is None and spec.optional:
        return
    if spec.kind == "flag":
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, not {value!r}.", field=name)
    elif spec.kind == "text":
        if not isinstance(value, str) or not (value.strip() or spec.blank_ok):
            raise UserError(f"{name} is empty; give a value.", field=name)
    elif spec.kind == "choice":
        if value not in spec.choices:
            raise UserError(f"{name} {value!r} is not one of {', '.join(spec.choices)}.", field=name)
    elif spec.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not _in_bounds(spec, value):
            raise UserError(f"{name} must be {_whole_number_rule(spec)}, not {value!r}.", field=name)
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"{name} must be a number, not {value!r}.", field=name)
        if not _in_bounds(spec, value):
            raise UserError(_number_bounds_sentence(spec, value), field=name)
    elif spec.kind == "list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise UserError(f"{name} must be a list of names, not {value!r}.", field=name)
    elif spec.kind == "mapping" and not isinstance(value, dict):
        raise UserError(f"{name} must be a mapping of config names to numbers, e.g. {{'n_layer': 2}}.", field=name)


def _in_bounds(spec: Setting, value: float) -> bool:
    return not (
        (spec.minimum is not None and value < spec.minimum)
        or (spec.above is not None and value <= spec.above)
        or (spec.below is not None and value >= spec.below)
    )


def _whole_number_rule(spec: Setting) -> str:
    if spec.minimum == 1:
        return "a whole number above 0"
    if spec.minimum == 0:
        return "a whole number, 0 or more"
    return "a whole number" if spec.minimum is None else f"a whole number of at least {spec.minimum:g}"


def _number_bounds_sentence(spec: Setting, value: float) -> str:
    if spec.below is not None:
        low = f"at least {spec.minimum:g}" if spec.minimum is not None else f"above {spec.above:g}"
        example = spec.example or format_setting(spec.default, spec)
        hint = f", e.g. {example}" if example else ""
        return f"{spec.name} is {value:g} but must be {low} and below {spec.below:g}{hint}."
    if spec.above is not None:
        return f"{spec.name} must be above {spec.above:g}, not {value!r}."
    return f"{spec.name} must be {spec.minimum:g} or more, not {value!r}."


def parse_hook(spec: str) -> tuple[str, str | None]:
    """Split "name:argument" and check the name and the argument's form."""
    name, _, argument = spec.partition(":")
    name, argument = name.strip(), argument.strip() or None
    if name not in HOOK_NAMES:
        raise UserError(f"unknown hook {name!r}; known hooks: {', '.join(HOOK_NAMES)}.", field="hooks")
    if name == "freeze" and not argument:
        raise UserError("the freeze hook needs a parameter-name prefix, e.g. freeze:transformer.h.0.", field="hooks")
    if name == "activation_stats" and argument is not None and not (argument.isdigit() and int(argument) > 0):
        raise UserError(
            f"activation_stats takes a positive step interval, e.g. activation_stats:50, not {argument!r}.",
            field="hooks",
        )
    if name in ("clip_per_layer", "grad_noise") and argument is not None:
        try:
            value = float(argument)
        except ValueError:
            value = -1.0
        if not value > 0 or not math.isfinite(value):
            raise UserError(f"{name} takes a positive number, e.g. {name}:0.5, not {argument!r}.", field="hooks")
    return name, argument


# -- settings as text: what a form field or a command-line option holds -------------------------------------


def format_setting(value: Any, spec: Setting) -> str:
    """A setting's value as a person would type it."""
    if value is None:
        return ""
    if spec.kind == "list":
        return ", ".join(value)
    if spec.kind == "mapping":
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if spec.name == "sample_prompt":
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            mantissa, _, exponent = f"{value:.6e}".partition("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:.10g}"
    return str(value)


def parse_number(text: str, whole: bool) -> Any:
    """A number from lenient text (3e-4, 1_000, 1,000, 1e3 for a whole number), or the text itself when it is not
    one, so that validation says why in the setting's own words."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return text.strip()
    if whole and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """NAME=VALUE items (a number where VALUE reads as one, true/false, else the text) as a mapping."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise UserError(f"overrides take name=value pairs, e.g. n_layer=2, not {item!r}.", field="model_overrides")
        raw = raw.strip()
        lowered = raw.lower()
        value: Any = {"true": True, "false": False}.get(lowered, None)
        if value is None:
            value = parse_number(raw, whole=True)
        overrides[key.strip()] = value
    return overrides


def parse_setting(text: str, spec: Setting) -> Any:
    """The value a setting's text stands for; raises UserError where the text has no reading at all."""
    if spec.optional and not text.strip():
        return None
    if spec.kind in ("int", "float"):
        return parse_number(text, whole=spec.kind == "int")
    if spec.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if spec.kind == "mapping":
        return parse_overrides([part for part in (p.strip() for p in text.split(",")) if part])
    if spec.name == "sample_prompt":
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), text)
    return text.strip()
