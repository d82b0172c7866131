"""What the update hooks do to real training: freeze keeps weights, clip_per_layer caps blocks, grad_noise anneals.

Each test loads a tiny GPT-2 from a folder as a user would, runs real backward passes on it, and applies the hooks
exactly where the trainer does: after backward, before the optimizer step.
"""

from __future__ import annotations

import pytest
import torch

from smoltui.engine.architecture import model_parts
from smoltui.engine.config import TrainConfig
from smoltui.engine.hooks import build_hooks
from smoltui.engine.models import load_model
from smoltui.engine.optim import build_optimizers


@pytest.fixture
def model(tiny_model_folder):
    loaded = load_model(str(tiny_model_folder), device="cpu", dtype="fp32")
    loaded.model.train()
    return loaded.model


def blocks(model) -> list[torch.nn.Module]:
    return list(model_parts(model).blocks)


def backward(model, seed: int = 0, loss_scale: float = 1.0) -> None:
    """One real forward and backward pass on a fixed batch of random tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(model.config.vocab_size, (4, 16), generator=generator)  # (B, T)
    loss = model(input_ids=ids, labels=ids).loss
    (loss * loss_scale).backward()


def gradient_norm(parameters) -> float:
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_freeze_keeps_matching_parameters_bit_for_bit_while_the_others_learn(model, optimizer):
    prefix = "transformer.h.0."
    hooks = build_hooks([f"freeze:{prefix}"], model, blocks(model))  # before the optimizers, as the trainer does
    config = TrainConfig(lr=1e-2, optimizer=optimizer)
    optimizers = build_optimizers(model, config, model.get_output_embeddings(), "cpu")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for step in range(3):
        backward(model, seed=step)
        hooks.updates.apply(step)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)

    frozen = [name for name in before if name.startswith(prefix)]
    assert frozen and len(frozen) < len(before)
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, before[name]), f"{name} moved"
        else:
            assert not torch.equal(parameter, before[name]), f"{name} did not learn"


def test_clip_per_layer_caps_each_blocks_gradient_norm_and_keeps_its_direction(model):
    max_norm = 0.5
    model_blocks = blocks(model)
    hooks = build_hooks([f"clip_per_layer:{max_norm}"], model, model_blocks)
    backward(model, loss_scale=1000.0)  # gradients far larger than max_norm
    block_ids = {id(p) for block in model_blocks for p in block.parameters()}
    outside = {name: p.grad.clone() for name, p in model.named_parameters() if id(p) not in block_ids}
    unclipped = [[p.grad.clone() for p in block.parameters()] for block in model_blocks]
    norms_before = [gradient_norm(block.parameters()) for block in model_blocks]
    assert max(norms_before) > max_norm

    hooks.updates.apply(0)

    for block, grads, norm_before in zip(model_blocks, unclipped, norms_before, strict=True):
        assert gradient_norm(block.parameters()) <= max_norm * (1 + 1e-5)
        factor = min(1.0, max_norm / norm_before)
        for parameter, grad in zip(block.parameters(), grads, strict=True):
            torch.testing.assert_close(parameter.grad, grad * factor, rtol=1e-4, atol=1e-9)
    for name, parameter in model.named_parameters():
        if name in outside:
            assert torch.equal(parameter.grad, outside[name]), f"{name} is outside the blocks but was clipped"


def test_grad_noise_adds_gaussian_noise_of_the_annealed_scale_and_the_seed_repeats_it(model):
    std = 0.1
    hooks = build_hooks([f"grad_noise:{std}"], model, blocks(model))
    backward(model)
    parameters = [p for p in model.parameters() if p.grad is not None]
    clean = [p.grad.clone() for p in parameters]

    def noise(step: int, seed: int) -> torch.Tensor:
        for parameter, grad in zip(parameters, clean, strict=True):
            parameter.grad.copy_(grad)
        torch.manual_seed(seed)
        hooks.updates.apply(step)
        return torch.cat([(p.grad - grad).flatten() for p, grad in zip(parameters, clean, strict=True)])

    for step in (0, 9, 99):
        expected = std / (1 + step) ** 0.55  # 0.1, about 0.028, about 0.0079
        added = noise(step, seed=0)
        assert expected / 1.25 < added.std().item() < expected * 1.25, f"step {step}"
        assert abs(added.mean().item()) < expected / 10
    assert torch.equal(noise(5, seed=1), noise(5, seed=1))
    assert not torch.equal(noise(5, seed=1), noise(5, seed=2))
