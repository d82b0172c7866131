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


@dataclass
class _Layer:
    """One block's tensors, all the model's own (no copies)."""

    input_norm: torch.Tensor  # (hidden,)
    q_weight: torch.Tensor  # (heads * head_dim, hidden)
    q_bias: torch.Tensor | None
    k_weight: torch.Tensor  # (kv_heads * head_dim, hidden)
    k_bias: torch.Tensor | None
    v_weight: torch.Tensor
    v_bias: torch.Tensor | None
    o_weight: torch.Tensor  # (hidden, heads * head_dim)
    o_bias: torch.Tensor | None
    q_norm: torch.Tensor | None  # (head_dim,) Qwen3's per-head norm
    k_norm: torch.Tensor | None
    uses_rope: bool  # SmolLM3 leaves RoPE out of some layers
    post_norm: torch.Tensor  # (hidden,)
    gate_weight: torch.Tensor  # (intermediate, hidden)
    gate_bias: torch.Tensor | None
    up_weight: torch.Tensor
    up_bias: torch.Tensor | None
    down_weight: torch.Tensor  # (hidden, intermediate)
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
        self.scaling = attention.scaling
        self.eps = parts.final_norm.variance_epsilon
        self.embedding = weight  # (vocab, hidden)
        self.final_norm = parts.final_norm.weight
        self.head_weight = parts.lm_head.weight  # (vocab, hidden)
        self.head_bias = parts.lm_head.bias
        self.layers = [_layer(block, attn) for block, attn in zip(parts.blocks, parts.attentions, strict=True)]
        cache_shape = (len(self.layers), self.kv_heads, capacity, self.head_dim)
        self.keys = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.cos, self.sin = _rope_table(parts.base_model.rotary_emb, capacity, weight)  # (capacity, head_dim)
        hidden_size = weight.shape[1]
        self.hidden = (
            torch.empty(len(self.layers) + 1, hidden_size, dtype=weight.dtype, device=weight.device)
            if capture_hidden
            else None
        )

    def __call__(self, token_ids: torch.Tensor, *, all_logits: bool = False) -> torch.Tensor:
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
        return _linear(_rms_norm(x, self.final_norm, self.eps), self.head_weight, self.head_bias)  # (T|1, vocab)

    def close(self) -> None:
        self.keys = self.values = self.hidden = None

    def _decode_layers(self, x: torch.Tensor, position: int) -> torch.Tensor:
        """One new token: its query attends to every cached key, so no mask is needed."""
        import torch
        import torch.nn.functional as F

        eps, heads, kv_heads, head_dim = self.eps, self.heads, self.kv_heads, self.head_dim
        group = heads // kv_heads
        cos, sin = self.cos[position], self.sin[position]  # (head_dim,)
        end = position + 1
        hidden = self.hidden
        if hidden is not None:
            hidden[0].copy_(x[0])
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), layer.input_norm, eps)  # (1, hidden)
            q = F.linear(h, layer.q_weight, layer.q_bias).view(kv_heads, group, head_dim)
            k = F.linear(h, layer.k_weight, layer.k_bias).view(kv_heads, head_dim)
            v = F.linear(h, layer.v_weight, layer.v_bias).view(kv_heads, head_dim)
            if layer.q_norm is not None:
                q = F.rms_norm(q, (head_dim,), layer.q_norm, eps)
                k = F.rms_norm(k, (head_dim,), layer.k_norm, eps)
            keys, values = self.keys[index], self.values[index]  # (kv_heads, capacity, head_dim)
            if layer.uses_rope:
                q = torch.addcmul(q * cos, _rotate(q, head_dim), sin)
                torch.addcmul(k * cos, _rotate(k, head_dim), sin, out=keys[:, position])
            else:
                keys[:, position] = k
            values[:, position] = v
            scores = torch.matmul(q, keys[:, :end].transpose(1, 2))  # (kv_heads, group, T)
            weights = torch.softmax(scores.mul_(self.scaling), dim=-1, dtype=torch.float32).to(q.dtype)
            attended = torch.matmul(weights, values[:, :end]).view(1, heads * head_dim)
            x = (
                torch.addmm(x, attended, layer.o_weight.t())
                if layer.o_bias is None
                else x + F.linear(attended, layer.o_weight, layer.o_bias)
            )
            h = F.rms_norm(x, (x.shape[-1],), layer.post_norm, eps)
            gated = F.silu(F.linear(h, layer.gate_weight, layer.gate_bias)).mul_(
                F.linear(h, layer.up_weight, layer.up_bias)
            )  # (1, intermediate)
            x = (
                torch.addmm(x, gated, layer.down_weight.t())
                if layer.down_bias is None
                else x + F.linear(gated, layer.down_weight, layer.down_bias)
            )
            if hidden is not None:
                hidden[index + 1].copy_(x[0])
        return x

    def _prefill_layers(self, x: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """Several new tokens at once (the prompt, or a run of forced tokens), causal among themselves."""
        import torch
        import torch.nn.functional as F

        eps, heads, kv_heads, head_dim = self.eps, self.heads, self.kv_heads, self.head_dim
        end = start + count
        cos, sin = self.cos[start:end, None], self.sin[start:end, None]  # (T, 1, head_dim)
        # A chunk after cached positions needs an explicit mask: SDPA's is_causal aligns to the top-left corner.
        mask = None
        if start:
            positions = torch.arange(end, device=x.device)
            mask = positions[None, :] <= positions[start:, None]  # (T, end)
        hidden = self.hidden
        if hidden is not None:
            hidden[0].copy_(x[-1])
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), layer.input_norm, eps)  # (T, hidden)
            q = F.linear(h, layer.q_weight, layer.q_bias).view(count, heads, head_dim)
            k = F.linear(h, layer.k_weight, layer.k_bias).view(count, kv_heads, head_dim)
            v = F.linear(h, layer.v_weight, layer.v_bias).view(count, kv_heads, head_dim)
            if layer.q_norm is not None:
                q = F.rms_norm(q, (head_dim,), layer.q_norm, eps)
                k = F.rms_norm(k, (head_dim,), layer.k_norm, eps)
            if layer.uses_rope:
                q = torch.addcmul(q * cos, _rotate(q, head_dim), sin)
                k = torch.addcmul(k * cos, _rotate(k, head_dim), sin)
            keys, values = self.keys[index], self.values[index]  # (kv_heads, capacity, head_dim)
            keys[:, start:end] = k.transpose(0, 1)
            values[:, start:end] = v.transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None],  # (1, heads, T, head_dim)
                keys[None, :, :end],
                values[None, :, :end],
                attn_mask=mask,
                is_causal=mask is None,
                scale=self.scaling,
                enable_gqa=heads != kv_heads,
            )  # (1, heads, T, head_dim)
            attended = attended[0].transpose(0, 1).reshape(count, heads * head_dim)
            x = x + F.linear(attended, layer.o_weight, layer.o_bias)
            h = F.rms_norm(x, (x.shape[-1],), layer.post_norm, eps)
            gated = F.silu(F.linear(h, layer.gate_weight, layer.gate_bias)) * F.linear(
                h, layer.up_weight, layer.up_bias
            )
            x = x + F.linear(gated, layer.down_weight, layer.down_bias)
            if hidden is not None:
                hidden[index + 1].copy_(x[-1])
        return x


def _layer(block: nn.Module, attention: nn.Module) -> _Layer:
    mlp = block.mlp
    q_norm = getattr(attention, "q_norm", None)
    k_norm = getattr(attention, "k_norm", None)
    return _Layer(
        input_norm=block.input_layernorm.weight,
        q_weight=attention.q_proj.weight,
        q_bias=attention.q_proj.bias,
        k_weight=attention.k_proj.weight,
        k_bias=attention.k_proj.bias,
        v_weight=attention.v_proj.weight,
        v_bias=attention.v_proj.bias,
        o_weight=attention.o_proj.weight,
        o_bias=attention.o_proj.bias,
        q_norm=q_norm.weight if q_norm is not None else None,
        k_norm=k_norm.weight if k_norm is not None else None,
        uses_rope=bool(getattr(attention, "use_rope", True)),
        post_norm=block.post_attention_layernorm.weight,
        gate_weight=mlp.gate_proj.weight,
        gate_bias=mlp.gate_proj.bias,
        up_weight=mlp.up_proj.weight,
        up_bias=mlp.up_proj.bias,
        down_weight=mlp.down_proj.weight,
        down_bias=mlp.down_proj.bias,
    )


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


def _rotate(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    import torch

    return torch.roll(x, head_dim // 2, dims=-1)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import torch.nn.functional as F

    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    import torch.nn.functional as F

    return F.linear(x, weight, bias)
