"""Presets: named transformers configs (nano-char, smollm2-135m, gpt2-small, tiny) with weights drawn from a seed.

A preset's vocabulary follows its tokenizer, and `overrides` change its numbers (layers, width, heads, context,
dropout...) with one sentence per mistake, so a training run can shrink nano-char to nanoGPT's CPU size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smoltui.engine.device import Placement
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Preset:
    """A named transformers config whose weights are drawn fresh from a seed."""

    name: str
    description: str
    model_type: str  # the transformers config family: "gpt2" or "llama"
    numbers: dict[str, Any]  # config fields, in that family's own names; vocab and special ids come from the tokenizer
    tokenizer: str  # the default tokenizer spec
    # Used, with a warning, where `tokenizer` names a bundled model that is not installed.
    fallback_tokenizer: str | None = None


_NANO_DROPOUT = {"resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "nano-char",
            "Experimental SLM: GPT-2 style, 4 layers, 256 wide, 4 heads, context 256, char tokenizer (~3M)",
            "gpt2",
            {
                "n_layer": 4,
                "n_embd": 256,
                "n_head": 4,
                "n_inner": 1024,
                "n_positions": 256,
                "activation_function": "gelu",
                **_NANO_DROPOUT,
            },
            "char",
        ),
        Preset(
            "smollm2-135m",
            "SmolLM2-135M's Llama architecture with fresh weights: 30 layers, 576 wide, 9 heads / 3 KV heads, "
            "SmolLM2's own tokenizer (49152) (~135M)",
            "llama",
            {
                "num_hidden_layers": 30,
                "hidden_size": 576,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "intermediate_size": 1536,
                "max_position_embeddings": 8192,
                "rope_theta": 100000.0,
                "rms_norm_eps": 1e-5,
                "hidden_act": "silu",
                "tie_word_embeddings": True,
                "initializer_range": 0.041666666666666664,
            },
            # SmolLM2's tokenizer, from the bundled SmolLM2-135M-Instruct, as the from-scratch projects use it.
            "smollm2-135m-instruct",
            fallback_tokenizer="bpe:49152",
        ),
        Preset(
            "gpt2-small",
            "GPT-2 small: 12 layers, 768 wide, 12 heads, context 1024, BPE 50257 (~124M)",
            "gpt2",
            {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024},
            "bpe:50257",
        ),
        Preset(
            "tiny",
            "for tests: GPT-2 style, 2 layers, 32 wide, 2 heads, context 64, char tokenizer",
            "gpt2",
            {
                "n_layer": 2,
                "n_embd": 32,
                "n_head": 2,
                "n_inner": 128,
                "n_positions": 64,
                "activation_function": "gelu",
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
                "attn_pdrop": 0.0,
            },
            "char",
        ),
    )
}

# Friendly override names → the standard config names (transformers maps these onto GPT-2's n_embd etc.).
OVERRIDE_ALIASES = {
    "layers": "num_hidden_layers",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "context": "max_position_embeddings",
}
# Every dropout probability any family names; "dropout" in overrides sets those its config has.
DROPOUT_FIELDS = (
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "attention_dropout",
    "hidden_dropout",
    "dropout",
    "embed_dropout",
    "resid_dropout",
    "activation_dropout",
)


def preset_names() -> list[str]:
    return list(PRESETS)


def unknown_model(name: str) -> UserError:
    return UserError(f"unknown model {name!r}; known presets: {', '.join(PRESETS)} — or pass a folder or a Hub id.")


def preset_config(
    name: str, tokenizer: PreTrainedTokenizerBase, overrides: dict[str, Any] | None = None
) -> PretrainedConfig:
    """The transformers config of preset `name`, sized to `tokenizer` and changed by `overrides`."""
    from transformers import AutoConfig

    if name not in PRESETS:
        raise unknown_model(name)
    preset = PRESETS[name]
    base = AutoConfig.for_model(preset.model_type, **preset.numbers)
    values = dict(preset.numbers)
    for key, value in (overrides or {}).items():
        for target in _override_targets(key, base):
            _check_override(key, target, value, getattr(base, target))
            values[type(base).attribute_map.get(target, target)] = value
    values |= {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config = AutoConfig.for_model(preset.model_type, **values)
    _check_shape(config)
    return config


def build_preset_model(
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    placement: Placement | None = None,
) -> PreTrainedModel:
    """Preset `name` with weights drawn from `seed`, in eval mode, created on the placement in its dtype.

    The model is laid out on the meta device and then initialised once in place: building it normally would
    fill every weight twice (torch's default init, then transformers'), and then copy it to the device. Like
    nanoGPT, this seeds torch's global generator; the same seed gives the same weights on the same device/dtype.
    """
    import torch
    from transformers import AutoModelForCausalLM

    placement = placement or Placement("cpu", "fp32")
    config = preset_config(name, tokenizer, overrides)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=placement.torch_dtype)
    model.to_empty(device=placement.torch_device)
    torch.manual_seed(seed)
    model.initialize_weights()  # also recomputes the buffers (RoPE frequencies) that to_empty left blank
    model.tie_weights()  # to_empty made the tied head a tensor of its own
    return model.eval()


def _override_targets(key: str, config: PretrainedConfig) -> list[str]:
    if key == "vocab_size":
        raise UserError("the vocabulary follows the tokenizer; pass a tokenizer instead of overriding vocab_size.")
    if key == "dropout":
        return [name for name in DROPOUT_FIELDS if hasattr(config, name)]
    target = OVERRIDE_ALIASES.get(key, key)
    fields = {f.name for f in type(config).__dataclass_fields__.values()} | set(type(config).attribute_map)
    if target not in fields:
        raise UserError(
            f"unknown model override {key!r}; use {', '.join([*OVERRIDE_ALIASES, 'dropout'])} or a "
            f"{type(config).__name__} field."
        )
    return [target]


def _check_override(key: str, target: str, value: Any, current: Any) -> None:
    """Overrides change numbers and switches: sizes are whole numbers above 0, dropouts lie in [0, 1)."""
    if current is None:  # an optional size such as GPT-2's n_inner (None: 4 × hidden)
        current = 1
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise UserError(f"{key} is {value!r} but must be true or false.")
        return
    if not isinstance(current, int | float):
        raise UserError(f"{key} is not a number setting of this preset; overrides change numbers and switches only.")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if target in DROPOUT_FIELDS:
        if not is_number or not 0 <= value < 1:
            raise UserError(f"{key} is {value!r} but must be at least 0 and below 1, e.g. 0.1.")
    elif not is_number or value <= 0 or (isinstance(current, int) and not isinstance(value, int)):
        kind = "a whole number" if isinstance(current, int) else "a number"
        raise UserError(f"{key} is {value!r} but must be {kind} above 0.")


def _check_shape(config: PretrainedConfig) -> None:
    hidden, heads = config.hidden_size, config.num_attention_heads
    if hidden % heads:
        raise UserError(f"hidden size {hidden} is not a multiple of the {heads} heads; change one of them.")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if heads % kv_heads:
        raise UserError(f"{heads} heads cannot be shared by {kv_heads} KV heads; pick kv_heads that divides heads.")
    if getattr(config, "rope_parameters", None) and (hidden // heads) % 2:
        raise UserError(f"RoPE needs an even head size but hidden {hidden} / {heads} heads is odd; change one.")
