"""Pruning a model: zero its smallest weights (unstructured), or remove whole attention heads or whole layers.

`prune` checks the request and hands it on; magnitude pruning lives here, heads and layers in
structured_pruning.py. Unstructured pruning works per matrix: each selected weight matrix loses the `amount`
of its entries with the smallest magnitude (no matrix is emptied to spare another), and the zeros are ordinary
values that `save_pretrained` keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError
from smoltui.engine.operation_result import OperationResult
from smoltui.engine.weight_selection import linear_weights

if TYPE_CHECKING:
    import torch

    from smoltui.engine.models import LoadedModel

PRUNE_KINDS = ("unstructured", "heads", "layers")


def prune(
    loaded: LoadedModel, *, amount: float, kind: str = "unstructured", where: str | None = None
) -> OperationResult:
    """Prune `amount` (0 to 1) of `loaded`'s weights, heads or layers; `where` (a regex over parameter names)
    restricts which matrices or blocks are candidates.

    unstructured: `amount` of each linear weight matrix (embeddings and LM head only where `where` names them).
    heads: `amount` of the heads of every layer (of every KV group with grouped-query attention).
    layers: `amount` of the blocks. The input model is consumed: it may be edited in place, or share tensors
    with the smaller model returned.
    """
    amount = checked_amount(amount)
    if kind not in PRUNE_KINDS:
        raise UserError(f"unknown prune kind {kind!r}; use unstructured, heads or layers.", field="kind")
    if kind == "unstructured":
        return prune_unstructured(loaded, amount, where)
    from smoltui.engine.structured_pruning import prune_heads, prune_layers

    return (prune_heads if kind == "heads" else prune_layers)(loaded, amount, where)


def checked_amount(amount: float) -> float:
    """`amount` as a float in 0–1, or UserError."""
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= 1:
        message = f"the amount must be a fraction from 0 to 1 (e.g. 0.3 for 30%), not {amount!r}."
        raise UserError(message, field="amount")
    return float(amount)


def prune_unstructured(loaded: LoadedModel, amount: float, where: str | None) -> OperationResult:
    """Zero the `amount` of each selected matrix's entries with the smallest magnitude, in place."""
    import torch

    matrices = linear_weights(loaded.model, where)
    total = zeroed = zeros = 0
    with torch.no_grad():
        for matrix in matrices:
            weight = matrix.weight
            count = round(amount * weight.numel())
            zeros += _zero_smallest(weight, count) if count else int((weight == 0).sum())
            zeroed += count
            total += weight.numel()
    sparsity = zeros / total if total else 0.0
    summary = (
        f"pruned {amount:.0%} of each of {len(matrices)} weight matrices by magnitude (unstructured, per matrix); "
        f"they are now {sparsity:.1%} zeros"
    )
    details = {
        "operation": "prune",
        "kind": "unstructured",
        "amount": amount,
        "where": where,
        "scope": "per matrix",
        "matrices": len(matrices),
        "weights": total,
        "zeroed": zeroed,
        "sparsity": sparsity,
    }
    return OperationResult(loaded, summary, details)


def _zero_smallest(weight: torch.Tensor, count: int) -> int:
    """Set exactly `count` entries of `weight` to zero, those of smallest magnitude (ties: the first ones), and
    return how many entries are zero after (more than `count` only where more were zero before)."""
    magnitudes = weight.detach().abs().float().flatten()  # (numel,)
    threshold = magnitudes.kthvalue(count).values
    mask = magnitudes <= threshold  # one pass; ties at the threshold are rare in trained weights
    selected = int(mask.sum())
    if selected > count:
        ties = (magnitudes == threshold).nonzero().flatten()
        mask[ties[count - (selected - len(ties)) :]] = False
    weight.masked_fill_(mask.view(weight.shape), 0)
    return selected if float(threshold) == 0 else count


def params_and_bytes(model) -> tuple[int, int]:
    """The model's parameters and their bytes (`parameters()` yields a tied weight once)."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters), sum(p.numel() * p.element_size() for p in parameters)


def removal_count(amount: float, size: int) -> int:
    """How many of `size` things to remove for `amount`: rounded, at least one when amount > 0, never all."""
    if amount == 0:
        return 0
    return min(max(round(amount * size), 1), size - 1) if size > 1 else 0
