"""The logit lens's head: a model's own way from a residual-stream row to next-token logits, for any family.

The final norm, then OPT's `project_out` where it has one, the LM head, then the logit transforms the config
names: a softcap tanh(x / c) · c (`final_logit_softcapping`: Gemma 2/3), a multiplier (`logit_scale`: Cohere),
a divisor (`logits_scaling`: Granite). A family without a final norm (OPT built with post-norm blocks, whose
block outputs are already normed) gets none. Gemma's embedding scale is applied before the first block, so the
residual stream already carries it. `check_reproduces` compares the last row with the model's own logits and
refuses a model whose output this head does not reproduce, rather than show a lens that is wrong.

Precision. The final layer's row is always computed in the model's dtype, so it equals the model's output. The
other rows of a lens are (layers × positions) rows through the LM head: for SmolLM2 a (30, 576) × (576, 49152)
matrix product per generated token, which on a CPU costs about as much as the decode step itself in fp32 but
a quarter of that in bf16 where the CPU multiplies bf16 natively (AMX, AVX-512 BF16). So `precision="auto"`
projects those rows through a bf16 copy of the head on such a CPU when the model is fp32 and the head large;
their logits then carry bf16 rounding (about 0.4 % of a logit: ranks in the thousands and probabilities of a
few per cent move a little; the top tokens rarely). `precision="exact"` keeps every row in the model's dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from smoltui.engine.architecture import model_parts
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

Precision = Literal["auto", "exact", "fast"]  # "fast": bf16 rows for any fp32 head on the CPU, native bf16 or not
# Below this many head parameters the fp32 product is cheap next to everything else a lens does.
FAST_HEAD_MIN_PARAMETERS = 1 << 22


class LensHead:
    """The model's own output head, applied to residual-stream rows (see the module docstring)."""

    def __init__(self, model: nn.Module, precision: Precision = "auto") -> None:
        import torch

        parts = model_parts(model)
        config = model.config.get_text_config(decoder=True)
        self.family = parts.family
        self.final_norm = parts.final_norm
        self.project_out = _project_out(model, parts.blocks)
        self.lm_head = parts.lm_head
        self.softcap = _number(config, "final_logit_softcapping")
        self.multiplier = _number(config, "logit_scale")
        self.divisor = _number(config, "logits_scaling")
        self.vocab = parts.lm_head.weight.shape[0]
        self.bf16_weight = None  # (hidden, vocab): the head for every row but the final layer's
        if precision != "exact" and _bf16_pays_off(parts.lm_head, precision):
            self.bf16_weight = parts.lm_head.weight.detach().to(torch.bfloat16).t().contiguous()

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Logits (..., vocab) float32 of residual rows (..., hidden), computed in the model's dtype."""
        import torch

        with torch.inference_mode():
            return self._transformed(self.lm_head(self._before_head(rows)).float())

    def stream_logits(self, residual: torch.Tensor, final_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (rows, P, vocab) float32 of a residual stream (rows, P, hidden) whose last row is the final
        layer's: that row in the model's dtype (or `final_logits` (P, vocab), the model's own, where the caller
        has them already), the others at the head's precision."""
        import torch

        if final_logits is None and (self.bf16_weight is None or residual.shape[0] == 1):
            return self.logits(residual)
        with torch.inference_mode():
            rows, positions = residual.shape[:2]
            logits = torch.empty(rows, positions, self.vocab, dtype=torch.float32, device=residual.device)
            logits[-1] = self.logits(residual[-1]) if final_logits is None else final_logits[:, : self.vocab]
            if rows == 1:
                return logits
            if self.bf16_weight is None:
                logits[:-1] = self.logits(residual[:-1])
                return logits
            hidden = self._before_head(residual[:-1]).to(torch.bfloat16)  # (rows - 1, P, hidden)
            product = torch.mm(hidden.reshape(-1, hidden.shape[-1]), self.bf16_weight)  # ((rows - 1) P, vocab)
            logits[:-1] = product.view(rows - 1, positions, self.vocab)
            if self.lm_head.bias is not None:
                logits[:-1] += self.lm_head.bias
            logits[:-1] = self._transformed(logits[:-1])
            return logits

    def check_reproduces(self, last_row: torch.Tensor, model_logits: torch.Tensor) -> None:
        """UserError unless the lens of `last_row` (hidden,) gives the model's own `model_logits` (vocab,)."""
        import torch

        mine = self.logits(last_row)
        scale = float(model_logits.abs().max()) + 1.0
        tolerance = 8 * torch.finfo(last_row.dtype).eps * scale
        if float((mine - model_logits).abs().max()) > tolerance:
            raise UserError(
                f"not supported yet: the logit lens of {self.family} does not reproduce the model's own output "
                "(its logits are transformed in a way smoltui does not know); use another model."
            )

    def _before_head(self, rows: torch.Tensor) -> torch.Tensor:
        hidden = rows if self.final_norm is None else self.final_norm(rows)
        return hidden if self.project_out is None else self.project_out(hidden)

    def _transformed(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        if self.multiplier is not None:
            logits = logits * self.multiplier
        if self.divisor is not None:
            logits = logits / self.divisor
        return logits


def _bf16_pays_off(lm_head: nn.Module, precision: Precision) -> bool:
    """Whether the rows but the last go through a bf16 copy of the head (see the module docstring)."""
    import torch
    from torch import nn

    weight = getattr(lm_head, "weight", None)
    if type(lm_head) is not nn.Linear or weight.dtype != torch.float32 or weight.device.type != "cpu":
        return False
    if precision == "fast":
        return True
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return native and weight.numel() >= FAST_HEAD_MIN_PARAMETERS


def _project_out(model: nn.Module, blocks: nn.Module) -> nn.Module | None:
    """OPT's projection from the hidden size to a smaller word-embedding size, beside its blocks."""
    for module in model.modules():
        if any(child is blocks for child in module.children()):
            return getattr(module, "project_out", None)
    return None


def _number(config, name: str) -> float | None:
    value = getattr(config, name, None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
