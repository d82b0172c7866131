"""Optimizers and the learning-rate schedule of a run: AdamW, or Muon for hidden matrices with AdamW beside it."""

from __future__ import annotations

import math

import torch
from torch import nn

from smoltui.engine.config import TrainConfig


def learning_rate(step: int, config: TrainConfig) -> float:
    """The rate for optimizer step `step` (0-based): linear warmup, then cosine, linear or constant decay."""
    warmup = config.effective_warmup_steps
    if step < warmup:
        return config.lr * (step + 1) / (warmup + 1)
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.max_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = config.effective_min_lr
    if config.schedule == "linear":
        return config.lr - (config.lr - floor) * progress
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


def build_optimizers(
    model: nn.Module, config: TrainConfig, output_embedding: nn.Module | None, device: str
) -> list[torch.optim.Optimizer]:
    """AdamW with weight decay on matrices only (nanoGPT), or Muon on hidden matrices plus AdamW for the rest.

    Muon orthogonalises updates of 2-D weights inside the blocks; embeddings and the LM head stay with AdamW,
    as in the Muon recipe. Each group keeps its `base_lr` ratio so the schedule can scale all groups at once.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    if output_embedding is not None:
        embedding_ids |= {id(p) for p in output_embedding.parameters()}
    fused = device.startswith("cuda")
    betas = (config.beta1, config.beta2)

    if config.optimizer == "muon":
        hidden = [p for _, p in trainable if p.ndim == 2 and id(p) not in embedding_ids]
        hidden_ids = {id(p) for p in hidden}
        rest = [p for _, p in trainable if id(p) not in hidden_ids]
        muon = torch.optim.Muon(hidden, lr=config.lr, weight_decay=config.weight_decay, adjust_lr_fn="match_rms_adamw")
        adamw = torch.optim.AdamW(_decay_groups(rest, config.weight_decay), lr=config.lr, betas=betas, fused=fused)
        return [muon, adamw]
    params = [p for _, p in trainable]
    return [torch.optim.AdamW(_decay_groups(params, config.weight_decay), lr=config.lr, betas=betas, fused=fused)]


def set_learning_rate(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr


def _decay_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict]:
    """Matrices decay; biases and norm gains do not."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
