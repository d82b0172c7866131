"""model_parts on tiny random models of every family we claim, and a clear refusal for everything else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoltui.engine.architecture import KNOWN_LAYOUTS, model_parts
from smoltui.engine.errors import UserError

transformers = pytest.importorskip("transformers")

VOCAB = 100
# What every tiny model shares; families that spell a number differently get it in their own entry.
COMMON = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

# model_type → (extra config, embedding, blocks, final norm, attention name in a block, mlp name or None),
# written out by hand from the transformers sources so the test does not share the adapter's table.
FAMILIES = {
    "gpt2": ({"n_inner": 64}, "transformer.wte", "transformer.h", "transformer.ln_f", "attn", "mlp"),
    "llama": ({"num_key_value_heads": 2}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    "qwen2": ({"num_key_value_heads": 2}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    "qwen3": (
        {"num_key_value_heads": 2, "head_dim": 8},
        "model.embed_tokens",
        "model.layers",
        "model.norm",
        "self_attn",
        "mlp",
    ),
    "mistral": ({"num_key_value_heads": 2}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    "gpt_neox": ({}, "gpt_neox.embed_in", "gpt_neox.layers", "gpt_neox.final_layer_norm", "attention", "mlp"),
    "opt": (
        {"ffn_dim": 64, "word_embed_proj_dim": 32},
        "model.decoder.embed_tokens",
        "model.decoder.layers",
        "model.decoder.final_layer_norm",
        "self_attn",
        None,
    ),
    "phi": ({}, "model.embed_tokens", "model.layers", "model.final_layernorm", "self_attn", "mlp"),
    "phi3": ({}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    "gemma": (
        {"head_dim": 8, "num_key_value_heads": 1},
        "model.embed_tokens",
        "model.layers",
        "model.norm",
        "self_attn",
        "mlp",
    ),
    "gemma2": (
        {"head_dim": 8, "num_key_value_heads": 2},
        "model.embed_tokens",
        "model.layers",
        "model.norm",
        "self_attn",
        "mlp",
    ),
    "gemma3_text": (
        {"head_dim": 8, "num_key_value_heads": 2},
        "model.embed_tokens",
        "model.layers",
        "model.norm",
        "self_attn",
        "mlp",
    ),
    "smollm3": ({"num_key_value_heads": 2}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    # Not in the adapter's table: these go through the generic search.
    "falcon": ({}, "transformer.word_embeddings", "transformer.h", "transformer.ln_f", "self_attention", "mlp"),
    "olmo2": ({"num_key_value_heads": 2}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    "starcoder2": ({"num_key_value_heads": 2}, "model.embed_tokens", "model.layers", "model.norm", "self_attn", "mlp"),
    "mpt": (
        {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_seq_len": 64},
        "transformer.wte",
        "transformer.blocks",
        "transformer.norm_f",
        "attn",
        "ffn",
    ),
    "gptj": ({"n_inner": 64, "rotary_dim": 4}, "transformer.wte", "transformer.h", "transformer.ln_f", "attn", "mlp"),
}


def tiny_model(model_type: str, **extra) -> nn.Module:
    config = transformers.AutoConfig.for_model(model_type, **(COMMON | extra))
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_parts_are_the_models_own_modules(model_type):
    if model_type not in transformers.models.auto.configuration_auto.CONFIG_MAPPING:
        pytest.skip(f"transformers {transformers.__version__} has no {model_type}")
    extra, embed, blocks, norm, attention, mlp = FAMILIES[model_type]
    model = tiny_model(model_type, **extra)

    parts = model_parts(model)

    assert parts.family == model_type
    assert parts.embed_tokens is model.get_submodule(embed)
    assert parts.blocks is model.get_submodule(blocks)
    assert len(parts.blocks) == model.config.num_hidden_layers == 2
    assert parts.final_norm is model.get_submodule(norm)
    assert parts.lm_head is model.lm_head
    assert parts.base_model is model.base_model
    assert all(a is block.get_submodule(attention) for a, block in zip(parts.attentions, parts.blocks, strict=True))
    if mlp is None:
        assert parts.mlps == []
    else:
        assert all(m is block.get_submodule(mlp) for m, block in zip(parts.mlps, parts.blocks, strict=True))


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gpt_neox", "opt", "phi", "gemma2", "falcon"])
def test_hooks_on_blocks_and_final_norm_fire_in_a_forward_pass(model_type):
    extra = FAMILIES[model_type][0]
    model = tiny_model(model_type, **extra)
    parts = model_parts(model)
    fired: list[str] = []
    handles = [
        block.register_forward_hook(lambda *_, i=i: fired.append(f"block{i}")) for i, block in enumerate(parts.blocks)
    ]
    handles.append(parts.final_norm.register_forward_hook(lambda *_: fired.append("norm")))
    handles.append(parts.attentions[1].register_forward_hook(lambda *_: fired.append("attn1")))

    with torch.no_grad():
        model(torch.randint(3, VOCAB, (1, 8)))
    for handle in handles:
        handle.remove()

    assert fired == ["block0", "attn1", "block1", "norm"]


def test_every_pinned_layout_is_tested():
    assert set(KNOWN_LAYOUTS) <= set(FAMILIES)


def test_tied_head_and_embedding_are_both_reported():
    parts = model_parts(tiny_model("llama", num_key_value_heads=2, tie_word_embeddings=True))
    assert parts.lm_head.weight is parts.embed_tokens.weight


def _bert(head: str) -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    return getattr(transformers, head)(config)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _bert("BertForMaskedLM"), id="encoder-only"),
        pytest.param(lambda: _bert("BertModel"), id="encoder-without-head"),
        pytest.param(
            lambda: transformers.T5ForConditionalGeneration(
                transformers.T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)
            ),
            id="encoder-decoder",
        ),
        pytest.param(
            lambda: transformers.LlamaModel(transformers.LlamaConfig(**COMMON, num_key_value_heads=2)),
            id="decoder-without-lm-head",
        ),
        pytest.param(lambda: nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10)), id="plain-torch-module"),
    ],
)
def test_anything_else_is_not_supported_yet(build):
    model = build()
    with pytest.raises(UserError, match=rf"^not supported yet: {type(model).__name__}\b.*; smoltui reads"):
        model_parts(model)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_summaries_count_like_transformers_in_every_family(model_type):
    from smoltui.engine.models import module_table, summarize

    model = tiny_model(model_type, **FAMILIES[model_type][0])
    summary = summarize(model)
    assert (summary.family, summary.layers, summary.hidden, summary.vocab) == (model_type, 2, 32, VOCAB)
    assert summary.total_params == model.num_parameters()
    assert summary.non_embedding_params == model.num_parameters(exclude_embeddings=True)
    assert module_table(model)[0].params == summary.total_params
