"""TrainConfig: defaults follow the Experimental SLM; every bad value is refused with one sentence."""

from __future__ import annotations

import pytest

from smoltui.engine.config import TrainConfig, parse_hook
from smoltui.engine.errors import UserError


def test_defaults_follow_the_experimental_slm_recipe():
    config = TrainConfig()
    assert (config.model, config.batch_size, config.lr, config.weight_decay) == ("nano-char", 16, 3e-4, 0.1)
    assert (config.beta1, config.beta2, config.eval_every) == (0.9, 0.95, 200)
    assert config.effective_min_lr == pytest.approx(3e-5)


def test_round_trip_through_a_dict_keeps_the_hash():
    config = TrainConfig(lr=1e-3, hooks=["activation_stats:10"], model_overrides={"n_layer": 2})
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config
    assert again.config_hash() == config.config_hash()
    assert TrainConfig(lr=2e-3).config_hash() != config.config_hash()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"lr": -0.1}, "lr must be above 0"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"lr": float("nan")}, "lr must be a number"),
        ({"batch_size": 0}, "batch_size must be a whole number above 0"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"grad_accum": -1}, "grad_accum must be a whole number above 0"),
        ({"max_steps": 0}, "max_steps must be a whole number above 0"),
        ({"context": 0}, "context must be a whole number above 0"),
        ({"time_budget_s": -5.0}, "time_budget_s must be above 0"),
        ({"min_lr": 1.0}, "min_lr is 1 but must lie between 0 and lr"),
        ({"warmup_steps": 6000}, "warmup_steps (6000) must be fewer than max_steps"),
        ({"schedule": "exponential"}, "schedule 'exponential' is not one of cosine, linear, constant"),
        ({"weight_decay": -0.1}, "weight_decay must be 0 or more"),
        ({"beta1": 1.2}, "beta1 is 1.2 but must be at least 0 and below 1"),
        ({"beta2": -0.5}, "beta2 is -0.5 but must be at least 0 and below 1"),
        ({"optimizer": "sgd"}, "optimizer 'sgd' is not one of adamw, muon"),
        ({"grad_clip": -1.0}, "grad_clip must be 0 or more"),
        ({"dropout": 1.0}, "dropout is 1 but must be at least 0 and below 1"),
        ({"precision": "int8"}, "precision 'int8' is not one of auto, fp32, bf16, fp16"),
        ({"batching": "shuffled"}, "batching 'shuffled' is not one of random, sequential"),
        ({"eval_every": 0}, "eval_every must be a whole number above 0"),
        ({"sample_every": -1}, "sample_every must be a whole number, 0 or more"),
        ({"temperature": 0.0}, "temperature must be above 0"),
        ({"checkpoint_every": 0}, "checkpoint_every must be a whole number above 0"),
        ({"keep_last": 0}, "keep_last must be a whole number above 0"),
        ({"model": " "}, "model is empty"),
        ({"corpus": ""}, "corpus is empty"),
        ({"hooks": ["telepathy"]}, "unknown hook 'telepathy'"),
        ({"seed": -3}, "seed must be a whole number, 0 or more"),
    ],
)
def test_bad_values_get_one_sentence(changes, fragment):
    with pytest.raises(UserError) as caught:
        TrainConfig(**changes)
    message = str(caught.value)
    assert fragment in message
    assert caught.value.field == next(iter(changes))  # the form marks this field
    assert "\n" not in message and message.endswith(".")


def test_unknown_setting_names_the_known_ones():
    with pytest.raises(UserError, match="unknown training setting 'learning_rate'; known settings: .*lr"):
        TrainConfig.from_dict({"learning_rate": 0.1})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("activation_stats", ("activation_stats", None)),
        ("activation_stats:25", ("activation_stats", "25")),
        ("freeze:transformer.h.0.", ("freeze", "transformer.h.0.")),
        ("clip_per_layer:0.5", ("clip_per_layer", "0.5")),
        ("grad_noise", ("grad_noise", None)),
    ],
)
def test_hook_specs_parse(spec, expected):
    assert parse_hook(spec) == expected


@pytest.mark.parametrize(
    "spec", ["freeze", "activation_stats:0", "activation_stats:often", "clip_per_layer:-1", "grad_noise:lots"]
)
def test_bad_hook_arguments_are_refused(spec):
    with pytest.raises(UserError):
        parse_hook(spec)
