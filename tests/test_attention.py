"""Attention maps on tiny random models of every family, against transformers' eager attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from tiny_lms import FAMILIES, TinyModels, bpe_tokenizer

from smoltui.engine.attention import attention_maps, check_layer_and_head
from smoltui.engine.errors import UserError

PROMPT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return TinyModels(tmp_path_factory)


def eager_reference(model, ids: list[int]) -> np.ndarray:
    """(layers, heads, T, T) from the same weights loaded with eager attention and output_attentions."""
    folder = model.name_or_path
    eager = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = eager(input_ids=torch.tensor([ids]), output_attentions=True).attentions
    return torch.stack([layer[0] for layer in attentions]).numpy()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_attention_weights_equal_eager_attention_whatever_the_model_was_loaded_with(family, models, tokenizer):
    model = models(family)
    loaded_with = model.config._attn_implementation
    ids = tokenizer(PROMPT)["input_ids"]

    maps = attention_maps(model, tokenizer, ids)

    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    assert maps.weights.shape == (layers, heads, len(ids), len(ids)) and maps.layers == tuple(range(layers))
    np.testing.assert_allclose(maps.weights, eager_reference(model, ids), atol=1e-6)
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)  # every row sums to one
    assert np.triu(maps.weights, k=1).max() == 0  # causal
    assert model.config._attn_implementation == loaded_with  # switched back


def test_entropy_head_average_and_a_subset_of_layers(models, tokenizer):
    model = models("llama")
    ids = tokenizer(PROMPT)["input_ids"]
    every = attention_maps(model, tokenizer, ids)
    last = attention_maps(model, tokenizer, ids, layers=[1])

    assert last.layers == (1,) and last.weights.shape[0] == 1
    np.testing.assert_array_equal(last.layer(1), every.layer(1))
    weights = torch.from_numpy(every.weights)
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)  # 0 · log 0 counts as 0
    np.testing.assert_allclose(every.entropy, entropy.numpy(), atol=1e-5)
    assert every.entropy[:, :, 0].max() == 0  # the first query can only look at itself
    np.testing.assert_allclose(every.head_average, every.weights.mean(axis=1))
    np.testing.assert_allclose(every.head_entropy, every.entropy.mean(axis=2))
    assert every.tokens == tuple(tokenizer.decode([token]) for token in ids)


def test_the_decoder_s_fast_step_survives_an_attention_trace(models, tokenizer):
    from smoltui.engine.llama_weights import fast_path_obstacle

    model = models("qwen2")
    attention_maps(model, tokenizer, PROMPT)
    assert fast_path_obstacle(model, 32) is None  # no hook left behind, the implementation as loaded


def test_out_of_range_layer_or_head_names_the_range(models, tokenizer):
    model = models("gpt2")
    with pytest.raises(UserError) as layer:
        attention_maps(model, tokenizer, PROMPT, layers=[2])
    assert layer.value.field == "layer" and "this model has layers 0 to 1" in str(layer.value)
    with pytest.raises(UserError) as head:
        check_layer_and_head(model, 0, -1)
    assert head.value.field == "head" and "this model has heads 0 to 3" in str(head.value)


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens(models, tokenizer):
    ids = tokenizer(PROMPT * 20)["input_ids"][:80]
    maps = attention_maps(models("gpt_neox"), tokenizer, ids, layers=[0])
    assert maps.weights.shape[-1] == 64 and maps.token_ids.tolist() == ids[-64:]
    assert maps.truncation.dropped_tokens == 16
