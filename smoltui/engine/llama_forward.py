"""A lean cached forward for the Llama-like families (Llama/SmolLM2, Mistral, Qwen2, Qwen3, SmolLM3).

A Hugging Face forward spends ~12 ms per decode step of a 30-layer model on work besides its matmuls (mask
building, cache bookkeeping, output records), half as much again as the matmuls of SmolLM2-135M on a 2-core
CPU. This step does the same arithmetic with the model's own weights (see llama_weights.py) and as few calls as
measurement found: a one-row RMSNorm in five calls, q/k/v as one matmul and q/k rotated together from tables
computed once by the model's own rotary module, one query against a preallocated static cache with no mask,
the residual adds inside the matmuls. Results match the model's forward to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoltui.engine.architecture import model_parts
from smoltui.engine.cached_forward import CachedForward
from smoltui.engine.llama_weights import head_scales, layer_tensors, rope_tables

if TYPE_CHECKING:
    import torch
    from torch import nn


class LlamaCachedForward(CachedForward):
    """The hand-written step over a static cache of `capacity` positions (see the module's docstring)."""

    kind = "fast"

    def __init__(self, model: nn.Module, capacity: int, *, capture_hidden: bool = False) -> None:
        import torch

        parts = model_parts(model)
        config = model.config
        weight = parts.embed_tokens.weight
        self.capacity = capacity
        self.length = 0
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = parts.attentions[0].head_dim
        self.eps = parts.final_norm.variance_epsilon
        self.hidden_shape = (weight.shape[1],)
        self.embedding = weight  # (vocab, hidden)
        self.final_norm = parts.final_norm.weight
        self.head_weight = parts.lm_head.weight.t()  # (hidden, vocab)
        self.head_bias = parts.lm_head.bias
        # One query against the cache: two bmm calls beat SDPA's set-up in fp32, SDPA beats oneDNN's 16-bit bmm.
        self.plain_attention = weight.dtype == torch.float32
        self.layers = layer_tensors(model)
        cache_shape = (len(self.layers), self.kv_heads, capacity, self.head_dim)
        self.keys = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.layer_keys, self.layer_values = list(self.keys), list(self.values)  # (kv_heads, capacity, head_dim)
        self.cos, self.sin = rope_tables(model, capacity)  # (capacity, heads + kv_heads, head_dim)
        self.head_scales = head_scales(model).to(weight.dtype)  # (heads + kv_heads, 1), for layers without RoPE
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.qkv_row = torch.empty(1, q_size + 2 * kv_size, dtype=weight.dtype, device=weight.device)
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
        return _project(torch, h, (self.head_weight, self.head_bias))  # (T|1, vocab)

    def close(self) -> None:
        self.keys = self.values = self.layer_keys = self.layer_values = self.hidden = self.layers = None

    def _decode_layers(self, x: torch.Tensor, position: int) -> torch.Tensor:
        """One new token: its query attends to every cached key, so no mask is needed."""
        import torch
        import torch.nn.functional as F

        eps, heads, kv_heads, head_dim = self.eps, self.heads, self.kv_heads, self.head_dim
        group, half, end, qk_size = heads // kv_heads, head_dim // 2, position + 1, (heads + kv_heads) * head_dim
        norm_eps = self.hidden_shape[0] * eps
        cos, sin = self.cos[position], self.sin[position]  # (heads + kv_heads, head_dim)
        hidden = self.hidden
        if hidden is not None:
            hidden[0].copy_(x[0])
        for index, (layer, keys, values) in enumerate(
            zip(self.layers, self.layer_keys, self.layer_values, strict=True)
        ):
            h = _rms_norm_one(torch, x, layer.input_norm_scaled, norm_eps)  # (1, hidden)
            qkv = (
                _project(torch, h, layer.qkv[0])
                if len(layer.qkv) == 1
                else _project_into(torch, h, layer.qkv, self.qkv_row)
            )
            qk = qkv[:, :qk_size].view(heads + kv_heads, head_dim)
            if layer.q_norm is not None:
                qk = torch.cat(
                    [
                        F.rms_norm(qk[:heads], (head_dim,), layer.q_norm, eps),
                        F.rms_norm(qk[heads:], (head_dim,), layer.k_norm, eps),
                    ]
                )
            if layer.uses_rope:
                qk = torch.addcmul(qk * cos, torch.roll(qk, half, -1), sin)  # the query rows come out scaled
            else:
                qk = qk * self.head_scales
            keys[:, position] = qk[heads:]
            values[:, position] = qkv[:, qk_size:].view(kv_heads, head_dim)
            q = qk[:heads].view(kv_heads, group, head_dim)
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
            x = _residual(torch, x, attended.view(1, heads * head_dim), layer.o_proj)
            h = _rms_norm_one(torch, x, layer.post_norm_scaled, norm_eps)
            x = _residual(torch, x, _gated(torch, F, h, layer.gate_up), layer.down_proj)
            if hidden is not None:
                hidden[index + 1].copy_(x[0])
        return x

    def _prefill_layers(self, x: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """Several new tokens at once (the prompt, or a run of forced tokens), causal among themselves."""
        import torch
        import torch.nn.functional as F

        eps, shape, heads, kv_heads, head_dim = self.eps, self.hidden_shape, self.heads, self.kv_heads, self.head_dim
        half, end, qk_size = head_dim // 2, start + count, (heads + kv_heads) * head_dim
        cos, sin = self.cos[start:end], self.sin[start:end]  # (T, heads + kv_heads, head_dim)
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
            qkv = torch.cat([_project(torch, h, projection) for projection in layer.qkv], -1)  # (T, q + 2 kv)
            qk = qkv[:, :qk_size].reshape(count, heads + kv_heads, head_dim)
            if layer.q_norm is not None:
                qk = torch.cat(
                    [
                        F.rms_norm(qk[:, :heads], (head_dim,), layer.q_norm, eps),
                        F.rms_norm(qk[:, heads:], (head_dim,), layer.k_norm, eps),
                    ],
                    dim=1,
                )
            if layer.uses_rope:
                qk = torch.addcmul(qk * cos, torch.roll(qk, half, -1), sin)
            else:
                qk = qk * self.head_scales
            keys[:, start:end] = qk[:, heads:].transpose(0, 1)
            values[:, start:end] = qkv[:, qk_size:].reshape(count, kv_heads, head_dim).transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                qk[:, :heads].transpose(0, 1)[None],  # (1, heads, T, head_dim)
                keys[None, :, :end],
                values[None, :, :end],
                attn_mask=mask,
                is_causal=mask is None,
                scale=1.0,
                enable_gqa=heads != kv_heads,
            )  # (1, heads, T, head_dim)
            x = _residual(torch, x, attended[0].transpose(0, 1).reshape(count, heads * head_dim), layer.o_proj)
            h = F.rms_norm(x, shape, layer.post_norm, eps)
            x = _residual(torch, x, _gated(torch, F, h, layer.gate_up), layer.down_proj)
            if hidden is not None:
                hidden[index + 1].copy_(x[-1])
        return x


# The helpers take `torch` (and F) from their caller, so the per-token path does no import lookups.


def _rms_norm_one(torch, x: torch.Tensor, weight_scaled: torch.Tensor, norm_eps: float) -> torch.Tensor:
    """RMSNorm of one row (1, hidden) in five calls where F.rms_norm makes about nine (measured: ~1 ms a step).

    x / sqrt(mean(x²) + eps) * w = x / sqrt(x·x + hidden·eps) * (w·sqrt(hidden)); x·x is one matmul call.
    """
    return torch.mul(x, torch.mm(x, x.t()).add_(norm_eps).rsqrt_()).mul_(weight_scaled)


def _project(torch, x: torch.Tensor, projection) -> torch.Tensor:
    """x @ weight_t (+ bias) in one call."""
    weight_t, bias = projection
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


def _project_into(torch, x: torch.Tensor, projections: list, row: torch.Tensor) -> torch.Tensor:
    """Several projections of one row written side by side into `row` (1, total), as a merged one would."""
    start = 0
    for weight_t, bias in projections:
        out = row[:, start : start + weight_t.shape[1]]
        torch.mm(x, weight_t, out=out) if bias is None else torch.addmm(bias, x, weight_t, out=out)
        start += weight_t.shape[1]
    return row


def _residual(torch, x: torch.Tensor, y: torch.Tensor, projection) -> torch.Tensor:
    """x + y @ weight_t (+ bias): the residual add inside the matmul call."""
    weight_t, bias = projection
    out = torch.addmm(x, y, weight_t)
    return out if bias is None else out.add_(bias)


def _gated(torch, F, h: torch.Tensor, gate_up: list) -> torch.Tensor:
    """silu(gate(h)) * up(h), (T, intermediate)."""
    if len(gate_up) == 2:
        return F.silu(_project(torch, h, gate_up[0])).mul_(_project(torch, h, gate_up[1]))
    merged = _project(torch, h, gate_up[0])  # (T, 2 intermediate)
    size = merged.shape[-1] // 2
    return F.silu(merged[:, :size]).mul_(merged[:, size:])
