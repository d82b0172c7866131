"""The tensors the Llama-family fast step reads, and which models it may read them from.

`fast_path_obstacle` says why a model is outside what the step in llama_forward.py reproduces (another family,
hooks, sliding windows, RoPE that rescales with length, replaced layers). `layer_tensors` gathers each block's
weights as transposed views of the model's own (so a projection is one mm call) or, where a call's fixed cost
is worth saving, as merged copies. `rope_tables` turns the model's own rotary module into per-position tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.architecture import model_parts

if TYPE_CHECKING:
    import torch
    from torch import nn

FAST_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
# RoPE variants whose frequencies depend on the sequence length: a table computed once would be wrong.
_LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")
_TRANSFORMERS_CAPTURE = "transformers.utils.output_capturing"
# Merged copies save matmul calls: q, k and v in one (and one RoPE for q and k) on every device and dtype;
# gate and up in one only where a call's fixed cost dwarfs the matrix (oneDNN's bf16/fp16 kernels on the CPU,
# ~14 us a call; MKL's fp32 calls are cheap and the copy is the largest). Copies are rebuilt at every decode,
# so weight edits are always seen, and made only while they stay under this size.
MERGE_LIMIT_BYTES = 512 * 1024 * 1024
Projection = tuple["torch.Tensor", "torch.Tensor | None"]  # (weight transposed to (in, out), bias)


def fast_path_obstacle(model: nn.Module, capacity: int) -> str | None:
    """Why the fast step cannot reproduce `model`'s forward over `capacity` positions, or None when it can."""
    from torch import nn

    config = getattr(model, "config", None)
    family = getattr(config, "model_type", None)
    if family not in FAST_FAMILIES:
        return f"{family} is not a Llama-like family"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act}"
    rope = getattr(config, "rope_parameters", None) or {}
    if any(kind in str(rope.get("rope_type", "default")) for kind in _LENGTH_DEPENDENT_ROPE):
        return f"RoPE type {rope['rope_type']} rescales with length"
    if _has_hooks(model):
        return "hooks are registered on the model"
    parts = model_parts(model)
    for block, attention in zip(parts.blocks, parts.attentions, strict=True):
        window = getattr(attention, "sliding_window", None)
        if window is None and family == "mistral":
            window = getattr(config, "sliding_window", None)
        if window is not None and window < capacity:
            return f"sliding-window attention ({window} positions)"
        linears = [getattr(attention, name, None) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
        linears += [getattr(block.mlp, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
        if any(type(linear) is not nn.Linear for linear in linears):
            return "a layer's linear maps were replaced"
    if type(parts.lm_head) is not nn.Linear or parts.final_norm is None:
        return "the LM head or final norm was replaced"
    if getattr(parts.base_model, "rotary_emb", None) is None:
        return "no rotary embedding module"
    dtypes = {parameter.dtype for parameter in model.parameters()}
    if len(dtypes) != 1 or not dtypes.pop().is_floating_point:
        return "mixed or non-float parameter dtypes"
    return None


def _has_hooks(model: nn.Module) -> bool:
    """Whether a forward hook would see something the fast step skips (so it must not be skipped).

    transformers installs its own output-capturing hooks the first time hidden states are asked for; they
    record only inside such a call and are left out.
    """
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    for module in model.modules():
        hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
        if any(getattr(hook, "__module__", None) != _TRANSFORMERS_CAPTURE for hook in hooks):
            return True
    return False


@dataclass
class LayerTensors:
    """One block's tensors for the fast step."""

    input_norm: torch.Tensor  # (hidden,)
    input_norm_scaled: torch.Tensor  # (hidden,) float32: the weight times sqrt(hidden), for a one-row RMSNorm
    qkv: list[Projection]  # one merged projection (q, k, v side by side), or q, k and v
    o_proj: Projection
    q_norm: torch.Tensor | None  # (head_dim,) Qwen3's per-head norms
    k_norm: torch.Tensor | None
    uses_rope: bool  # SmolLM3 leaves RoPE out of some layers
    post_norm: torch.Tensor  # (hidden,)
    post_norm_scaled: torch.Tensor  # (hidden,) float32
    gate_up: list[Projection]  # one merged projection (gate, up side by side), or gate and up
    down_proj: Projection


def layer_tensors(model: nn.Module) -> list[LayerTensors]:
    import torch

    parts = model_parts(model)
    weight = parts.embed_tokens.weight
    pairs = list(zip(parts.blocks, parts.attentions, strict=True))
    qkv_bytes = sum(_nbytes(attention.q_proj, attention.k_proj, attention.v_proj) for _, attention in pairs)
    gate_up_bytes = sum(_nbytes(block.mlp.gate_proj, block.mlp.up_proj) for block, _ in pairs)
    merge_qkv = qkv_bytes <= MERGE_LIMIT_BYTES
    costly_calls = weight.device.type != "cpu" or weight.dtype != torch.float32
    merge_gate_up = costly_calls and qkv_bytes + gate_up_bytes <= MERGE_LIMIT_BYTES
    layers = []
    for block, attention in pairs:
        mlp = block.mlp
        qkv = [attention.q_proj, attention.k_proj, attention.v_proj]
        gate_up = [mlp.gate_proj, mlp.up_proj]
        q_norm, k_norm = getattr(attention, "q_norm", None), getattr(attention, "k_norm", None)
        layers.append(
            LayerTensors(
                input_norm=block.input_layernorm.weight,
                input_norm_scaled=_scaled(block.input_layernorm.weight),
                qkv=[_merged(qkv)] if merge_qkv else [_projection(linear) for linear in qkv],
                o_proj=_projection(attention.o_proj),
                q_norm=q_norm.weight if q_norm is not None else None,
                k_norm=k_norm.weight if k_norm is not None else None,
                uses_rope=bool(getattr(attention, "use_rope", True)),
                post_norm=block.post_attention_layernorm.weight,
                post_norm_scaled=_scaled(block.post_attention_layernorm.weight),
                gate_up=[_merged(gate_up)] if merge_gate_up else [_projection(linear) for linear in gate_up],
                down_proj=_projection(mlp.down_proj),
            )
        )
    return layers


def rope_tables(model: nn.Module, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and a sign-folded sin for every position and every q and k head, (capacity, heads + kv_heads,
    head_dim), from the model's own rotary module; the query heads' rows carry the attention scale.

    Hugging Face rotates with `x * cos + rotate_half(x) * sin`, rotate_half(x) = (-x2, x1). Rolling x by half
    a head gives (x2, x1), so folding the minus sign into the first half of sin makes the rotation one roll and
    one addcmul, with the same products; rotation is linear, so scaling q before it scales its scores.
    """
    import torch

    parts = model_parts(model)
    like = parts.embed_tokens.weight
    positions = torch.arange(capacity, device=like.device)[None]  # (1, capacity)
    cos, sin = parts.base_model.rotary_emb(like[:1], position_ids=positions)  # (1, capacity, head_dim) each
    sin = sin.clone()
    sin[..., : sin.shape[-1] // 2].neg_()
    scale = head_scales(model).to(cos.dtype)  # (heads + kv_heads, 1)
    return cos[0, :, None] * scale, sin[0, :, None] * scale


def head_scales(model: nn.Module) -> torch.Tensor:
    """(heads + kv_heads, 1): the attention scale for the query heads, 1 for the key heads."""
    import torch

    config = model.config
    scaling = model_parts(model).attentions[0].scaling
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    weight = model.get_input_embeddings().weight
    scales = torch.cat([torch.full((heads, 1), scaling), torch.ones(kv_heads, 1)])
    return scales.to(device=weight.device)


def _projection(linear: nn.Module) -> Projection:
    return linear.weight.t(), linear.bias


def _merged(linears: list) -> Projection:
    """One projection for several linears that read the same input: their outputs side by side."""
    import torch

    weight = torch.cat([linear.weight for linear in linears]).t()  # (in, sum of outs)
    if all(linear.bias is None for linear in linears):
        return weight, None
    biases = [
        linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features) for linear in linears
    ]
    return weight, torch.cat(biases)


def _nbytes(*linears: nn.Module) -> int:
    return sum(linear.weight.nbytes for linear in linears)


def _scaled(weight: torch.Tensor) -> torch.Tensor:
    return weight.float() * weight.shape[0] ** 0.5
