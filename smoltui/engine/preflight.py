"""Checks of a new run's settings before its folder is created and its trainer started.

A mistyped command must leave no `failed` run behind, and must not wait for torch to find out: `quick_checks`
reads only names, file sizes and small JSON files (the Train form runs it as you type), and `launch_checks`
adds what needs transformers, torch or the network (model overrides, the device, the Hub) just before launch.
Whatever these cannot know (a Hub model's shape offline, the exact token count of a corpus) the trainer
still checks, and says so in the run's events.
"""

from __future__ import annotations

import json
from pathlib import Path

from smoltui.engine.config import TrainConfig
from smoltui.engine.errors import UserError

_POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")
_CORPUS_SUFFIXES = (".txt", ".md", ".jsonl")


def quick_checks(config: TrainConfig, workspace: Path | None = None) -> None:
    """What can be checked in milliseconds without torch: the model, tokenizer and corpus as named, the context
    against the model's positions where a file says them, and the device as written."""
    positions = _model_positions(config, workspace)
    _check_tokenizer_spec(config.tokenizer)
    context = config.context_for(positions) if positions is not None or config.context is not None else None
    _check_corpus(config.corpus, context)
    _check_device_name(config)


def launch_checks(config: TrainConfig, workspace: Path | None = None) -> None:
    """Everything before a run is created: the quick checks, then the model's overrides, the Hub and the device
    (these import transformers or torch, so they run only where the settings need them)."""
    quick_checks(config, workspace)
    if config.model_overrides:
        _check_overrides(config)
    from smoltui.engine.models import locate_source

    kind, location = locate_source(config.model, workspace)
    if kind == "hub":
        _check_hub_model(location)
    _check_hardware(config)


# -- the model ---------------------------------------------------------------------------------------------


def _model_positions(config: TrainConfig, workspace: Path | None) -> int | None:
    """The model's positions where they can be read without loading it; UserError for a source that cannot load."""
    from smoltui.engine.models import locate_source
    from smoltui.engine.presets import PRESETS

    kind, location = locate_source(config.model, workspace)
    if kind != "preset" and config.model_overrides:
        raise UserError(
            f"overrides change a preset's architecture, and {config.model.strip()!r} brings its own; drop them or "
            "start from a preset.",
            field="model_overrides",
        )
    if kind == "preset":
        if config.model_overrides:
            return None  # the overrides may change them: _check_overrides reads the changed config
        numbers = PRESETS[location].numbers
        return next((numbers[key] for key in _POSITION_KEYS if key in numbers), None)
    if kind in ("folder", "run"):
        if not (location / "config.json").is_file():
            raise UserError(
                f"{location} has no config.json, so it is not a saved model; pass a model folder.", field="model"
            )
        return _config_positions(location)
    if kind in ("bundled", "gguf"):
        from smoltui.engine.gguf import cached_conversion

        converted = cached_conversion(location)
        return None if converted is None else _config_positions(converted)
    return None  # a Hub model's shape (or a GGUF's before its first conversion) is known once it is fetched


def _config_positions(folder: Path) -> int | None:
    try:
        values = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None  # the trainer's loader says what is wrong with the folder, file by file
    values = values.get("text_config", values)
    return next((values[key] for key in _POSITION_KEYS if isinstance(values.get(key), int)), None)


def _check_hub_model(repo_id: str) -> None:
    """A Hub model must be in the local cache or the Hub must answer; else the run would fail at once."""
    from huggingface_hub import try_to_load_from_cache

    from smoltui.engine.presets import PRESETS
    from smoltui.engine.tokenizers import hub_offline, hub_reachable

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    if hub_offline() or not hub_reachable():
        raise UserError(
            f"{repo_id!r} is not a preset and the Hugging Face Hub is unreachable; pass a preset "
            f"({', '.join(PRESETS)}) or a local model folder.",
            field="model",
        )


def _check_overrides(config: TrainConfig) -> None:
    """The overrides' names and values, against the preset's transformers config (imports transformers)."""
    for key, value in config.model_overrides.items():
        if isinstance(value, str):
            raise UserError(f"{key} is {value!r} but overrides take numbers or true/false.", field="model_overrides")
    from smoltui.engine.presets import preset_config
    from smoltui.engine.tokenizers import char_tokenizer

    changed = _about(
        "model_overrides", lambda: preset_config(config.model.strip(), char_tokenizer(), config.model_overrides)
    )
    config.context_for(getattr(changed, "max_position_embeddings", None))


# -- tokenizer and corpus ----------------------------------------------------------------------------------


def _check_tokenizer_spec(spec: str | None) -> None:
    """The tokenizer as named: a bundled model's name or a .gguf file (their conversions carry one), or a spec."""
    from smoltui.engine.models import BUNDLED_MODELS
    from smoltui.engine.tokenizers import check_tokenizer_spec

    if spec is None or spec.strip() in BUNDLED_MODELS or spec.strip().lower().endswith(".gguf"):
        return
    check_tokenizer_spec(spec)


def _check_corpus(source: str, context: int | None) -> None:
    """The corpus exists and, where its size is known, holds one window in each split.

    Every tokenizer smoltui uses makes at most one token per byte of UTF-8 text (byte-level BPE merges bytes,
    the char tokenizer takes one ASCII character per token), so the files' size bounds the tokens from above: a
    corpus whose bytes cannot fill a window in the 5% validation tail is certainly too short.
    """
    from smoltui.engine.data import BUILTIN_PYDOCS, VAL_FRACTION

    source = source.strip()
    if source.startswith("builtin:"):
        if source != BUILTIN_PYDOCS:
            raise UserError(
                f"unknown built-in corpus {source!r}; the built-in corpus is {BUILTIN_PYDOCS}.", field="corpus"
            )
        return
    path = Path(source).expanduser()
    if path.is_file():
        size = path.stat().st_size
    elif path.is_dir():
        size = sum(
            file.stat().st_size
            for file in path.rglob("*")
            if file.suffix.lower() in _CORPUS_SUFFIXES and file.is_file() and not _hidden(file, path)
        )
    else:
        raise UserError(f"no such file or folder: {source}; check the path, or pass {BUILTIN_PYDOCS}.", field="corpus")
    if context is None:
        return
    val = round(size * VAL_FRACTION)
    if min(size - val, val) < context + 1:
        needed = int((context + 1) / VAL_FRACTION)
        raise UserError(
            f"the corpus holds at most {size:,} tokens, but one window of {context} tokens in its 5% validation "
            f"split needs about {needed:,}; use a longer corpus or a shorter --context.",
            field="corpus",
        )


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


# -- hardware ----------------------------------------------------------------------------------------------


def _check_device_name(config: TrainConfig) -> None:
    from smoltui.engine.device import DEVICE_CHOICES

    kind, _, index = config.device.strip().lower().partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise UserError(
            f"unknown device {config.device!r}; pass one of {', '.join(DEVICE_CHOICES)} (or cuda:N).", field="device"
        )
    if kind == "cpu" and config.precision == "fp16":
        raise UserError(
            "fp16 training needs a CUDA GPU (its loss scaler is CUDA-only); pass --precision bf16 or fp32.",
            field="precision",
        )


def _check_hardware(config: TrainConfig) -> None:
    """The device exists, fp16 has its GPU, and there is a GPU per process (imports torch only if it must)."""
    device = config.device.strip().lower()
    if device == "cpu" or (device == "auto" and config.precision != "fp16" and config.nproc_per_node == 1):
        return  # the CPU is always there, and several CPU processes share its cores (gloo)
    import torch

    from smoltui.engine.device import resolve_device, resolve_precision

    concrete = _about("device", lambda: resolve_device(device))
    _about("precision", lambda: resolve_precision(config.precision, concrete))
    if not concrete.startswith("cuda") or config.nproc_per_node == 1:
        return
    if ":" in concrete:
        raise UserError(
            f"{concrete} names one GPU but the run has {config.nproc_per_node} processes, one per GPU; pass "
            "--device cuda.",
            field="device",
        )
    if config.nproc_per_node > torch.cuda.device_count():
        raise UserError(
            f"{config.nproc_per_node} processes need a GPU each but torch sees {torch.cuda.device_count()}; "
            f"pass --nproc-per-node {torch.cuda.device_count()} or --device cpu.",
            field="nproc_per_node",
        )


def _about(field: str, check):
    """check(), with a UserError it raises pinned to `field` (so the form marks that field)."""
    try:
        return check()
    except UserError as error:
        raise UserError(str(error), field=field) from None
