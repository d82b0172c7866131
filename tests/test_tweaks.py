"""Tweaks: temporary weight changes for sampling that leave the exact weights behind, and a tweaked copy for the
Sample screen's A/B, on tiny random models of two families loaded from their folders as a user's would be."""

from __future__ import annotations

import pytest
import torch
from tiny_lms import bpe_tokenizer, tiny_lm

from smoltui.engine.errors import UserError
from smoltui.engine.models import load_model
from smoltui.engine.sampler_settings import SamplerSettings
from smoltui.engine.session import ModelSession
from smoltui.engine.tweaks import parse_tweaks, tweak, tweaked, tweaked_copy

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def loaded(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    tiny_lm(request.param, folder)
    bpe_tokenizer().save_pretrained(folder)
    return load_model(str(folder), device="cpu")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def bit_equal(model, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def logits(model) -> torch.Tensor:
    ids = bpe_tokenizer()(PROMPT)["input_ids"]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]  # (T, vocab)


def test_parse_reads_param_equals_delta():
    assert parse_tweaks(["mlp.down_proj=0.01", " ln_f = -2e-3 ", r"layers\.(?=1)=1"]) == {
        "mlp.down_proj": 0.01,
        "ln_f": -0.002,
        r"layers\.(?=1)": 1.0,
    }


@pytest.mark.parametrize(
    ("specs", "words"),
    [
        (["mlp.down_proj"], "is not PARAM=DELTA"),
        (["=0.1"], "is not PARAM=DELTA"),
        (["mlp=lots"], "is not a number"),
        (["mlp=0.1", "mlp=0.2"], "twice"),
    ],
)
def test_parse_errors_are_one_sentence(specs, words):
    with pytest.raises(UserError) as raised:
        parse_tweaks(specs)
    assert words in str(raised.value) and raised.value.field == "tweak" and str(raised.value).endswith(".")


def test_a_tweak_adds_its_delta_inside_the_block_and_restores_the_exact_weights(loaded):
    model = loaded.model
    before = snapshot(model)
    reference = logits(model)
    with tweaked(model, {r"\.mlp\.": 0.05, r"layers\.0\.|h\.0\.": -0.01}) as applied:
        for name, parameter in model.named_parameters():
            delta = (0.05 if ".mlp." in name else 0) + (-0.01 if ("layers.0." in name or "h.0." in name) else 0)
            torch.testing.assert_close(parameter, before[name] + delta, rtol=0, atol=1e-6)
        assert not torch.allclose(logits(model), reference)
    assert bit_equal(model, before) and torch.equal(logits(model), reference)
    assert applied.matches[r"\.mlp\."] and "applied only while sampling" in applied.summary


def test_the_weights_come_back_when_the_block_raises(loaded):
    before = snapshot(loaded.model)
    with pytest.raises(RuntimeError, match="sampling failed"), tweaked(loaded.model, {"attn": 1.0}):
        raise RuntimeError("sampling failed")
    assert bit_equal(loaded.model, before)


def test_a_tied_weight_gets_the_delta_once(tmp_path):
    folder = tmp_path / "gpt2"
    tiny_lm("gpt2", folder)
    bpe_tokenizer().save_pretrained(folder)
    model = load_model(str(folder), device="cpu").model
    embedding = model.transformer.wte.weight.clone()
    with tweaked(model, {"lm_head": 0.5}) as applied:
        torch.testing.assert_close(model.transformer.wte.weight, embedding + 0.5)
    assert applied.matches == {"lm_head": ("lm_head.weight",)}  # the name it matched, though the tensor is one
    assert torch.equal(model.transformer.wte.weight, embedding)


def test_check_only_names_what_matches_and_changes_nothing(loaded):
    before = snapshot(loaded.model)
    checked = tweak(loaded, {"norm|ln_": 0.1})
    assert checked.matches["norm|ln_"] and all("norm" in n or "ln_" in n for n in checked.matches["norm|ln_"])
    assert checked.details["deltas"] == {"norm|ln_": 0.1} and bit_equal(loaded.model, before)


@pytest.mark.parametrize(
    ("deltas", "words"),
    [
        ({}, "no tweak given"),
        ({"no_such_weight": 0.1}, "matches no parameter"),
        ({"(": 0.1}, "regular expression"),
        ({"mlp": float("nan")}, "finite number"),
        ({"mlp": "0.1"}, "finite number"),
    ],
)
def test_bad_tweaks_are_one_sentence_and_change_nothing(loaded, deltas, words):
    before = snapshot(loaded.model)
    with pytest.raises(UserError) as raised, tweaked(loaded.model, deltas):
        pass
    assert words in str(raised.value) and raised.value.field == "tweak"
    assert bit_equal(loaded.model, before)


def test_a_tweaked_copy_shares_the_untouched_tensors_and_leaves_the_original_alone(loaded):
    before = snapshot(loaded.model)
    copy = tweaked_copy(loaded, {r"\.mlp\.": 0.05})
    assert copy.model is not loaded.model and copy.tokenizer is loaded.tokenizer and bit_equal(loaded.model, before)
    originals = dict(loaded.model.named_parameters())
    for name, parameter in copy.model.named_parameters():
        shared = parameter.data_ptr() == originals[name].data_ptr()
        assert shared == (".mlp." not in name)
        if not shared:
            torch.testing.assert_close(parameter, originals[name] + 0.05, rtol=0, atol=1e-6)
    assert not torch.allclose(logits(copy.model), logits(loaded.model))


def test_the_sample_screens_a_b_decodes_the_tweaked_copy_with_the_same_seed(loaded):
    sampling = SamplerSettings(temperature=1.0)
    # Shrinking the final norm flattens the next-token distributions, so the same seed draws other tokens.
    copy = tweaked_copy(loaded, {r"^model\.norm\.weight|ln_f\.weight": -0.9})
    session = ModelSession()
    try:
        session.use(loaded)
        first_a = session.generate(prompt=PROMPT, max_new_tokens=12, sampling=sampling, seed=7).wait(timeout=60)
        b = session.generate(prompt=PROMPT, max_new_tokens=12, sampling=sampling, seed=7, using=lambda _: copy)
        second_a = session.generate(prompt=PROMPT, max_new_tokens=12, sampling=sampling, seed=7).wait(timeout=60)
        through_b = b.wait(timeout=60)
    finally:
        session.close()
    assert first_a.text == second_a.text  # the untouched model is untouched by B's run
    assert through_b.text != first_a.text


def test_the_fast_decoding_step_sees_a_tweak_inside_the_block_and_not_after(tmp_path):
    from smoltui.engine.decoder import DecodeFinished, TokenGenerated, decode

    folder = tmp_path / "llama"
    tiny_lm("llama", folder)
    bpe_tokenizer().save_pretrained(folder)
    loaded = load_model(str(folder), device="cpu")
    ids = bpe_tokenizer()(PROMPT)["input_ids"]

    def greedy(fast: bool) -> list[int]:
        events = list(decode(loaded.model, loaded.tokenizer, ids, max_new_tokens=8, stop_at_eos=False, fast=fast))
        assert isinstance(events[-1], DecodeFinished) and events[-1].forward == ("fast" if fast else "generic")
        return [event.token_id for event in events if isinstance(event, TokenGenerated)]

    before = greedy(True)
    with tweaked(loaded.model, {r"\.mlp\.": 0.5, r"^model\.norm\.weight": -0.9}):
        inside = greedy(True)
        assert inside == greedy(False) and inside != before
    assert greedy(True) == before
