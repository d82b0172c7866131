"""The learning-rate schedule and the optimizer split (AdamW, or Muon for hidden matrices)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from smoltui.engine.config import TrainConfig
from smoltui.engine.optim import build_optimizers, learning_rate


def _rates(**changes) -> list[float]:
    config = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110, **changes)
    return [learning_rate(step, config) for step in range(110)]


def test_warmup_rises_linearly_to_the_peak():
    rates = _rates()
    assert rates[0] == pytest.approx(1e-3 / 11)
    assert all(a < b for a, b in zip(rates[:10], rates[1:11], strict=True))
    assert rates[10] == pytest.approx(1e-3)


def test_cosine_and_linear_decay_to_min_lr_while_constant_stays():
    cosine, linear, constant = _rates(), _rates(schedule="linear"), _rates(schedule="constant")
    end = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert learning_rate(110, end) == pytest.approx(1e-4)
    assert learning_rate(110, end.replace(schedule="linear")) == pytest.approx(1e-4)
    assert cosine[-1] > 1e-4 and linear[-1] > 1e-4
    assert cosine[60] == pytest.approx(5.5e-4, rel=0.01)  # half-way down the cosine
    assert linear[60] == pytest.approx(5.5e-4, rel=0.01)
    assert set(constant[10:]) == {1e-3}


def _tiny_model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=16, vocab_size=50))


def test_adamw_decays_matrices_only():
    model = _tiny_model()
    (adamw,) = build_optimizers(model, TrainConfig(), model.get_output_embeddings(), "cpu")
    decay, no_decay = adamw.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.ndim >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim < 2 for p in no_decay["params"])
    assert sum(len(g["params"]) for g in adamw.param_groups) == len(list(model.parameters()))


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    model = _tiny_model()
    muon, adamw = build_optimizers(model, TrainConfig(optimizer="muon"), model.get_output_embeddings(), "cpu")
    embedding = model.get_input_embeddings().weight
    muon_params = [p for group in muon.param_groups for p in group["params"]]
    assert muon_params and all(p.ndim == 2 for p in muon_params)
    assert all(p is not embedding for p in muon_params)
    adamw_params = [p for group in adamw.param_groups for p in group["params"]]
    assert any(p is embedding for p in adamw_params)
    x = torch.randint(0, 50, (2, 8))
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    for optimizer in (muon, adamw):
        optimizer.step()
