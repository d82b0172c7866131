"""Which weights an operation touches: a model's linear weight matrices, or the parameters a user's regex names.

Patterns are Python regular expressions searched (`re.search`) in dotted parameter names, so "mlp" picks every
MLP weight and "layers\\.0\\." the first block's. A weight tied to another (GPT-2's and SmolLM2's LM head share
the token embedding) is one tensor with two names: it matches when either name does and is changed once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.architecture import model_parts
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

EXAMPLE_NAMES = 4  # how many parameter names a "matches nothing" error lists


@dataclass(frozen=True)
class WeightMatrix:
    """One 2-D weight an operation may change, under the first of its names."""

    name: str  # e.g. "model.layers.0.mlp.down_proj.weight"
    weight: torch.Tensor  # the parameter itself: edits land in the model
    channel_axis: int  # the axis of output channels: 0 for Linear and Embedding, 1 for GPT-2's Conv1D


def compile_pattern(pattern: str, field: str) -> re.Pattern[str]:
    """`pattern` compiled, or UserError naming the regex mistake."""
    if not pattern.strip():
        raise UserError("the pattern is empty; give part of a parameter name, e.g. mlp or layers\\.0\\.", field=field)
    try:
        return re.compile(pattern)
    except re.error as error:
        message = f"the pattern {pattern!r} is not a valid regular expression ({error}); fix it."
        raise UserError(message, field=field) from None


def no_match_error(pattern: str, names: list[str], field: str, what: str = "parameter") -> UserError:
    """The error for a pattern that selects nothing: it lists a few names the pattern could have matched."""
    examples = ", ".join(names[:EXAMPLE_NAMES]) + (", ..." if len(names) > EXAMPLE_NAMES else "")
    message = f"the pattern {pattern!r} matches no {what} (they are named like {examples}); change it."
    return UserError(message, field=field)


def matching_parameters(model: nn.Module, pattern: str, field: str) -> list[tuple[str, torch.nn.Parameter]]:
    """Every distinct parameter that `pattern` matches under any of its names, with its first name.

    UserError when it matches none.
    """
    regex = compile_pattern(pattern, field)
    found: dict[int, tuple[str, torch.nn.Parameter]] = {}
    names: list[str] = []
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.append(name)
        if regex.search(name) and id(parameter) not in found:
            found[id(parameter)] = (name, parameter)
    if not found:
        raise no_match_error(pattern, names, field)
    return list(found.values())


def linear_weights(model: nn.Module, where: str | None, field: str = "where") -> list[WeightMatrix]:
    """The weight matrices of the model's linear maps, the token and position embeddings and the LM head left out;
    with `where`, every such matrix (embeddings and LM head included) whose name matches it.

    UserError when `where` matches none of them.
    """
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    parts = model_parts(model)
    embedding_ids = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    head_ids = {id(parts.lm_head.weight)} | embedding_ids
    regex = compile_pattern(where, field) if where is not None else None
    by_tensor: dict[int, WeightMatrix] = {}
    matched: set[int] = set()
    all_names: list[str] = []
    for module_name, module in model.named_modules(remove_duplicate=False):
        if not isinstance(module, nn.Linear | Conv1D | nn.Embedding):
            continue
        weight = module.weight
        name = f"{module_name}.weight" if module_name else "weight"
        all_names.append(name)
        if regex is None and id(weight) in head_ids:
            continue
        axis = 1 if isinstance(module, Conv1D) else 0
        by_tensor.setdefault(id(weight), WeightMatrix(name, weight, axis))
        if regex is None or regex.search(name):
            matched.add(id(weight))
    if regex is not None and not matched:
        raise no_match_error(where, all_names, field, "linear or embedding weight")
    return [matrix for key, matrix in by_tensor.items() if key in matched]
