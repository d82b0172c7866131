"""One adapter over decoder-only transformers models: embeddings, blocks, attention, final norm, LM head.

Lens, attention maps, hooks and surgery all need the same handful of modules, and every family names them
differently (`transformer.h` in GPT-2, `model.layers` in Llama, `gpt_neox.layers`, `model.decoder.layers` in
OPT...). `model_parts` finds them once: families we test are pinned in a small table, anything else is
searched for by the names transformers uses across its decoder-only models, and a model that fits neither
gets a UserError rather than an AttributeError deep inside a screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelParts:
    """The modules every inspection and edit works on, all of them real submodules of the model."""

    family: str  # the config's model_type: "gpt2", "llama", "qwen2", "gpt_neox"...
    base_model: nn.Module  # the body without the LM head (`model.base_model`)
    embed_tokens: nn.Embedding
    blocks: nn.ModuleList  # the decoder layers, in order
    attentions: list[nn.Module]  # one per block
    mlps: list[nn.Module]  # one per block, or empty where a family's blocks have no recognisable MLP
    final_norm: nn.Module | None  # None for the rare family without one
    lm_head: nn.Module


@dataclass(frozen=True)
class _Layout:
    """Where a family keeps its parts, as dotted paths from the ...ForCausalLM model (or inside a block)."""

    blocks: str
    final_norm: str | None
    attention: str
    mlp: str | None  # None where the block's MLP is loose linears (OPT's fc1/fc2), not one module


# Families with tests behind them; their layout is pinned so a look-alike attribute never wins a search.
KNOWN_LAYOUTS: dict[str, _Layout] = {
    "gpt2": _Layout("transformer.h", "transformer.ln_f", "attn", "mlp"),
    "llama": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "qwen2": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "qwen3": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "mistral": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "gemma": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "gemma2": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "gemma3_text": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "smollm3": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "phi": _Layout("model.layers", "model.final_layernorm", "self_attn", "mlp"),
    "phi3": _Layout("model.layers", "model.norm", "self_attn", "mlp"),
    "gpt_neox": _Layout("gpt_neox.layers", "gpt_neox.final_layer_norm", "attention", "mlp"),
    "opt": _Layout("model.decoder.layers", "model.decoder.final_layer_norm", "self_attn", None),
}

# For every other family: the names transformers' decoder-only models use, most common first.
BLOCK_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "transformer.blocks")
ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")
# Looked up beside the blocks' ModuleList, i.e. on the decoder that owns them.
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")

SUPPORTED_HINT = (
    "smoltui reads decoder-only transformers models such as GPT-2, Llama, Qwen2, Mistral, GPT-NeoX, OPT, Phi and Gemma"
)


def model_parts(model: nn.Module) -> ModelParts:
    """The parts of `model`, or UserError("not supported yet: ...") when it is not a decoder-only LM we can read."""
    from torch import nn

    name = type(model).__name__
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        raise _unsupported(name)
    family = str(getattr(config, "model_type", "") or name)
    layout = KNOWN_LAYOUTS.get(family)

    blocks = _submodule(model, layout.blocks) if layout else _first_found(model, BLOCK_PATHS)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise _unsupported(name)
    expected = getattr(_text_config(config), "num_hidden_layers", len(blocks))
    if len(blocks) != expected:
        raise _unsupported(name, f"found {len(blocks)} blocks but the config says {expected}")

    attention_names = (layout.attention,) if layout else ATTENTION_NAMES
    attentions = [_first_found(block, attention_names) for block in blocks]
    if any(attention is None for attention in attentions):
        raise _unsupported(name, "some of its blocks have no attention module")
    mlp_names = MLP_NAMES if layout is None else (layout.mlp,) if layout.mlp else ()
    mlps = [_first_found(block, mlp_names) for block in blocks]

    if layout:
        final_norm = _submodule(model, layout.final_norm) if layout.final_norm else None
    else:
        decoder_path = _first_path(model, BLOCK_PATHS).rpartition(".")[0]
        final_norm = _first_found(_submodule(model, decoder_path), FINAL_NORM_NAMES)

    embed_tokens = _call_getter(model, "get_input_embeddings")
    lm_head = _call_getter(model, "get_output_embeddings")
    if not isinstance(embed_tokens, nn.Embedding) or not isinstance(lm_head, nn.Module):
        raise _unsupported(name, "it has no token embedding or no LM head")

    return ModelParts(
        family=family,
        base_model=getattr(model, "base_model", model),
        embed_tokens=embed_tokens,
        blocks=blocks,
        attentions=attentions,
        mlps=mlps if all(mlp is not None for mlp in mlps) else [],
        final_norm=final_norm,
        lm_head=lm_head,
    )


def _unsupported(class_name: str, reason: str | None = None) -> UserError:
    detail = f" ({reason})" if reason else ""
    return UserError(f"not supported yet: {class_name}{detail}; {SUPPORTED_HINT}.")


def _text_config(config):
    """The decoder's config: itself for text models, the text part of a composite one."""
    getter = getattr(config, "get_text_config", None)
    return getter(decoder=True) if getter else config


def _submodule(root: nn.Module, path: str) -> nn.Module | None:
    """`root.a.b.c` for path "a.b.c", or None where any step is missing or not a module."""
    from torch import nn

    module = root
    for step in path.split(".") if path else ():
        module = getattr(module, step, None) if isinstance(module, nn.Module) else None
    return module if isinstance(module, nn.Module) else None


def _first_path(root: nn.Module, paths: tuple[str, ...]) -> str:
    return next((path for path in paths if _submodule(root, path) is not None), "")


def _first_found(root: nn.Module | None, paths: tuple[str, ...]) -> nn.Module | None:
    if root is None:
        return None
    path = _first_path(root, paths)
    return _submodule(root, path) if path else None


def _call_getter(model: nn.Module, getter: str) -> nn.Module | None:
    # transformers raises NotImplementedError from these for layouts it cannot guess; that means "none".
    try:
        return getattr(model, getter)()
    except (AttributeError, NotImplementedError):
        return None
