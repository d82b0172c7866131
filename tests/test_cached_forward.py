"""Cached forwards against the model's own: the generic one on every family, the fast Llama-family step."""

from __future__ import annotations

import pytest
import torch
from tiny_lms import FAMILIES, FAST_FAMILIES, TinyModels, tiny_lm

from smoltui.engine.cached_forward import HFCachedForward, open_cached_forward
from smoltui.engine.llama_forward import LlamaCachedForward
from smoltui.engine.llama_weights import fast_path_obstacle


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return TinyModels(tmp_path_factory)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cached_logits_equal_a_full_recompute(family, models):
    model = models(family)
    torch.manual_seed(1)
    ids = torch.randint(1, model.config.vocab_size, (30,))
    with torch.inference_mode():
        full = model(input_ids=ids[None]).logits[0]  # (30, vocab)
        forward = open_cached_forward(model, 30)
        steps = [forward(ids[:12], all_logits=True)]  # a prompt
        steps.append(forward(ids[12:17], all_logits=True))  # a chunk after cached positions (forced tokens)
        steps += [forward(ids[i : i + 1]) for i in range(17, 30)]  # one token at a time
    torch.testing.assert_close(torch.cat(steps), full, atol=2e-5, rtol=1e-5)
    assert forward.length == 30


@pytest.mark.parametrize("family", FAST_FAMILIES)
def test_fast_step_reads_every_layer_like_the_model(family, models):
    """Residual stream per layer: embeddings, then each block's output; the last one normed is HF's last."""
    model = models(family)
    torch.manual_seed(2)
    ids = torch.randint(1, model.config.vocab_size, (9,))
    with torch.inference_mode():
        reference = model(input_ids=ids[None], output_hidden_states=True).hidden_states  # layers + 1 of (1, 9, H)
        fast = LlamaCachedForward(model, 9, capture_hidden=True)
        fast(ids[:8])
        fast(ids[8:])
        generic = HFCachedForward(model, 9, capture_hidden=True)
        generic(ids)
    generic_hidden = generic.hidden
    generic.close()  # removes its hooks, which would otherwise keep the fast step off this model
    for hidden in (fast.hidden, generic_hidden):
        torch.testing.assert_close(hidden[:-1], torch.stack([h[0, -1] for h in reference[:-1]]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.model.norm(hidden[-1]), reference[-1][0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "smollm3"])
def test_fast_step_without_merged_copies_and_in_bf16(family, models, tmp_path, monkeypatch):
    """Big models keep their own q/k/v weights (no merged copy); 16-bit ones merge gate/up and use SDPA."""
    from smoltui.engine import llama_weights

    model = models(family)
    torch.manual_seed(3)
    ids = torch.randint(1, model.config.vocab_size, (20,))
    with torch.inference_mode():
        full = model(input_ids=ids[None]).logits[0]  # (20, vocab)
        monkeypatch.setattr(llama_weights, "MERGE_LIMIT_BYTES", 0)
        unmerged = LlamaCachedForward(model, 20)
        assert len(unmerged.layers[0].qkv) == 3 and len(unmerged.layers[0].gate_up) == 2
        steps = [unmerged(ids[:10], all_logits=True)] + [unmerged(ids[i : i + 1]) for i in range(10, 20)]
        torch.testing.assert_close(torch.cat(steps), full, atol=2e-5, rtol=1e-5)
        monkeypatch.undo()

        half_model = tiny_lm(family, tmp_path / "bf16").to(torch.bfloat16)
        half = LlamaCachedForward(half_model, 20)
        assert len(half.layers[0].qkv) == 1 and len(half.layers[0].gate_up) == 1
        steps = torch.cat([half(ids[:10], all_logits=True)] + [half(ids[i : i + 1]) for i in range(10, 20)]).float()
        reference = half_model(input_ids=ids[None]).logits[0].float()
    # bf16 keeps ~3 significant digits; the two forwards round in different places.
    torch.testing.assert_close(steps, reference, atol=0.15, rtol=0.05)
    assert (steps.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9


@pytest.mark.parametrize("family", FAST_FAMILIES)
def test_the_scripted_decode_step_is_the_python_one(family, models):
    from smoltui.engine.llama_forward import scripted_decode_layers

    assert scripted_decode_layers() is not None  # TorchScript still compiles it on this torch
    model = models(family)
    torch.manual_seed(4)
    ids = torch.randint(1, model.config.vocab_size, (16,))
    with torch.inference_mode():
        scripted = LlamaCachedForward(model, 16, capture_hidden=True)
        plain = LlamaCachedForward(model, 16, capture_hidden=True, script=False)
        assert scripted.decode_layers is not plain.decode_layers
        for forward in (scripted, plain):
            forward(ids[:8])
        for i in range(8, 16):
            assert torch.equal(scripted(ids[i : i + 1]), plain(ids[i : i + 1]))
            assert torch.equal(scripted.hidden, plain.hidden)


def test_fast_path_stands_aside_where_it_would_differ(models):
    llama = models("llama")
    assert fast_path_obstacle(llama, 64) is None
    assert "gpt2" in fast_path_obstacle(models("gpt2"), 64)

    handle = llama.model.layers[1].register_forward_hook(lambda *_: None)
    try:
        assert fast_path_obstacle(llama, 64) == "hooks are registered on the model"
        assert open_cached_forward(llama, 64).kind == "generic"
    finally:
        handle.remove()

    mistral = models("mistral")
    mistral.config.sliding_window = 16
    try:
        assert "sliding-window" in fast_path_obstacle(mistral, 64)
        assert fast_path_obstacle(mistral, 16) is None
    finally:
        mistral.config.sliding_window = None
