"""The logit lens, the activations view and the lens across checkpoints, on tiny random models of every family
(and on the bundled SmolLM2, slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from tiny_lms import COMMON, FAMILIES, TinyModels, bpe_tokenizer, write_checkpoints

from smoltui.engine.activations import activation_report, capture_stream
from smoltui.engine.decode_events import DecodeFinished, PromptTruncated
from smoltui.engine.errors import UserError
from smoltui.engine.lens import LensGrown, TargetToken, lens_while_generating, logit_lens, target_token

PROMPT = "The quick brown fox jumps"


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return TinyModels(tmp_path_factory)


def saved_lm(family: str, folder, **config):
    """A tiny random `family` model outside tiny_lms's table (or with other numbers), saved and loaded back."""
    settings = COMMON | FAMILIES.get(family, {}) | {"vocab_size": len(bpe_tokenizer())} | config
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(family, **settings))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.add_(torch.randn_like(parameter) * 0.3)
            elif "embed" in name or "lm_head" in name:
                parameter.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


# Families whose output head does more than norm + LM head, each the way its config says.
HEAD_VARIANTS = {
    "opt-post-norm": ("opt", {"do_layer_norm_before": False}),  # no final norm: block outputs are already normed
    "opt-project-out": ("opt", {"word_embed_proj_dim": 16}),  # project_out after the final norm
    "gemma3-softcap": ("gemma3_text", {"final_logit_softcapping": 3.0}),
    "cohere-logit-scale": ("cohere", {"num_key_value_heads": 2, "logit_scale": 0.5}),
    "granite-logits-scaling": ("granite", {"num_key_value_heads": 2, "logits_scaling": 4.0}),
}


def model_for(case: str, models, tmp_path):
    if case in HEAD_VARIANTS:
        family, config = HEAD_VARIANTS[case]
        return saved_lm(family, tmp_path / case, **config)
    return models(case)


def softmax_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)  # (T, vocab)


# -- the last layer is the model's own distribution ----------------------------------------------------------


@pytest.mark.parametrize("case", [*sorted(FAMILIES), *HEAD_VARIANTS])
def test_last_layer_of_the_lens_is_the_model_s_output(case, models, tokenizer, tmp_path):
    model = model_for(case, models, tmp_path)
    ids = tokenizer(PROMPT)["input_ids"]
    grid = logit_lens(model, tokenizer, ids, target=7, top_k=4)

    probs = softmax_logits(model, ids)
    top = torch.topk(probs, 4)
    assert grid.top_ids.shape == (model.config.num_hidden_layers + 1, len(ids), 4)
    np.testing.assert_allclose(grid.top_probs[-1], top.values.numpy(), rtol=1e-5, atol=1e-6)
    assert (grid.top_ids[-1, :, 0] == top.indices[:, 0].numpy()).all()
    entropy = -(probs * probs.log()).sum(-1)
    np.testing.assert_allclose(grid.entropy[-1], entropy.numpy(), rtol=1e-4, atol=1e-5)
    following = torch.tensor(ids[1:])
    np.testing.assert_allclose(grid.next_prob[-1, :-1], probs[:-1].gather(1, following[:, None])[:, 0], rtol=1e-5)
    assert grid.target_rank[-1].tolist() == (probs > probs[:, 7:8]).sum(1).tolist()
    np.testing.assert_allclose(grid.target_prob[-1], probs[:, 7].numpy(), rtol=1e-5, atol=1e-7)
    assert (grid.kl_to_final[-1] == 0).all()
    assert grid.next_ids[-1] == -1 and np.isnan(grid.next_prob[:, -1]).all()


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_every_row_is_the_head_applied_to_that_layer_s_hidden_state(family, models, tokenizer):
    """Checked against transformers' own hidden states (all but the last, which it returns already normed)."""
    model = models(family)
    ids = tokenizer(PROMPT)["input_ids"]
    grid = logit_lens(model, tokenizer, ids, top_k=3)
    with torch.no_grad():
        output = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        states = output.hidden_states[:-1]  # layers of (1, T, hidden): embeddings, then blocks but the last
        norm = model.model.norm if family != "gpt2" else model.transformer.ln_f
        logits = [model.lm_head(norm(h))[0].float() for h in states]  # layers of (T, vocab)
    if family == "gemma2":  # softcapped like the model's own output
        cap = model.config.final_logit_softcapping
        logits = [torch.tanh(x / cap) * cap for x in logits]
    final = torch.log_softmax(output.logits[0].float(), -1)  # (T, vocab)
    for row, row_logits in enumerate(logits):
        logprobs = torch.log_softmax(row_logits, -1)
        np.testing.assert_allclose(grid.top_probs[row, :, 0], logprobs.exp().max(-1).values, rtol=1e-4, atol=1e-6)
        kl = (final.exp() * (final - logprobs)).sum(-1)  # KL(final ‖ row)
        np.testing.assert_allclose(grid.kl_to_final[row], kl.numpy(), rtol=1e-3, atol=1e-5)
    assert grid.kl_to_final[0].mean() > 0  # the embeddings do not already predict like the model


def test_a_large_vocabulary_gives_the_same_top_tokens_and_ranks(tokenizer, tmp_path):
    """4000 tokens: the two-pass top-k search (blocks of 128, and a tail of 32) against torch.topk."""
    model = saved_lm("llama", tmp_path / "llama", num_key_value_heads=2, vocab_size=4000)
    ids = tokenizer(PROMPT)["input_ids"]
    grid = logit_lens(model, tokenizer, ids, top_k=6, target=3990)
    probs = softmax_logits(model, ids)
    top = torch.topk(probs, 6)
    assert (grid.top_ids[-1] == top.indices.numpy()).all()
    np.testing.assert_allclose(grid.top_probs[-1], top.values.numpy(), rtol=1e-5, atol=1e-7)
    assert grid.target_rank[-1].tolist() == (probs > probs[:, 3990:3991]).sum(-1).tolist()


def test_bf16_rows_keep_the_last_row_exact_and_the_others_close(models, tokenizer):
    from smoltui.engine.lens_head import LensHead

    model = models("llama")
    assert LensHead(model).bf16_weight is None  # a head this small stays fp32 under "auto"
    ids = tokenizer(PROMPT)["input_ids"]
    exact = logit_lens(model, tokenizer, ids, target=9, precision="exact")
    fast = logit_lens(model, tokenizer, ids, target=9, precision="fast")

    for name in ("top_probs", "entropy", "next_prob", "target_prob"):
        np.testing.assert_array_equal(getattr(fast, name)[-1], getattr(exact, name)[-1])
        np.testing.assert_allclose(getattr(fast, name)[:-1], getattr(exact, name)[:-1], rtol=0.15, atol=2e-3)
    assert (fast.top_ids[:, :, 0] == exact.top_ids[:, :, 0]).mean() > 0.9
    events = lens_while_generating(model, tokenizer, ids, max_new_tokens=4, precision="fast", stop_at_eos=False)
    grown = [event.grid for event in events if isinstance(event, LensGrown)][-1]
    whole = logit_lens(model, tokenizer, grown.token_ids.tolist() + [int(grown.next_ids[-1])], precision="fast")
    np.testing.assert_allclose(grown.top_probs, whole.columns(0, -1).top_probs, rtol=0.15, atol=2e-3)


# -- the lens while generating -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_incremental_lens_while_generating_equals_the_lens_of_the_whole_sequence(family, models, tokenizer):
    model = models(family)
    ids = tokenizer(PROMPT)["input_ids"]
    events = list(lens_while_generating(model, tokenizer, ids, max_new_tokens=6, target=9, stop_at_eos=False))

    grown = [event for event in events if isinstance(event, LensGrown)]
    assert isinstance(events[-1], DecodeFinished) and len(grown) == 7
    assert grown[0].token is None and grown[0].grid.positions == len(ids)
    generated = [event.token.token_id for event in grown[1:]]
    assert [event.grid.positions for event in grown] == [len(ids)] * 2 + list(range(len(ids) + 1, len(ids) + 6))
    incremental = grown[-1].grid
    whole = logit_lens(model, tokenizer, ids + generated, target=9).columns(0, -1)

    assert incremental.token_ids.tolist() == whole.token_ids.tolist() == (ids + generated)[:-1]
    assert incremental.next_ids.tolist() == whole.next_ids.tolist() == (ids + generated)[1:]
    assert (incremental.top_ids[:, :, 0] == whole.top_ids[:, :, 0]).all()
    for name in ("top_probs", "entropy", "kl_to_final", "next_prob", "target_prob"):
        np.testing.assert_allclose(getattr(incremental, name), getattr(whole, name), rtol=1e-4, atol=2e-5)
    assert (np.abs(incremental.target_rank - whole.target_rank) <= 1).all()  # ties within float rounding may swap
    assert incremental.top_is_next[-1, len(ids) - 1 :].all()  # greedy: the model's top choice came next


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens(models, tokenizer):
    model = models("llama")  # 64 positions
    ids = (tokenizer(PROMPT * 30)["input_ids"])[:100]
    grid = logit_lens(model, tokenizer, ids)
    assert grid.positions == 64 and grid.token_ids.tolist() == ids[-64:]
    assert grid.truncation.dropped_tokens == 36 and "only its last 64 were kept" in grid.truncation.message
    events = list(lens_while_generating(model, tokenizer, ids, max_new_tokens=4))
    assert isinstance(events[0], PromptTruncated) and events[0].kept_tokens == 60  # room for the new tokens
    assert events[1].grid.positions == 60


# -- bad input ------------------------------------------------------------------------------------------------


def test_a_target_must_be_one_token_and_the_error_says_how_it_splits(tokenizer):
    one = tokenizer(" brown", add_special_tokens=False)["input_ids"]
    assert len(one) == 1 and target_token(tokenizer, " brown") == TargetToken(one[0], " brown")
    with pytest.raises(UserError) as split:
        target_token(tokenizer, " lazy")
    assert split.value.field == "target"
    assert "' lazy' is not one token of this tokenizer but 2 (' laz' + 'y')" in str(split.value)
    with pytest.raises(UserError) as spaced:
        target_token(tokenizer, "brown")  # " brown" is one token: the message says to add the space
    assert "such as ' brown' (with its leading space)" in str(spaced.value)
    with pytest.raises(UserError, match="the target token is empty"):
        target_token(tokenizer, "")


def test_bad_options_are_user_errors_about_one_field(models, tokenizer):
    model = models("gpt2")
    with pytest.raises(UserError) as top:
        logit_lens(model, tokenizer, PROMPT, top_k=0)
    assert top.value.field == "top"
    with pytest.raises(UserError) as target:
        logit_lens(model, tokenizer, PROMPT, target=10**6)
    assert target.value.field == "target"
    with pytest.raises(UserError) as generate:
        lens_while_generating(model, tokenizer, PROMPT, max_new_tokens=0)
    assert generate.value.field == "generate"


def test_a_head_the_lens_cannot_reproduce_is_refused(tokenizer, tmp_path):
    """Llama ignores a softcap in its config; the lens would apply it, and the guard catches the difference."""
    model = saved_lm("llama", tmp_path / "llama", num_key_value_heads=2)
    model.config.final_logit_softcapping = 1.0
    with pytest.raises(UserError, match="not supported yet: the logit lens of llama does not reproduce"):
        logit_lens(model, tokenizer, PROMPT)


# -- activations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "phi"])
def test_activation_report_matches_the_model_s_own_tensors(family, models, tokenizer):
    model = models(family)
    ids = tokenizer(PROMPT)["input_ids"]
    down_inputs = []
    down = {"llama": "down_proj", "gpt2": "c_proj", "gpt_neox": "dense_4h_to_h", "phi": "fc2"}[family]
    mlp = model.get_submodule(("transformer.h" if family == "gpt2" else "model.layers" if family != "gpt_neox"
                               else "gpt_neox.layers") + ".1.mlp")  # fmt: skip
    handle = getattr(mlp, down).register_forward_pre_hook(lambda _m, args: down_inputs.append(args[0][0]))
    with torch.no_grad():
        output = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    handle.remove()

    report = activation_report(model, tokenizer, ids, top_k=3)

    hidden = output.hidden_states  # the last one is normed by transformers; the report's is the raw block output
    for row in range(len(hidden) - 1):
        np.testing.assert_allclose(report.residual_norm[row], hidden[row][0].norm(dim=-1).numpy(), rtol=1e-5)
    activation = down_inputs[0]  # (T, intermediate)
    np.testing.assert_allclose(report.mlp.mean[1], activation.mean(-1).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(report.mlp.absmax[1], activation.abs().amax(-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(report.mlp.active_fraction[1], (activation > 0).float().mean(-1).numpy())
    probs = torch.softmax(output.logits[0].float(), -1)
    np.testing.assert_allclose(report.output_top_probs[:, 0], probs.max(-1).values.numpy(), rtol=1e-5)
    assert report.tokens[0] == tokenizer.decode(ids[:1]) and set(report.output_top_ids.flatten()) <= report.texts.keys()


def test_a_family_without_an_mlp_module_reports_none_and_hooks_are_gone(models, tokenizer):
    from smoltui.engine.llama_weights import fast_path_obstacle

    assert activation_report(models("opt"), tokenizer, PROMPT).mlp is None
    llama = models("llama")
    capture = capture_stream(llama, tokenizer(PROMPT)["input_ids"], mlp=True)
    assert capture.residual.shape[0] == llama.config.num_hidden_layers + 1
    assert fast_path_obstacle(llama, 32) is None  # every hook removed: the decoder's fast step still applies


# -- the bundled model ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_lens_finds_paris_in_its_last_layers():
    from smoltui.engine.models import load_model

    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="fp32")
    paris = target_token(loaded.tokenizer, " Paris")
    grid = logit_lens(loaded.model, loaded.tokenizer, "The Eiffel Tower is in the city of", target=paris.token_id)

    assert grid.text(grid.top_ids[-1, -1, 0]) == " Paris"
    ranks = grid.target_rank[:, -1]  # (layers + 1,) at the last position
    assert ranks[-2:].tolist() == [0, 0]
    assert (ranks[:20] > 1000).all()  # the early layers have not found it yet
    assert ranks[-7] > 100 and ranks[-4] < 50  # it climbs over the last six layers


def test_a_bf16_model_passes_the_guard_with_its_own_top_tokens(tokenizer, tmp_path):
    model = saved_lm("qwen2", tmp_path / "qwen2", num_key_value_heads=2).to(torch.bfloat16)
    ids = tokenizer(PROMPT)["input_ids"]
    grid = logit_lens(model, tokenizer, ids)
    probs = softmax_logits(model, ids)
    np.testing.assert_allclose(grid.top_probs[-1, :, 0], probs.max(-1).values.numpy(), rtol=1e-5)


# -- across a run's checkpoints -------------------------------------------------------------------------------


@pytest.fixture
def run_with_checkpoints(write_run, models, tokenizer):
    """A run with checkpoints at steps 10 and 20 of a tiny GPT-2 (the second's weights moved a little)."""
    return write_checkpoints(write_run("20300101-000000-lens"), models("gpt2"), tokenizer)


def test_checkpoint_lenses_compute_each_checkpoint_once_then_read_the_cache(run_with_checkpoints, workspace):
    from smoltui.engine.lens_checkpoints import checkpoint_lenses

    first = list(checkpoint_lenses("20300101", PROMPT, target=" brown", top_k=3, device="cpu"))
    again = list(checkpoint_lenses("20300101", PROMPT, target=" brown", top_k=3, device="cpu"))

    assert [(lens.step, lens.cached) for lens in first] == [(10, False), (20, False)]
    assert [(lens.step, lens.cached) for lens in again] == [(10, True), (20, True)]
    assert not np.allclose(first[0].grid.top_probs, first[1].grid.top_probs)  # two different models
    for computed, read in zip(first, again, strict=True):
        for name in ("token_ids", "top_ids", "top_probs", "entropy", "kl_to_final", "next_prob", "target_rank"):
            np.testing.assert_array_equal(getattr(computed.grid, name), getattr(read.grid, name))
        assert read.grid.texts == computed.grid.texts and read.grid.target_id == computed.grid.target_id
    cached = sorted(path.name for path in (workspace / "cache" / "lens").iterdir())
    assert len(cached) == 2 and all(name.endswith(".npz") for name in cached)  # no temporary file left
    other_prompt = list(checkpoint_lenses("20300101", "A stitch in time", top_k=3, device="cpu"))
    assert [lens.cached for lens in other_prompt] == [False, False]


def test_a_checkpoint_saved_again_is_computed_again(run_with_checkpoints, workspace):
    import os

    from smoltui.engine.lens_checkpoints import checkpoint_lenses

    list(checkpoint_lenses("20300101", PROMPT, device="cpu"))
    weights = next((run_with_checkpoints / "checkpoints" / "step_000020").glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert [lens.cached for lens in checkpoint_lenses("20300101", PROMPT, device="cpu")] == [True, False]


def test_a_run_without_checkpoints_says_so(write_run, workspace):
    from smoltui.engine.lens_checkpoints import checkpoint_lenses

    write_run("20300101-000000-bare")
    with pytest.raises(UserError) as error:
        checkpoint_lenses("20300101-000000-bare", PROMPT)
    assert error.value.field == "run" and "has no checkpoints yet" in str(error.value)
