"""Presets: each one's numbers, seeded weights drawn once in place, and overrides checked with a sentence."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from smoltui.engine.config import TrainConfig
from smoltui.engine.device import Placement
from smoltui.engine.errors import UserError
from smoltui.engine.models import PRESETS, build_preset_model, load_model, preset_config, preset_names, summarize

transformers = pytest.importorskip("transformers")


class SizedTokenizer:
    """Just what a preset reads from a tokenizer, for sizes that would take long to train for real."""

    pad_token_id = bos_token_id = eos_token_id = 0

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    return message


def logits(model: nn.Module) -> torch.Tensor:
    ids = torch.arange(3, 19).unsqueeze(0)  # (1, 16)
    with torch.no_grad():
        return model(ids).logits  # (1, 16, vocab)


def test_every_preset_has_a_one_line_description():
    assert preset_names() == ["nano-char", "smollm2-135m", "gpt2-small", "tiny"]
    for preset in PRESETS.values():
        assert preset.description and "\n" not in preset.description


def test_tiny_loads_as_an_eval_model_with_the_char_tokenizer():
    loaded = load_model("tiny", device="cpu")
    summary = loaded.summary
    assert (loaded.kind, loaded.source, loaded.placement) == ("preset", "tiny", Placement("cpu", "fp32"))
    assert not loaded.model.training
    assert len(loaded.tokenizer) == summary.vocab == 99
    assert (summary.layers, summary.hidden, summary.heads, summary.kv_heads, summary.context) == (2, 32, 2, 2, 64)
    assert loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id == 0
    assert TrainConfig().context_for(summary.context) == 64  # the one rule: the model's positions, at most 1024


def test_nano_char_has_the_experimental_slm_numbers():
    loaded = load_model("nano-char", device="cpu")
    config, summary = loaded.model.config, loaded.summary
    assert (summary.architecture, summary.family) == ("GPT2LMHeadModel", "gpt2")
    assert (summary.layers, summary.hidden, summary.heads, summary.context, summary.vocab) == (4, 256, 4, 256, 99)
    assert config.n_inner == 1024 and config.activation_function == "gelu"
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.1
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    assert TrainConfig().context_for(loaded.summary.context) == 256


def test_smollm2_135m_has_smollm2s_numbers():
    """Laid out on the meta device: the real 135M weights are built once, in the slow test below."""
    config = preset_config("smollm2-135m", SizedTokenizer(49152))
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    summary = summarize(model)
    assert (summary.architecture, summary.family) == ("LlamaForCausalLM", "llama")
    assert (summary.layers, summary.hidden, summary.heads, summary.kv_heads) == (30, 576, 9, 3)
    assert (summary.context, summary.vocab) == (8192, 49152)
    assert summary.total_params == 134_515_008  # SmolLM2-135M's published count, tied embedding once
    assert summary.embedding_params == 49152 * 576
    assert (config.intermediate_size, config.rms_norm_eps, config.hidden_act) == (1536, 1e-5, "silu")
    assert config.tie_word_embeddings and config.rope_parameters["rope_theta"] == 100000
    assert TrainConfig().context_for(summary.context) == 1024  # 8192 positions, capped for a laptop


def test_gpt2_small_has_gpt2s_numbers():
    config = preset_config("gpt2-small", SizedTokenizer(50257))
    with torch.device("meta"):
        summary = summarize(transformers.AutoModelForCausalLM.from_config(config))
    assert (summary.layers, summary.hidden, summary.heads, summary.context, summary.vocab) == (12, 768, 12, 1024, 50257)
    assert summary.total_params == 124_439_808


@pytest.mark.slow
def test_smollm2_135m_builds_for_real_in_seconds():
    build_preset_model("tiny", SizedTokenizer(99))  # warm up transformers' lazy imports, not what we time
    started = time.perf_counter()
    model = build_preset_model("smollm2-135m", SizedTokenizer(49152), seed=0)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"building smollm2-135m took {elapsed:.1f} s"
    assert summarize(model).total_params == 134_515_008
    assert model.lm_head.weight is model.model.embed_tokens.weight
    std = model.model.layers[0].mlp.up_proj.weight.std().item()
    assert abs(std - 0.0417) < 0.002  # SmolLM2's initializer_range, so the weights were drawn, not left empty
    assert torch.isfinite(logits(model)).all()


def test_same_seed_same_weights_other_seed_other_weights():
    first = load_model("tiny", device="cpu", seed=7).model.state_dict()
    again = load_model("tiny", device="cpu", seed=7).model.state_dict()
    other = load_model("tiny", device="cpu", seed=8).model.state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["transformer.h.0.attn.c_attn.weight"], other["transformer.h.0.attn.c_attn.weight"])


SMALL_LLAMA = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate_size": 128, "context": 128}


def test_a_shrunk_llama_preset_is_fully_initialised():
    """Weights drawn once in place must match the distribution and buffers of an ordinary build."""
    loaded = load_model("smollm2-135m", tokenizer="char", device="cpu", overrides=SMALL_LLAMA)
    model = loaded.model
    torch.manual_seed(0)
    reference = transformers.AutoModelForCausalLM.from_config(model.config)
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32
    for name, buffer in reference.named_buffers():
        assert torch.equal(model.get_buffer(name), buffer), name
    for name, param in reference.named_parameters():
        mine = model.get_parameter(name)
        assert torch.isfinite(mine).all(), name
        assert abs(mine.std().item() - param.std().item()) < 0.01, name
    assert (loaded.summary.kv_heads, loaded.summary.vocab, loaded.summary.context) == (2, 99, 128)


def test_a_bf16_preset_keeps_rope_frequencies_in_fp32():
    loaded = load_model("smollm2-135m", tokenizer="char", device="cpu", dtype="bf16", overrides=SMALL_LLAMA)
    assert loaded.summary.dtype == "bf16"
    assert loaded.model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert loaded.summary.bytes < load_model("tiny", device="cpu").summary.bytes * 10


def test_overrides_give_nanogpts_cpu_config():
    overrides = {"n_layer": 4, "n_head": 4, "n_embd": 128, "context": 64, "dropout": 0}
    loaded = load_model("nano-char", device="cpu", overrides=overrides)
    summary, config = loaded.summary, loaded.model.config
    assert (summary.layers, summary.heads, summary.hidden, summary.context) == (4, 4, 128, 64)
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0
    assert TrainConfig().context_for(summary.context) == 64


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"n_layers": 2}, "unknown model override 'n_layers'"),
        ({"vocab_size": 500}, "the vocabulary follows the tokenizer"),
        ({"n_layer": 0}, "n_layer is 0 but must be a whole number above 0"),
        ({"layers": -2}, "layers is -2 but must be a whole number above 0"),
        ({"n_embd": 64.5}, "n_embd is 64.5 but must be a whole number above 0"),
        ({"n_head": True}, "n_head is True but must be a whole number above 0"),
        ({"heads": "4"}, "heads is '4' but must be a whole number above 0"),
        ({"dropout": 1.5}, "dropout is 1.5 but must be at least 0 and below 1"),
        ({"activation_function": "relu"}, "activation_function is not a number setting"),
        ({"tie_word_embeddings": 0}, "tie_word_embeddings is 0 but must be true or false"),
        ({"n_embd": 250}, "hidden size 250 is not a multiple of the 4 heads"),
    ],
)
def test_bad_overrides_get_a_sentence(overrides, fragment):
    with pytest.raises(UserError, match=fragment) as error:
        load_model("nano-char", device="cpu", overrides=overrides)
    one_sentence(error)


def test_kv_heads_must_divide_heads():
    with pytest.raises(UserError, match="4 heads cannot be shared by 3 KV heads") as error:
        load_model("smollm2-135m", tokenizer="char", device="cpu", overrides={**SMALL_LLAMA, "kv_heads": 3})
    one_sentence(error)


def test_an_untied_head_counts_as_non_embedding():
    loaded = load_model(
        "smollm2-135m", tokenizer="char", device="cpu", overrides={**SMALL_LLAMA, "tie_word_embeddings": False}
    )
    summary, model = loaded.summary, loaded.model
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.embedding_params == 99 * 64
