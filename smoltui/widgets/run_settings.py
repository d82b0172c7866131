"""The settings of a new run as form fields: their sections, labels and hints, and how a field's text reads as a
setting and back. No Textual here: the form (screens/train_form.py) only lays these out.

Numbers are read leniently (`3e-4`, `1_000`, `1,000`, `1e3` for a whole number); whatever cannot be read is
handed to TrainConfig as typed, so the sentence a person sees is always the engine's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoltui.engine.config import BATCHING, HOOK_NAMES, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
from smoltui.engine.errors import UserError

DEFAULT_MODEL = "nano-char"
BUILTIN_PREFIX = "builtin:"
DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class FieldSpec:
    """One form field: the TrainConfig setting it fills and how its text is read."""

    name: str
    label: str
    kind: str  # "text", "int", "float", "choice", "list" (comma-separated), "mapping" (name=value, ...)
    optional: bool = False  # empty means None: the model's own value, or the setting's rule
    choices: tuple[str, ...] = ()
    placeholder: str = ""
    tooltip: str = ""


SECTIONS: tuple[tuple[str, tuple[FieldSpec, ...]], ...] = (  # two columns: even-numbered sections left
    (
        "Model and data",
        (
            FieldSpec(
                "model",
                "model",
                "text",
                placeholder="preset, folder, Hub id or run:<id>",
                tooltip="nano-char, smollm2-135m, gpt2-small, tiny, a folder, a Hub id or run:<id>[@step].",
            ),
            FieldSpec(
                "tokenizer",
                "tokenizer",
                "text",
                optional=True,
                placeholder="the model's own",
                tooltip="char, bpe:N (trained on the corpus), or a tokenizer folder or Hub id.",
            ),
            FieldSpec("corpus", "corpus", "text", placeholder="a .txt/.md/.jsonl file, a folder, builtin:pydocs"),
            FieldSpec("context", "context", "int", optional=True, placeholder="the model's (≤ 256 for presets)"),
            FieldSpec(
                "model_overrides",
                "overrides",
                "mapping",
                placeholder="e.g. n_layer=2, n_embd=64",
                tooltip="Preset config numbers to change, as name=value pairs.",
            ),
        ),
    ),
    (
        "Batches and length",
        (
            FieldSpec("batch_size", "batch size", "int"),
            FieldSpec("grad_accum", "grad accum", "int", tooltip="Micro-batches per optimizer step."),
            FieldSpec("max_steps", "max steps", "int"),
            FieldSpec(
                "time_budget_s",
                "time budget (s)",
                "float",
                optional=True,
                placeholder="none",
                tooltip="Stop with a checkpoint after this many seconds of training.",
            ),
            FieldSpec(
                "batching",
                "batching",
                "choice",
                choices=BATCHING,
                tooltip="random windows (nanoGPT) or sequential non-overlapping windows.",
            ),
            FieldSpec("seed", "seed", "int"),
        ),
    ),
    (
        "Optimizer",
        (
            FieldSpec(
                "optimizer",
                "optimizer",
                "choice",
                choices=OPTIMIZERS,
                tooltip="muon: Muon for 2-D hidden weights, AdamW for the rest.",
            ),
            FieldSpec("lr", "lr", "float"),
            FieldSpec("min_lr", "min lr", "float", optional=True, placeholder="lr / 10"),
            FieldSpec("warmup_steps", "warmup steps", "int"),
            FieldSpec("schedule", "schedule", "choice", choices=SCHEDULES),
            FieldSpec("weight_decay", "weight decay", "float"),
            FieldSpec("beta1", "beta1", "float"),
            FieldSpec("beta2", "beta2", "float"),
            FieldSpec("grad_clip", "grad clip", "float", tooltip="0 turns clipping off."),
            FieldSpec("dropout", "dropout", "float", optional=True, placeholder="the model's own"),
        ),
    ),
    (
        "Evaluation and samples",
        (
            FieldSpec("eval_every", "eval every", "int"),
            FieldSpec("eval_batches", "eval batches", "int"),
            FieldSpec("sample_every", "sample every", "int", tooltip="0 turns periodic samples off."),
            FieldSpec("sample_prompt", "sample prompt", "text", tooltip=r"\n and \t stand for a newline and a tab."),
            FieldSpec("sample_length", "sample length", "int"),
            FieldSpec("temperature", "temperature", "float"),
        ),
    ),
    (
        "Hardware",
        (
            FieldSpec("device", "device", "text", placeholder="auto, cpu, cuda, cuda:1, mps"),
            FieldSpec(
                "precision",
                "precision",
                "choice",
                choices=PRECISIONS,
                tooltip="auto: bf16 autocast on cuda, fp32 on cpu.",
            ),
        ),
    ),
    (
        "Checkpoints and hooks",
        (
            FieldSpec("checkpoint_every", "checkpoint every", "int"),
            FieldSpec("keep_last", "keep last", "int"),
            FieldSpec(
                "hooks",
                "hooks",
                "list",
                placeholder="e.g. activation_stats:50, freeze:transformer.h.0.",
                tooltip=f"Comma-separated; known hooks: {', '.join(HOOK_NAMES)}.",
            ),
        ),
    ),
)
FIELDS = {spec.name: spec for _, specs in SECTIONS for spec in specs}
LEFT_OUT = ("trust_remote_code",)  # a safety switch: only the CLI's --trust-remote-code turns it on


def format_setting(value: Any, spec: FieldSpec) -> str:
    """A setting's value as the form shows it."""
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
    """A number from lenient text, or the text itself when it is not one (TrainConfig then says why)."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return text.strip()
    if whole and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), text)


def parse_setting(text: str, spec: FieldSpec) -> Any:
    """The setting a field's text stands for. Raises UserError where the text has no reading at all."""
    if spec.optional and not text.strip():
        return None
    if spec.kind in ("int", "float"):
        return parse_number(text, whole=spec.kind == "int")
    if spec.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if spec.kind == "mapping":
        mapping = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, equals, value = part.partition("=")
            if not equals or not key.strip():
                raise UserError(f"overrides take name=value pairs separated by commas, e.g. n_layer=2, not {part!r}.")
            number = parse_number(value, whole=True)
            mapping[key.strip()] = number if not isinstance(number, str) else value.strip()
        return mapping
    if spec.name == "sample_prompt":
        return _unescape(text)
    return text.strip()


def field_of(message: str) -> str | None:
    """Which field an engine sentence is about: the setting it starts with, or hooks for a hook's complaint."""
    first = re.match(r"[\w]+", message)
    word = first[0] if first else ""
    if word in FIELDS:
        return word
    if word in HOOK_NAMES or "hook" in message.split(";")[0]:
        return "hooks"
    return None


def corpus_problem(source: str) -> str | None:
    """The engine's sentence for a corpus path that does not exist, found before a run is started for it."""
    if not source.strip() or source.startswith(BUILTIN_PREFIX):
        return None
    if not Path(source).expanduser().exists():
        return f"no such file or folder: {source}; check the path, or pass {BUILTIN_PREFIX}pydocs."
    return None
