"""What the trainer measures of its model between steps: the validation loss on fixed windows, and samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoltui.engine.batches import SequentialWindows
from smoltui.engine.config import TrainConfig


@torch.no_grad()
def evaluate(model, val_ids, config: TrainConfig, context: int, device: str, autocast) -> float:
    """Mean loss over the first `eval_batches` sequential windows of the validation split: the same every time."""
    was_training = model.training
    model.eval()
    windows = SequentialWindows(val_ids, config.batch_size, context)
    available = max(1, (len(val_ids) - 1) // (config.batch_size * context))
    total = 0.0
    count = min(config.eval_batches, available)
    for _ in range(count):
        x, y = windows.next_batch()
        x, y = x.to(device), y.to(device)
        with autocast:
            logits = model(input_ids=x).logits  # (B, T, vocab)
        total += F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1)).item()
    model.train(was_training)
    return total / count


@torch.no_grad()
def generate_sample(
    model, tokenizer, prompt: str, length: int, temperature: float, context: int, seed: int, device: str, autocast
) -> str:
    """A sample that uses its own random stream, so sampling never shifts the training run's randomness."""
    was_training = model.training
    model.eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    if ids.numel() == 0:
        ids = torch.tensor([[tokenizer.eos_token_id or 0]], device=device)
    ids = ids[:, -(context - 1) :]
    new_tokens = max(1, min(length, context - ids.size(1)))
    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), autocast:
        torch.manual_seed(seed)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    model.train(was_training)
    return tokenizer.decode(out[0, ids.size(1) :], skip_special_tokens=True)
