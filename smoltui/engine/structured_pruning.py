"""Structured pruning: remove whole attention heads or whole layers, so the model gets smaller.

Heads: a head's importance is the norm of its slice of the attention's output projection (the columns that
carry the head's output into the residual stream). Every layer loses the same number of heads, because a
config holds one head count for all layers: with grouped-query attention, the same number of query heads from
each KV group, keeping k and v whole. Where q, k, v and the output projection are separate linears and the
family reads the head size from the config, they shrink; otherwise (GPT-2's fused c_attn, a family that
derives the head size from the head count, a `where` that selects only some layers) the heads' slices of the
output projection are zeroed, which silences them without shrinking anything.

Layers: a block's importance is how much it turns the residual stream on a short probe text (one minus the
mean cosine similarity of its input and output); the least important go.

Both rebuild the model from the edited config and the kept tensors, so the model in memory is exactly what
`save_pretrained` then `from_pretrained` gives back: layer indices, per-layer config lists and sizes derived
from the config are the fresh model's own.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING

from smoltui.engine.architecture import model_parts
from smoltui.engine.decoder import context_length
from smoltui.engine.errors import UserError
from smoltui.engine.models import summarize
from smoltui.engine.operation_result import OperationResult
from smoltui.engine.pruning import params_and_bytes, removal_count
from smoltui.engine.weight_selection import compile_pattern, no_match_error

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel

    from smoltui.engine.architecture import ModelParts
    from smoltui.engine.models import LoadedModel

OUTPUT_PROJECTIONS = ("o_proj", "out_proj", "dense", "c_proj", "wo")
PROBE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and the Seine runs through it. "
    "def add(a, b):\n    return a + b\n"
)
PROBE_TOKENS = 64


def prune_heads(loaded: LoadedModel, amount: float, where: str | None) -> OperationResult:
    """Remove (or, where the family cannot shrink, zero) the least important heads of every selected layer."""
    import torch

    model = loaded.model
    parts = model_parts(model)
    heads = model.config.num_attention_heads
    kv_heads = getattr(model.config, "num_key_value_heads", None) or heads
    groups = kv_heads if kv_heads < heads else 1  # with grouped-query attention, heads go from every group alike
    group_size = heads // groups
    if amount > 0 and group_size == 1:
        raise UserError("every layer of this model has a single attention head; prune layers instead.", field="kind")
    per_group = removal_count(amount, group_size)
    count = per_group * groups
    selected = _selected_blocks(model, parts, where)
    projections = [_output_projection(attention, parts.family) for attention in parts.attentions]
    head_dim = _head_dim(projections[0], heads)
    removed = {
        index: _least_important_heads(projections[index], heads, head_dim, groups, per_group) for index in selected
    }
    params_before, bytes_before = params_and_bytes(model)
    details = {
        "operation": "prune",
        "kind": "heads",
        "amount": amount,
        "where": where,
        "importance": "norm of the head's slice of the output projection",
        "heads_before": heads,
        "heads_removed_per_layer": count,
        "kv_heads_kept": groups > 1,
        "layers": selected,
        "removed_heads": {str(index): sorted(chosen) for index, chosen in removed.items()},
        "params_before": params_before,
        "bytes_before": bytes_before,
    }
    if count == 0:
        details.update(mode="none", params_after=params_before, bytes_after=bytes_before)
        return OperationResult(loaded, "removed no attention head: the amount is 0", details)

    obstacle = _shrink_obstacle(parts, len(selected))
    smaller = None if obstacle else _shrunk_model(model, parts, projections, removed, heads, head_dim, groups)
    if smaller is None:
        obstacle = obstacle or f"{parts.family} derives its head size from the head count"
        with torch.no_grad():
            for index, chosen in removed.items():
                _zero_head_slices(projections[index], sorted(chosen), head_dim)
        details.update(mode="zeroed", reason=obstacle, params_after=params_before, bytes_after=bytes_before)
        summary = (
            f"zeroed {count} of {heads} attention heads in each of {len(selected)} layers (their slices of the "
            f"output projection), as {obstacle}: nothing shrinks"
        )
        return OperationResult(loaded, summary, details)

    params_after, bytes_after = params_and_bytes(smaller)
    details.update(mode="removed", params_after=params_after, bytes_after=bytes_after)
    kept = " (k and v kept whole: grouped-query attention)" if groups > 1 else ""
    summary = (
        f"removed {count} of {heads} attention heads in each of {len(selected)} layers by output-projection norm"
        f"{kept}: {params_before:,} → {params_after:,} parameters"
    )
    return OperationResult(replace(loaded, model=smaller, summary=summarize(smaller)), summary, details)


def prune_layers(loaded: LoadedModel, amount: float, where: str | None) -> OperationResult:
    """Remove the `amount` of the selected blocks that change the residual stream least on a probe text."""
    model = loaded.model
    parts = model_parts(model)
    total = len(parts.blocks)
    if amount > 0 and total == 1:
        raise UserError("the model has a single layer, which cannot go; prune heads or weights instead.", field="kind")
    candidates = _selected_blocks(model, parts, where)
    if len(candidates) < total:  # other layers remain, so every candidate may go
        count = 0 if amount == 0 else max(round(amount * len(candidates)), 1)
    else:
        count = removal_count(amount, total)
    influence = _block_influence(model, parts, loaded.tokenizer)
    dropped = sorted(sorted(candidates, key=lambda index: influence[index])[:count])
    params_before, bytes_before = params_and_bytes(model)
    details = {
        "operation": "prune",
        "kind": "layers",
        "amount": amount,
        "where": where,
        "importance": "1 - cosine similarity of the block's input and output on a probe text",
        "influence": [round(value, 6) for value in influence],
        "layers_before": total,
        "removed_layers": dropped,
        "params_before": params_before,
        "bytes_before": bytes_before,
    }
    if not dropped:
        details.update(layers_after=total, params_after=params_before, bytes_after=bytes_before)
        return OperationResult(loaded, "removed no layer: the amount is 0", details)
    keep = [index for index in range(total) if index not in dropped]
    smaller = _rebuilt(model, _layer_config(model.config, keep, total), _layer_state(model, parts, keep))
    if smaller is None:
        raise UserError(f"smoltui cannot remove layers of {parts.family} models yet; prune heads or weights instead.")
    params_after, bytes_after = params_and_bytes(smaller)
    details.update(layers_after=len(keep), params_after=params_after, bytes_after=bytes_after)
    summary = (
        f"removed {len(dropped)} of {total} layers ({', '.join(map(str, dropped))}), those that change the residual "
        f"stream least: {params_before:,} → {params_after:,} parameters"
    )
    return OperationResult(replace(loaded, model=smaller, summary=summarize(smaller)), summary, details)


# -- heads -----------------------------------------------------------------------------------------------------


def _output_projection(attention: nn.Module, family: str) -> nn.Module:
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    for name in OUTPUT_PROJECTIONS:
        module = getattr(attention, name, None)
        if isinstance(module, nn.Linear | Conv1D):
            return module
    raise UserError(f"smoltui cannot find the attention output projection of {family} models; prune layers instead.")


def _is_conv1d(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def _head_dim(projection: nn.Module, heads: int) -> int:
    width = projection.weight.shape[0 if _is_conv1d(projection) else 1]  # the concatenated heads' outputs
    if width % heads:
        raise UserError(f"the attention output ({width} wide) does not split into {heads} heads; prune layers instead.")
    return width // heads


def _least_important_heads(projection, heads: int, head_dim: int, groups: int, per_group: int) -> set[int]:
    """The `per_group` heads of each KV group whose output-projection slices have the smallest norm."""
    import torch

    weight = projection.weight.detach().float()
    if _is_conv1d(projection):
        norms = weight.reshape(heads, head_dim, -1).norm(dim=(1, 2))  # (heads,)
    else:
        norms = weight.reshape(weight.shape[0], heads, head_dim).norm(dim=(0, 2))  # (heads,)
    by_group = norms.cpu().reshape(groups, heads // groups)  # (groups, heads per group)
    lowest = by_group.argsort(dim=1)[:, :per_group]  # (groups, per_group)
    offsets = torch.arange(groups)[:, None] * (heads // groups)  # (groups, 1): the first head of each group
    return {int(head) for head in (lowest + offsets).flatten()}


def _head_rows(chosen: list[int], head_dim: int) -> torch.Tensor:
    """The indices of the chosen heads' entries in a (heads * head_dim) axis."""
    import torch

    return torch.tensor([head * head_dim + offset for head in chosen for offset in range(head_dim)], dtype=torch.long)


def _zero_head_slices(projection: nn.Module, chosen: list[int], head_dim: int) -> None:
    rows = _head_rows(chosen, head_dim).to(projection.weight.device)
    projection.weight.index_fill_(0 if _is_conv1d(projection) else 1, rows, 0)


def _shrink_obstacle(parts: ModelParts, selected: int) -> str | None:
    """Why the heads cannot be cut out (before trying), or None."""
    from torch import nn

    if selected < len(parts.blocks):
        return "the config holds one head count for all layers and `where` selected only some"
    for attention in parts.attentions:
        linears = [getattr(attention, name, None) for name in ("q_proj", "k_proj", "v_proj")]
        if not all(isinstance(linear, nn.Linear) for linear in linears):
            return f"{parts.family} computes q, k and v in one fused projection"
        if _is_conv1d(_output_projection(attention, parts.family)):
            return f"{parts.family}'s output projection is a Conv1D"
    return None


def _shrunk_model(model, parts, projections, removed, heads, head_dim, groups) -> PreTrainedModel | None:
    """The model without the removed heads, or None where the family cannot be built with fewer heads."""
    names = {id(module): name for name, module in model.named_modules()}
    state = model.state_dict()
    kept_heads = heads - len(next(iter(removed.values())))
    for index, attention in enumerate(parts.attentions):
        keep = [head for head in range(heads) if head not in removed[index]]
        rows = _head_rows(keep, head_dim).to(projections[index].weight.device)
        prefix = names[id(attention)]
        shrunk = ("q_proj",) if groups > 1 else ("q_proj", "k_proj", "v_proj")
        for name in shrunk:
            linear = getattr(attention, name)
            state[f"{prefix}.{name}.weight"] = linear.weight.detach().index_select(0, rows)
            if linear.bias is not None:
                state[f"{prefix}.{name}.bias"] = linear.bias.detach().index_select(0, rows)
        projection_name = names[id(projections[index])]
        state[f"{projection_name}.weight"] = projections[index].weight.detach().index_select(1, rows)
    config = copy.deepcopy(model.config)
    config.num_attention_heads = kept_heads
    if groups == 1 and hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = kept_heads
    if hasattr(config, "head_dim"):
        config.head_dim = head_dim
    return _rebuilt(model, config, state)


# -- layers ----------------------------------------------------------------------------------------------------


def _block_influence(model: nn.Module, parts: ModelParts, tokenizer) -> list[float]:
    """Per block, 1 - the mean cosine similarity of its input and output residual streams on the probe text."""
    import torch

    inputs: dict[int, torch.Tensor] = {}
    influence: dict[int, float] = {}

    def before(index, args, kwargs):
        inputs[index] = args[0] if args else kwargs["hidden_states"]  # (1, T, hidden)

    def after(index, output):
        states = output[0] if isinstance(output, tuple) else output  # (1, T, hidden)
        similarity = torch.nn.functional.cosine_similarity(inputs[index].float(), states.float(), dim=-1)
        influence[index] = 1.0 - float(similarity.mean())

    handles = []
    for index, block in enumerate(parts.blocks):
        handles.append(block.register_forward_pre_hook(lambda _m, a, k, i=index: before(i, a, k), with_kwargs=True))
        handles.append(block.register_forward_hook(lambda _m, _a, out, i=index: after(i, out)))
    ids = tokenizer(PROBE_TEXT)["input_ids"][: min(PROBE_TOKENS, context_length(model) or PROBE_TOKENS)] or [0]
    device = parts.embed_tokens.weight.device
    try:
        with torch.inference_mode():
            model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return [influence[index] for index in range(len(parts.blocks))]


def _layer_config(config, keep: list[int], total: int):
    """`config` for the kept blocks: the layer count and every per-layer list (layer_types, no_rope_layers...)."""
    config = copy.deepcopy(config)
    for key, value in list(vars(config).items()):
        if "layer" in key and isinstance(value, list | tuple) and len(value) == total:
            setattr(config, key, type(value)(value[index] for index in keep))
    config.num_hidden_layers = len(keep)
    return config


def _layer_state(model: nn.Module, parts: ModelParts, keep: list[int]) -> dict[str, torch.Tensor]:
    """The state dict with the dropped blocks left out and the kept ones renumbered."""
    path = next(name for name, module in model.named_modules() if module is parts.blocks) + "."
    renumber = {str(old): str(new) for new, old in enumerate(keep)}
    state = {}
    for key, tensor in model.state_dict().items():
        if not key.startswith(path):
            state[key] = tensor
            continue
        index, _, rest = key[len(path) :].partition(".")
        if index in renumber:
            state[f"{path}{renumber[index]}.{rest}"] = tensor
    return state


# -- shared ----------------------------------------------------------------------------------------------------


def _selected_blocks(model: nn.Module, parts: ModelParts, where: str | None) -> list[int]:
    """The blocks with a parameter whose full name matches `where` (all of them without it)."""
    if where is None:
        return list(range(len(parts.blocks)))
    regex = compile_pattern(where, "where")
    path = next(name for name, module in model.named_modules() if module is parts.blocks)
    selected = [
        index
        for index, block in enumerate(parts.blocks)
        if any(regex.search(f"{path}.{index}.{name}") for name, _ in block.named_parameters())
    ]
    if not selected:
        names = [name for name, _ in model.named_parameters()]
        raise no_match_error(where, names, "where", "parameter of a layer")
    return selected


def _rebuilt(model: PreTrainedModel, config, state: dict[str, torch.Tensor]) -> PreTrainedModel | None:
    """A fresh model of `model`'s class built from `config` and given `state`'s tensors by reference, or None when
    the tensors do not fit what the config builds. Its computed buffers (RoPE tables) are its own."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        fresh = type(model)(config)
    try:
        fresh.load_state_dict(state, strict=True, assign=True)
    except RuntimeError:  # shapes or names differ: this family cannot be built that way
        return None
    fresh.tie_weights()
    fresh.generation_config = copy.deepcopy(model.generation_config)
    device = next(model.parameters()).device
    return fresh.to(device).eval()
