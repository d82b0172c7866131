"""A lean cached forward for the Llama-like families (Llama/SmolLM2, Mistral, Qwen2, Qwen3, SmolLM3).

A Hugging Face forward spends ~12 ms per decode step of a 30-layer model on work besides its matmuls (mask
building, cache bookkeeping, output records), half as much again as the matmuls of SmolLM2-135M on a 2-core
CPU. This step does the same arithmetic with the model's own weights (see llama_weights.py) and as few calls as
measurement found: a one-row RMSNorm in five calls, q/k/v as one matmul and q/k rotated together from tables
computed once by the model's own rotary module, one query against a preallocated static cache with no mask,
the residual adds inside the matmuls. Results match the model's forward to float rounding.

The per-token layer loop, `decode_layers`, runs as TorchScript where torch still offers it: the interpreter
makes the same calls with no Python between them, which measured 2-4 ms faster a step on SmolLM2 (~10 %).
`torch.jit.script` is deprecated, so its warning is silenced here and, should it fail or be gone, the same
function runs as plain Python.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from smoltui.engine.architecture import model_parts
from smoltui.engine.cached_forward import CachedForward
from smoltui.engine.llama_weights import head_scales, layer_tensors, rope_tables

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn


class LlamaCachedForward(CachedForward):
    """The hand-written step over a static cache of `capacity` positions (see the module's docstring)."""

    kind = "fast"

    def __init__(self, model: nn.Module, capacity: int, *, capture_hidden: bool = False, script: bool = True) -> None:
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
        self.layers = layer_tensors(model)
        cache_shape = (len(self.layers), self.kv_heads, capacity, self.head_dim)
        self.keys = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.empty(cache_shape, dtype=weight.dtype, device=weight.device)
        self.layer_keys, self.layer_values = list(self.keys), list(self.values)  # (kv_heads, capacity, head_dim)
        self.cos, self.sin = rope_tables(model, capacity)  # (capacity, heads + kv_heads, head_dim)
        self.head_scales = head_scales(model).to(weight.dtype)  # (heads + kv_heads, 1), for layers without RoPE
        self.hidden = (
            torch.empty(len(self.layers) + 1, weight.shape[1], dtype=weight.dtype, device=weight.device)
            if capture_hidden
            else None
        )
        self.decode_layers = scripted_decode_layers() if script else None
        self.decode_layers = self.decode_layers or decode_layers
        # One query against the cache: two bmm calls beat SDPA's set-up in fp32, SDPA beats oneDNN's 16-bit bmm.
        plain_attention = weight.dtype == torch.float32
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        # decode_layers' arguments after (x, position, cos, sin): everything that does not change between tokens.
        self.decode_arguments = (
            self.head_scales,
            [layer.input_norm_scaled for layer in self.layers],
            [layer.post_norm_scaled for layer in self.layers],
            [layer.qkv[0][0] for layer in self.layers],
            [layer.qkv[0][1] for layer in self.layers],
            [layer.qkv[1][0] if len(layer.qkv) == 3 else None for layer in self.layers],
            [layer.qkv[1][1] if len(layer.qkv) == 3 else None for layer in self.layers],
            [layer.qkv[2][0] if len(layer.qkv) == 3 else None for layer in self.layers],
            [layer.qkv[2][1] if len(layer.qkv) == 3 else None for layer in self.layers],
            [layer.o_proj[0] for layer in self.layers],
            [layer.o_proj[1] for layer in self.layers],
            [layer.q_norm for layer in self.layers],
            [layer.k_norm for layer in self.layers],
            [layer.uses_rope for layer in self.layers],
            [layer.gate_up[0][0] for layer in self.layers],
            [layer.gate_up[0][1] for layer in self.layers],
            [layer.gate_up[1][0] if len(layer.gate_up) == 2 else None for layer in self.layers],
            [layer.gate_up[1][1] if len(layer.gate_up) == 2 else None for layer in self.layers],
            [layer.down_proj[0] for layer in self.layers],
            [layer.down_proj[1] for layer in self.layers],
            self.layer_keys,
            self.layer_values,
            self.hidden,
            self.heads,
            self.kv_heads,
            self.head_dim,
            q_size + kv_size,
            self.eps,
            plain_attention,
        )

    def __call__(self, token_ids: torch.Tensor, *, all_logits: bool = False) -> torch.Tensor:

        count = token_ids.shape[0]
        start = self.length
        if start + count > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {start} + {count} do not fit")
        x = self.embedding[token_ids]  # (T, hidden)
        if count == 1:
            x = self.decode_layers(x, start, self.cos[start], self.sin[start], *self.decode_arguments)
        else:
            x = self._prefill_layers(x, start, count)
        self.length = start + count
        if not all_logits:
            x = x[-1:]
        h = F.rms_norm(x, self.hidden_shape, self.final_norm, self.eps)
        weight_t, bias = self.head_weight, self.head_bias
        return torch.mm(h, weight_t) if bias is None else torch.addmm(bias, h, weight_t)  # (T|1, vocab)

    def close(self) -> None:
        self.keys = self.values = self.layer_keys = self.layer_values = self.hidden = None
        self.layers = self.decode_arguments = None

    def _prefill_layers(self, x: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """Several new tokens at once (the prompt, or a run of forced tokens), causal among themselves."""

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
                q = F.rms_norm(qk[:, :heads], (head_dim,), layer.q_norm, eps)
                qk = torch.cat([q, F.rms_norm(qk[:, heads:], (head_dim,), layer.k_norm, eps)], dim=1)
            if layer.uses_rope:
                qk = torch.addcmul(qk * cos, torch.roll(qk, half, -1), sin)  # the query rows come out scaled
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


def decode_layers(
    x: Tensor,
    position: int,
    cos: Tensor,
    sin: Tensor,
    head_scales: Tensor,
    input_norms: list[Tensor],
    post_norms: list[Tensor],
    qkv_weights: list[Tensor],  # q, k and v merged; or q alone where k_weights and v_weights are given
    qkv_biases: list[Optional[Tensor]],  # noqa: UP045 (TorchScript reads Optional, not `X | None`)
    k_weights: list[Optional[Tensor]],  # noqa: UP045
    k_biases: list[Optional[Tensor]],  # noqa: UP045
    v_weights: list[Optional[Tensor]],  # noqa: UP045
    v_biases: list[Optional[Tensor]],  # noqa: UP045
    o_weights: list[Tensor],
    o_biases: list[Optional[Tensor]],  # noqa: UP045
    q_norms: list[Optional[Tensor]],  # noqa: UP045
    k_norms: list[Optional[Tensor]],  # noqa: UP045
    uses_rope: list[bool],
    gate_weights: list[Tensor],
    gate_biases: list[Optional[Tensor]],  # noqa: UP045
    up_weights: list[Optional[Tensor]],  # noqa: UP045  None where gate and up are merged into gate_weights
    up_biases: list[Optional[Tensor]],  # noqa: UP045
    down_weights: list[Tensor],
    down_biases: list[Optional[Tensor]],  # noqa: UP045
    keys: list[Tensor],
    values: list[Tensor],
    hidden: Optional[Tensor],  # noqa: UP045
    heads: int,
    kv_heads: int,
    head_dim: int,
    qk_size: int,
    eps: float,
    plain_attention: bool,
) -> Tensor:
    """Every block for one new token at `position`, x (1, hidden); weights transposed to (in, out).

    Written for TorchScript (plain annotations, no closures) and run as plain Python where it is not available.
    """
    group = heads // kv_heads
    half = head_dim // 2
    end = position + 1
    # RMSNorm of one row: x / sqrt(mean(x²) + eps) * w = x / sqrt(x·x + hidden·eps) * (w·sqrt(hidden)), with
    # x·x one matmul: five calls where F.rms_norm makes about nine (measured ~1 ms a step).
    norm_eps = x.shape[1] * eps
    if hidden is not None:
        hidden[0].copy_(x[0])
    for i in range(len(qkv_weights)):
        h = torch.mul(x, torch.mm(x, x.t()).add_(norm_eps).rsqrt_()).mul_(input_norms[i])
        qkv_bias = qkv_biases[i]
        qkv = torch.mm(h, qkv_weights[i]) if qkv_bias is None else torch.addmm(qkv_bias, h, qkv_weights[i])
        k_weight = k_weights[i]
        v_weight = v_weights[i]
        if k_weight is not None and v_weight is not None:  # separate q, k, v (a model too big to merge)
            k_bias = k_biases[i]
            v_bias = v_biases[i]
            k = torch.mm(h, k_weight) if k_bias is None else torch.addmm(k_bias, h, k_weight)
            v = torch.mm(h, v_weight) if v_bias is None else torch.addmm(v_bias, h, v_weight)
            qkv = torch.cat([qkv, k, v], 1)
        qk = qkv[:, :qk_size].view(heads + kv_heads, head_dim)
        q_norm = q_norms[i]
        k_norm = k_norms[i]
        if q_norm is not None and k_norm is not None:
            q = torch.rms_norm(qk[:heads], [head_dim], q_norm, eps)
            qk = torch.cat([q, torch.rms_norm(qk[heads:], [head_dim], k_norm, eps)])
        if uses_rope[i]:
            qk = torch.addcmul(qk * cos, torch.roll(qk, half, -1), sin)  # the query rows come out scaled
        else:
            qk = qk * head_scales
        layer_keys = keys[i]
        layer_values = values[i]
        layer_keys[:, position] = qk[heads:]
        layer_values[:, position] = qkv[:, qk_size:].view(kv_heads, head_dim)
        q = qk[:heads].view(kv_heads, group, head_dim)
        if plain_attention:
            scores = torch.bmm(q, layer_keys[:, :end].transpose(1, 2))  # (kv_heads, group, T)
            attended = torch.bmm(torch.softmax(scores, -1), layer_values[:, :end])  # (kv_heads, group, head_dim)
        else:
            attended = F.scaled_dot_product_attention(
                q.view(1, heads, 1, head_dim),
                layer_keys[:, :end].unsqueeze(0),
                layer_values[:, :end].unsqueeze(0),
                scale=1.0,
                enable_gqa=True,
            )  # (1, heads, 1, head_dim)
        x = torch.addmm(x, attended.view(1, heads * head_dim), o_weights[i])  # the residual add inside the matmul
        o_bias = o_biases[i]
        if o_bias is not None:
            x = x + o_bias
        h = torch.mul(x, torch.mm(x, x.t()).add_(norm_eps).rsqrt_()).mul_(post_norms[i])
        gate_bias = gate_biases[i]
        gate = torch.mm(h, gate_weights[i]) if gate_bias is None else torch.addmm(gate_bias, h, gate_weights[i])
        up_weight = up_weights[i]
        if up_weight is None:  # gate and up merged: (1, 2 intermediate)
            size = gate.shape[1] // 2
            gated = F.silu(gate[:, :size]).mul_(gate[:, size:])
        else:
            up_bias = up_biases[i]
            up = torch.mm(h, up_weight) if up_bias is None else torch.addmm(up_bias, h, up_weight)
            gated = F.silu(gate).mul_(up)
        x = torch.addmm(x, gated, down_weights[i])
        down_bias = down_biases[i]
        if down_bias is not None:
            x = x + down_bias
        if hidden is not None:
            hidden[i + 1].copy_(x[0])
    return x


@functools.cache
def scripted_decode_layers() -> Callable | None:
    """`decode_layers` compiled by TorchScript, or None where torch cannot (then it runs as Python)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.script is deprecated"
            return torch.jit.script(decode_layers)
    except Exception:  # noqa: BLE001 -- any failure to compile leaves the same function in plain Python
        return None


def _project(torch, x: torch.Tensor, projection) -> torch.Tensor:
    """x @ weight_t (+ bias) in one call."""
    weight_t, bias = projection
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


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
