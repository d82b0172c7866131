"""Weight-only quantization: each selected weight matrix rounded to 8 or 4 bits per output channel, then back.

Round to nearest, symmetric, one scale per output channel: scale = the channel's largest magnitude / (2^(bits-1)
- 1), so an 8-bit channel keeps 255 levels and a 4-bit one 15. The rounded weights are written back in the
model's dtype at once (quantize, then dequantize), so the model stays an ordinary transformers model: the folder
`save_pretrained` writes loads with `AutoModelForCausalLM` anywhere, and decodes at the speed it had. What the
weights would take packed (`bits` per entry plus a 16-bit scale per channel, as int8/int4 formats store them) is
reported beside what they take now.

Why not a library (tried on SmolLM2-135M, this 2-core CPU, 2026-12, through transformers 5.23's loaders):
torchao 0.18's int8 weight-only decoded ~16x slower than fp32 and its folder holds torchao tensor subclasses
that need torchao to load; its int4 needs another package (mslk) and failed. bitsandbytes 0.50.2 ran 8 and 4
bits on the CPU, both slower than fp32, its folders need bitsandbytes to load, and its 4-bit folder read back
wrote garbage. Neither gives the ordinary folder every other operation yields, nor faster decoding here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError
from smoltui.engine.operation_result import OperationResult
from smoltui.engine.pruning import params_and_bytes
from smoltui.engine.weight_selection import linear_weights
from smoltui.formatting import format_bytes

if TYPE_CHECKING:
    import torch

    from smoltui.engine.models import LoadedModel

SUPPORTED_BITS = (8, 4)
SCALE_BYTES = 2  # one fp16 scale per output channel


def quantize(loaded: LoadedModel, *, bits: int, where: str | None = None) -> OperationResult:
    """Quantize `loaded`'s linear weight matrices (or those `where` names) to `bits`, in place.

    Embeddings and the LM head are left alone unless `where` names them.
    """
    import torch

    if isinstance(bits, bool) or bits not in SUPPORTED_BITS:
        raise UserError(f"{bits!r} bits is not supported; use 8 or 4.", field="bits")
    matrices = linear_weights(loaded.model, where)
    _, model_bytes = params_and_bytes(loaded.model)
    weights = bytes_before = bytes_after = 0
    abs_error = squared_error = squared_norm = 0.0
    with torch.no_grad():
        for matrix in matrices:
            weight = matrix.weight
            original = weight.detach().float()  # the weight itself where it is fp32: read before the copy below
            rounded = round_to_grid(original, bits, matrix.channel_axis).to(weight.dtype)
            error = rounded.float() - original  # what the model will compute with, after the cast to its dtype
            abs_error += float(torch.linalg.vector_norm(error, ord=1))
            squared_error += float(torch.linalg.vector_norm(error)) ** 2
            squared_norm += float(torch.linalg.vector_norm(original)) ** 2
            weight.copy_(rounded)
            weights += weight.numel()
            bytes_before += weight.numel() * weight.element_size()
            bytes_after += math.ceil(weight.numel() * bits / 8) + weight.shape[matrix.channel_axis] * SCALE_BYTES
    mean_error = abs_error / weights if weights else 0.0
    relative_error = math.sqrt(squared_error / squared_norm) if squared_norm else 0.0
    summary = (
        f"quantized {len(matrices)} weight matrices to {bits} bits per output channel (round to nearest): "
        f"{format_bytes(bytes_before)} → {format_bytes(bytes_after)} packed, mean error {mean_error:.2g} "
        f"({relative_error:.1%} of their norm); kept dequantized in {loaded.summary.dtype}"
    )
    details = {
        "operation": "quantize",
        "bits": bits,
        "where": where,
        "scheme": "round to nearest, symmetric, per output channel; dequantized into the model's dtype",
        "matrices": len(matrices),
        "weights": weights,
        "bytes_before": bytes_before,
        "bytes_after": bytes_after,
        "model_bytes_before": model_bytes,
        "model_bytes_after": model_bytes - bytes_before + bytes_after,
        "mean_abs_error": mean_error,
        "relative_error": relative_error,
    }
    return OperationResult(loaded, summary, details)


def round_to_grid(weight: torch.Tensor, bits: int, channel_axis: int) -> torch.Tensor:
    """`weight` (2-D, float) with each output channel rounded to its own symmetric `bits`-bit grid."""
    import torch

    levels = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=1 - channel_axis, keepdim=True) / levels  # (out, 1) or (1, out)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel stays zero
    return (weight / scale).round_().clamp_(-levels, levels).mul_(scale)  # in place after the first: one copy
