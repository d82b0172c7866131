"""A lean cached forward for the Llama-like families (Llama/SmolLM2, Mistral, Qwen2, Qwen3, SmolLM3).

A Hugging Face forward spends ~12 ms of Python per decode step on a 30-layer model (mask building, cache
bookkeeping, output records), as much as the matmuls of SmolLM2-135M themselves on a 2-core CPU. This step
does the same arithmetic with the model's own weight tensors and nothing else: RMSNorm, RoPE from a table
computed once by the model's own rotary module, grouped-query attention as two batched matmuls over a
preallocated static cache (no mask for one query), and the SiLU-gated MLP. Results match the model's forward
to float rounding; `fast_path_obstacle` says when a model is outside what it reproduces (hooks, sliding
windows, RoPE that rescales with length, replaced layers), and then the model's own forward runs instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.architecture import model_parts
from smoltui.engine.cached_forward import CachedForward

if TYPE_CHECKING:
    import torch
    from torch import nn

FAST_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
# RoPE variants whose frequencies depend on the sequence length: a table computed once would be wrong.
_LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")
_TRANSFORMERS_CAPTURE = "transformers.utils.output_capturing"


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


# Merged copies of the q/k/v and gate/up weights save two matmul calls in three: worth it where each call has
# a fixed cost that dwarfs a small matrix (oneDNN's bf16/fp16 kernels on the CPU: ~14 us a call), not for
# MKL's fp32 (measured: no gain). They are copies, rebuilt at every decode so weight edits are always seen,
# and only made while they stay under this size.
MERGE_LIMIT_BYTES = 512 * 1024 * 1024


@dataclass
class _Layer:
    """One block's tensors: the model's own, as transposed views (so each projection is one mm/addmm call),
    or merged copies where `MERGE_LIMIT_BYTES` allows and the dtype gains from them."""

    input_norm: torch.Tensor  # (hidden,)
    input_norm_scaled: torch.Tensor  # (hidden,) float32: the weight times sqrt(hidden), for `_rms_norm_one`
    qkv: list[tuple[torch.Tensor, torch.Tensor | None]]  # [(weight.T, bias)]: one merged, or q, k, v
    o_weight: torch.Tensor  # (heads * head_dim, hidden), transposed view
    o_bias: torch.Tensor | None
    q_norm: torch.Tensor | None  # (head_dim,) Qwen3's per-head norm
    k_norm: torch.Tensor | None
    uses_rope: bool  # SmolLM3 leaves RoPE out of some layers
    post_norm: torch.Tensor  # (hidden,)
    post_norm_scaled: torch.Tensor  # (hidden,) float32
    gate_up: list[tuple[torch.Tensor, torch.Tensor | None]]  # [(weight.T, bias)]: one merged, or gate, up
    down_weight: torch.Tensor  # (intermediate, hidden), transposed view
    down_bias: torch.Tensor | None


class LlamaCachedForward(CachedForward):
    """The hand-written step over a static cache of `capacity` positions (see the module's docstring)."""

    kind = "fast"

    def __init__(self, model: nn.Module, capacity: int, *, capture_hidden: bool = False) -> None:
        import torch

        parts = model_parts(model)
        config = model.config
        attention = parts.attentions[0]
        weight = parts.embed_tokens.weight
        self.capacity = capacity
        self.length = 0
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = attention.head_dim
        self.eps = parts.final_norm.variance_epsilon
        self.hidden_shape = (weight.shape[1],)
        self.embedding = weight  # (vocab, hidden)
        self.final_norm = parts.final_norm.weight
        self.head_weight = parts.lm_head.weight.t()  # (hidden, vocab)
        self.head_bias = parts.lm_head.bias
        # One query against the cache: two bmm calls beat SDPA's set-up in fp32, SDPA beats oneDNN's 16-bit bmm.
        self.plain_attention = weight.dtype == torch.float32
        merge = _merge_pays(model, weight)
        self.layers = [_layer(block, attn, merge) for block, attn in zip(parts.blocks, parts.attentions, strict=True)]
        cache_shape = (len(self.layers), self.kv_heads, capacity, self.head_dim)
        self.keys = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.layer_keys, self.layer_values = list(self.keys), list(self.values)  # (kv_heads, capacity, head_dim)
        # (capacity, head_dim) each; the query's copies carry the attention scale, so scores need no multiply.
        self.cos, self.sin = _rope_table(parts.base_model.rotary_emb, capacity, weight)
        self.q_cos, self.q_sin = self.cos * attention.scaling, self.sin * attention.scaling
        self.scaling = attention.scaling
        self.hidden = (
            torch.empty(len(self.layers) + 1, weight.shape[1], dtype=weight.dtype, device=weight.device)
            if capture_hidden
            else None
        )

    def __call__(self, token_ids: torch.Tensor, *, all_logits: bool = False) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        count = token_ids.shape[0]
        start = self.length
        if start + count > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {start} + {count} do not fit")
        x = self.embedding[token_ids]  # (T, hidden)
        if count == 1:
            x = self._decode_layers(x, start)
        else:
            x = self._prefill_layers(x, start, count)
        self.length = start + count
        if not all_logits:
            x = x[-1:]
        h = F.rms_norm(x, self.hidden_shape, self.final_norm, self.eps)
        return _project(torch, h, self.head_weight, self.head_bias)  # (T|1, vocab)

    def close(self) -> None:
        self.keys = self.values = self.hidden = self.layers = self.layer_keys = self.layer_values = None

    def _decode_layers(self, x: torch.Tensor, position: int) -> torch.Tensor:
        """One new token: its query attends to every cached key, so no mask is needed."""
        import torch
        import torch.nn.functional as F

        eps, shape, heads, kv_heads, head_dim = self.eps, self.hidden_shape, self.heads, self.kv_heads, self.head_dim
        group, half, end = heads // kv_heads, head_dim // 2, position + 1
        cos, sin, q_cos, q_sin = self.cos[position], self.sin[position], self.q_cos[position], self.q_sin[position]
        norm_eps = shape[0] * eps
        hidden = self.hidden
        if hidden is not None:
            hidden[0].copy_(x[0])
        for index, (layer, keys, values) in enumerate(
            zip(self.layers, self.layer_keys, self.layer_values, strict=True)
        ):
            h = _rms_norm_one(torch, x, layer.input_norm_scaled, norm_eps)  # (1, hidden)
            q, k, v = _split_qkv(torch, h, layer.qkv, heads * head_dim, kv_heads * head_dim)
            q, k, v = q.view(kv_heads, group, head_dim), k.view(kv_heads, head_dim), v.view(kv_heads, head_dim)
            if layer.q_norm is not None:
                q = F.rms_norm(q, (head_dim,), layer.q_norm, eps)
                k = F.rms_norm(k, (head_dim,), layer.k_norm, eps)
            if layer.uses_rope:
                q = torch.addcmul(q * q_cos, torch.roll(q, half, -1), q_sin)  # scaled for the scores
                torch.addcmul(k * cos, torch.roll(k, half, -1), sin, out=keys[:, position])
            else:
                q = q * self.scaling
                keys[:, position] = k
            values[:, position] = v
            if self.plain_attention:
                scores = torch.bmm(q, keys[:, :end].transpose(1, 2))  # (kv_heads, group, T)
                attended = torch.bmm(torch.softmax(scores, -1), values[:, :end])  # (kv_heads, group, head_dim)
            else:
                attended = F.scaled_dot_product_attention(
                    q.view(1, heads, 1, head_dim),
                    keys[None, :, :end],
                    values[None, :, :end],
                    scale=1.0,
                    enable_gqa=True,
                )  # (1, heads, 1, head_dim)
            x = _residual(torch, x, attended.view(1, heads * head_dim), layer.o_weight, layer.o_bias)
            h = _rms_norm_one(torch, x, layer.post_norm_scaled, norm_eps)
            x = _residual(torch, x, _gated(torch, F, h, layer.gate_up), layer.down_weight, layer.down_bias)
            if hidden is not None:
                hidden[index + 1].copy_(x[0])
        return x

    def _prefill_layers(self, x: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """Several new tokens at once (the prompt, or a run of forced tokens), causal among themselves."""
        import torch
        import torch.nn.functional as F

        eps, shape, heads, kv_heads, head_dim = self.eps, self.hidden_shape, self.heads, self.kv_heads, self.head_dim
        half, end = head_dim // 2, start + count
        cos, sin = self.cos[start:end, None], self.sin[start:end, None]  # (T, 1, head_dim)
        q_cos, q_sin = self.q_cos[start:end, None], self.q_sin[start:end, None]
        # A chunk after cached positions needs an explicit mask: SDPA's is_causal aligns to the top-left corner.
        mask = None
        if start:
            positions = torch.arange(end, device=x.device)
            mask = positions[None, :] <= positions[start:, None]  # (T, end)
        hidden = self.hidden
        if hidden is not None:
            hidden[0].copy_(x[-1])
        for index, (layer, keys, values) in enumerate(
            zip(self.layers, self.layer_keys, self.layer_values, strict=True)
        ):
            h = F.rms_norm(x, shape, layer.input_norm, eps)  # (T, hidden)
            q, k, v = _split_qkv(torch, h, layer.qkv, heads * head_dim, kv_heads * head_dim)
            q = q.reshape(count, heads, head_dim)
            k = k.reshape(count, kv_heads, head_dim)
            v = v.reshape(count, kv_heads, head_dim)
            if layer.q_norm is not None:
                q = F.rms_norm(q, (head_dim,), layer.q_norm, eps)
                k = F.rms_norm(k, (head_dim,), layer.k_norm, eps)
            if layer.uses_rope:
                q = torch.addcmul(q * q_cos, torch.roll(q, half, -1), q_sin)
                k = torch.addcmul(k * cos, torch.roll(k, half, -1), sin)
            else:
                q = q * self.scaling
            keys[:, start:end] = k.transpose(0, 1)
            values[:, start:end] = v.transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None],  # (1, heads, T, head_dim)
                keys[None, :, :end],
                values[None, :, :end],
                attn_mask=mask,
                is_causal=mask is None,
                scale=1.0,
                enable_gqa=heads != kv_heads,
            )  # (1, heads, T, head_dim)
            attended = attended[0].transpose(0, 1).reshape(count, heads * head_dim)
            x = _residual(torch, x, attended, layer.o_weight, layer.o_bias)
            h = F.rms_norm(x, shape, layer.post_norm, eps)
            x = _residual(torch, x, _gated(torch, F, h, layer.gate_up), layer.down_weight, layer.down_bias)
            if hidden is not None:
                hidden[index + 1].copy_(x[-1])
        return x


def _rms_norm_one(torch, x: torch.Tensor, weight_scaled: torch.Tensor, norm_eps: float) -> torch.Tensor:
    """RMSNorm of one row (1, hidden) in five calls where F.rms_norm makes about nine (measured: ~1 ms a step).

    x / sqrt(mean(x²) + eps) * w = x / sqrt(x·x + hidden·eps) * (w·sqrt(hidden)); x·x is one matmul call.
    """
    return torch.mul(x, torch.mm(x, x.t()).add_(norm_eps).rsqrt_()).mul_(weight_scaled)


def _project(torch, x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight_t (+ bias) in one call; `torch` is passed in so the per-token path does no import lookups."""
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


def _residual(torch, x: torch.Tensor, y: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None):
    """x + y @ weight_t (+ bias): the residual add inside the matmul call."""
    out = torch.addmm(x, y, weight_t)
    return out if bias is None else out.add_(bias)


def _split_qkv(torch, h: torch.Tensor, qkv: list, q_size: int, kv_size: int):
    if len(qkv) == 3:
        return [_project(torch, h, weight_t, bias) for weight_t, bias in qkv]
    merged = _project(torch, h, *qkv[0])  # (T, q + 2 kv)
    return merged[:, :q_size], merged[:, q_size : q_size + kv_size], merged[:, q_size + kv_size :]


def _gated(torch, F, h: torch.Tensor, gate_up: list) -> torch.Tensor:
    """silu(gate(h)) * up(h), (T, intermediate)."""
    if len(gate_up) == 2:
        return F.silu(_project(torch, h, *gate_up[0])).mul_(_project(torch, h, *gate_up[1]))
    merged = _project(torch, h, *gate_up[0])  # (T, 2 intermediate)
    size = merged.shape[-1] // 2
    return F.silu(merged[:, :size]).mul_(merged[:, size:])


def _merge_pays(model: nn.Module, weight: torch.Tensor) -> bool:
    import torch

    if weight.device.type == "cpu" and weight.dtype == torch.float32:
        return False
    parts = model_parts(model)
    merged = 0
    for block, attention in zip(parts.blocks, parts.attentions, strict=True):
        merged += sum(getattr(attention, name).weight.nbytes for name in ("q_proj", "k_proj", "v_proj"))
        merged += block.mlp.gate_proj.weight.nbytes + block.mlp.up_proj.weight.nbytes
    return merged <= MERGE_LIMIT_BYTES


def _layer(block: nn.Module, attention: nn.Module, merge: bool) -> _Layer:
    mlp = block.mlp
    q_norm = getattr(attention, "q_norm", None)
    k_norm = getattr(attention, "k_norm", None)
    qkv = [attention.q_proj, attention.k_proj, attention.v_proj]
    gate_up = [mlp.gate_proj, mlp.up_proj]
    return _Layer(
        input_norm=block.input_layernorm.weight,
        input_norm_scaled=_scaled_norm(block.input_layernorm.weight),
        qkv=_merged(qkv) if merge else [(linear.weight.t(), linear.bias) for linear in qkv],
        o_weight=attention.o_proj.weight.t(),
        o_bias=attention.o_proj.bias,
        q_norm=q_norm.weight if q_norm is not None else None,
        k_norm=k_norm.weight if k_norm is not None else None,
        uses_rope=bool(getattr(attention, "use_rope", True)),
        post_norm=block.post_attention_layernorm.weight,
        post_norm_scaled=_scaled_norm(block.post_attention_layernorm.weight),
        gate_up=_merged(gate_up) if merge else [(linear.weight.t(), linear.bias) for linear in gate_up],
        down_weight=mlp.down_proj.weight.t(),
        down_bias=mlp.down_proj.bias,
    )


def _scaled_norm(weight: torch.Tensor) -> torch.Tensor:
    return weight.float() * weight.shape[0] ** 0.5


def _merged(linears: list) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """One (weight.T, bias) for several linears that read the same input: their outputs side by side."""
    import torch

    weight = torch.cat([linear.weight for linear in linears]).t()  # (in, sum of outs)
    if all(linear.bias is None for linear in linears):
        return [(weight, None)]
    biases = [
        linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.weight.shape[0])
        for linear in linears
    ]
    return [(weight, torch.cat(biases))]


def _rope_table(rotary: nn.Module, capacity: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and a sign-folded sin for every position, from the model's own rotary module.

    Hugging Face rotates with `x * cos + rotate_half(x) * sin`, rotate_half(x) = (-x2, x1). Rolling x by half
    a head gives (x2, x1), so folding the minus sign into the first half of sin makes the rotation one roll and
    one addcmul, with the same products.
    """
    import torch

    positions = torch.arange(capacity, device=like.device)[None]  # (1, capacity)
    cos, sin = rotary(like[:1], position_ids=positions)  # (1, capacity, head_dim) each
    cos, sin = cos[0].contiguous(), sin[0].clone()
    sin[:, : sin.shape[-1] // 2].neg_()
    return cos, sin
