"""The samplers: transformers' processors where it has them, the published rules for the rest, and the settings."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from smoltui.engine.errors import UserError
from smoltui.engine.samplers import (
    DEFAULT_ORDER,
    PRESETS,
    SamplerChain,
    SamplerSettings,
    parse_banned,
)
from smoltui.engine.tokenizers import train_bpe

PROPERTIES = settings(max_examples=40, deadline=None)
NEG_INF = float("-inf")
# Every sampler on at once, so that nothing is skipped where a test means "whatever the settings".
EVERYTHING = SamplerSettings(
    temperature=0.8,
    top_k=200,
    top_p=0.95,
    min_p=0.01,
    typical_p=0.97,
    top_n_sigma=3.0,
    repetition_penalty=1.2,
    repetition_range=64,
    presence_penalty=0.3,
    frequency_penalty=0.2,
    no_repeat_ngram=3,
    dry_multiplier=0.8,
    xtc_probability=0.5,
    mirostat_tau=8.0,
    banned_tokens=(3, 4),
    ban_eos=True,
)


def random_case(seed: int, vocab: int, length: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    history = torch.randint(0, vocab, (length,), generator=generator)  # (T,)
    logits = torch.randn(vocab, generator=generator) * scale  # (V,)
    return history, logits


def processed(settings_: SamplerSettings, history: torch.Tensor, logits: torch.Tensor, **chain_options) -> torch.Tensor:
    chain = SamplerChain(settings_, vocab_size=logits.shape[0], **chain_options)
    return chain.process(history, logits)


def by_transformers(processor, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return processor(history[None], logits[None].clone())[0]


# --- the samplers transformers has: the chain gives its processors' exact output --------------------------------

cases = st.tuples(st.integers(0, 2**31), st.sampled_from([2, 7, 100, 1000]), st.integers(0, 40))


@PROPERTIES
@given(cases, st.floats(0.05, 5.0))
def test_temperature_equals_transformers(case, temperature):
    history, logits = random_case(*case)
    ours = processed(SamplerSettings(temperature=temperature), history, logits)
    assert torch.equal(ours, by_transformers(TemperatureLogitsWarper(temperature), history, logits))


@PROPERTIES
@given(cases, st.integers(1, 1200))
def test_top_k_equals_transformers(case, top_k):
    history, logits = random_case(*case)
    ours = processed(SamplerSettings(top_k=top_k), history, logits)
    assert torch.equal(ours, by_transformers(TopKLogitsWarper(top_k), history, logits))


@PROPERTIES
@given(cases, st.floats(0.0, 1.0))
def test_min_p_equals_transformers(case, min_p):
    history, logits = random_case(*case)
    ours = processed(SamplerSettings(min_p=min_p), history, logits)
    assert torch.equal(ours, by_transformers(MinPLogitsWarper(min_p), history, logits))


@PROPERTIES
@given(cases, st.floats(0.1, 3.0), st.integers(0, 50))
def test_repetition_penalty_with_its_range_equals_transformers_on_the_window(case, penalty, window):
    history, logits = random_case(*case)
    ours = processed(SamplerSettings(repetition_penalty=penalty, repetition_range=window), history, logits)
    looked_at = history[-window:] if window else history
    assert torch.equal(ours, by_transformers(RepetitionPenaltyLogitsProcessor(penalty), looked_at, logits))


@PROPERTIES
@given(st.integers(0, 2**31), st.sampled_from([3, 5, 30]), st.integers(0, 60), st.integers(1, 4))
def test_no_repeat_ngram_equals_transformers(seed, vocab, length, size):
    history, logits = random_case(seed, vocab, length)
    ours = processed(SamplerSettings(no_repeat_ngram=size), history, logits)
    assert torch.equal(ours, by_transformers(NoRepeatNGramLogitsProcessor(size), history, logits))


def assert_same_or_at_the_cut(ours, theirs, mass_before, cut):
    """Equal, except tokens whose mass before them is within float32 rounding of the cut (a sum's order differs)."""
    differ = torch.isfinite(ours) != torch.isfinite(theirs)
    assert torch.equal(ours[~differ], theirs[~differ])
    assert bool(((mass_before[differ] - cut).abs() < 1e-5).all()), "they disagree away from the cut"


@PROPERTIES
@given(cases, st.floats(0.0, 0.999), st.floats(0.2, 8.0))
def test_top_p_equals_transformers(case, top_p, scale):
    history, logits = random_case(*case, scale=scale)
    ours = processed(SamplerSettings(top_p=top_p), history, logits)
    theirs = by_transformers(TopPLogitsWarper(top_p), history, logits)
    probs = torch.softmax(logits.double(), dim=0)
    order = torch.argsort(probs, descending=True)
    mass_above = torch.empty_like(probs)
    mass_above[order] = torch.cumsum(probs[order], 0) - probs[order]
    assert_same_or_at_the_cut(ours, theirs, mass_above, top_p)


@PROPERTIES
@given(cases, st.floats(0.01, 0.999), st.floats(0.2, 8.0))
def test_typical_p_equals_transformers(case, typical_p, scale):
    history, logits = random_case(*case, scale=scale)
    ours = processed(SamplerSettings(typical_p=typical_p), history, logits)
    theirs = by_transformers(TypicalLogitsWarper(typical_p), history, logits)
    log_probs = torch.log_softmax(logits.double(), dim=0)
    distance = (-log_probs - -(log_probs * log_probs.exp()).sum()).abs()
    order = torch.argsort(distance)
    mass_before = torch.empty_like(distance)
    mass_before[order] = torch.cumsum(log_probs.exp()[order], 0)
    assert_same_or_at_the_cut(ours, theirs, mass_before, typical_p)


def test_a_flat_distribution_puts_the_cut_far_down_the_vocabulary():
    """Thousands of tokens share each bin of the key here; the cut must still fall where transformers puts it."""
    history, logits = random_case(0, 49_152, 10, scale=0.01)
    ours = processed(SamplerSettings(top_p=0.9, typical_p=0.9, order=("top_p", "typical_p")), history, logits)
    theirs = by_transformers(TopPLogitsWarper(0.9), history, logits)
    theirs = by_transformers(TypicalLogitsWarper(0.9), history, theirs)
    assert torch.isfinite(ours).sum() > 30_000
    assert (torch.isfinite(ours) != torch.isfinite(theirs)).sum() <= 2


# --- greedy decoding ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.generation_config.eos_token_id = None  # run the full length, as the loop below does
    return model.eval()


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({}, {}),
        ({"repetition_penalty": 1.5}, {"repetition_penalty": 1.5}),
        ({"no_repeat_ngram": 2}, {"no_repeat_ngram_size": 2}),
    ],
)
def test_greedy_equals_transformers_greedy_generate(tiny_llama, ours, theirs):
    prompt = torch.tensor([[5, 17, 42, 17, 5, 88]])
    with torch.inference_mode():
        expected = tiny_llama.generate(prompt, do_sample=False, max_new_tokens=16, **theirs)[0]
        chain = SamplerChain(PRESETS["greedy"].replace(**ours), vocab_size=97)
        tokens = prompt[0]
        for _ in range(16):
            logits = tiny_llama(tokens[None]).logits[0, -1]  # (V,)
            token = chain.choose(chain.process(tokens, logits), None)
            chain.observe(token)
            tokens = torch.cat([tokens, torch.tensor([token])])
    assert tokens.tolist() == expected.tolist()


def test_greedy_takes_the_lowest_id_among_ties_and_skips_the_truncation_samplers():
    logits = torch.tensor([0.0, 2.0, 1.0, 2.0])
    greedy = SamplerSettings(temperature=0, top_k=1, xtc_probability=1.0, xtc_threshold=0.01, mirostat_tau=0.1)
    chain = SamplerChain(greedy, vocab_size=4)
    out = chain.process(torch.tensor([1, 3]), logits)
    assert torch.equal(out, logits)
    assert chain.choose(out, None) == 1


# --- the samplers written here: their published rules as properties ---------------------------------------------


@PROPERTIES
@given(
    st.integers(3, 12).flatmap(lambda length: st.tuples(st.just(length), st.integers(1, length - 1))),
    st.integers(1, 4),
    st.floats(0.1, 3.0),
    st.floats(1.0, 3.0),
)
def test_dry_penalises_only_the_token_that_continues_a_repeat(lengths, allowed, multiplier, base):
    length, repeated = lengths  # the passage, and how much of it the text is repeating at its end
    passage = list(range(10, 10 + length))  # distinct tokens: each occurs once in the passage
    history = torch.tensor([1, *passage, 2, 3, *passage[:repeated]])
    logits = torch.randn(40, generator=torch.Generator().manual_seed(repeated))
    dry = SamplerSettings(dry_multiplier=multiplier, dry_base=base, dry_allowed_length=allowed)
    out = processed(dry, history, logits)
    continuation = passage[repeated]
    others = torch.ones(40, dtype=torch.bool)
    others[continuation] = False
    assert torch.equal(out[others], logits[others])
    penalty = multiplier * base ** (repeated - allowed) if repeated >= allowed else 0.0
    assert float(logits[continuation] - out[continuation]) == pytest.approx(penalty, rel=1e-5, abs=1e-5)


def test_dry_penalty_grows_by_the_base_with_each_repeated_token():
    passage = list(range(10, 30))
    logits = torch.zeros(40)
    dry = SamplerSettings(dry_multiplier=0.5, dry_base=2.0, dry_allowed_length=3)
    penalties = [
        -float(processed(dry, torch.tensor([*passage, 1, *passage[:n]]), logits)[passage[n]]) for n in range(3, 9)
    ]
    assert penalties == pytest.approx([0.5 * 2.0**k for k in range(6)])


def test_dry_repeats_stop_at_sequence_breakers():
    decode = {7: "\n", 8: "a:b", 9: "*"}.get
    chain_options = {"decode_token": lambda token_id: decode(token_id, f"w{token_id}")}
    dry = SamplerSettings(dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=1)
    logits = torch.zeros(40)
    # "11 12 7 13 14 15 ... 11 12 7 13 14": the newline (7) cuts the repeat to "13 14", so 15 costs 2^(2-1).
    history = torch.tensor([11, 12, 7, 13, 14, 15, 20, 21, 11, 12, 7, 13, 14])
    out = processed(dry, history, logits, **chain_options)
    assert float(out[15]) == pytest.approx(-2.0)
    # A breaker as the last token ends every repeat; a breaker is never the penalised continuation.
    assert torch.equal(processed(dry, torch.tensor([11, 12, 9, 20, 11, 12, 9]), logits, **chain_options), logits)
    out = processed(dry, torch.tensor([11, 12, 8, 20, 11, 12]), logits, **chain_options)
    assert torch.equal(out, logits)
    # Without decode_token no token breaks a repeat.
    assert float(processed(dry, history, logits)[15]) == pytest.approx(-(2.0**4))


def test_dry_looks_only_within_its_range():
    history = torch.tensor([11, 12, 13, 14, 1, 2, 3, 4, 5, 11, 12, 13])
    logits = torch.zeros(40)
    dry = SamplerSettings(dry_multiplier=1.0, dry_allowed_length=2)
    assert float(processed(dry, history, logits)[14]) < 0
    assert torch.equal(processed(dry.replace(dry_range=8), history, logits), logits)


xtc_cases = st.tuples(
    st.lists(st.floats(0.01, 10.0), min_size=2, max_size=20),  # unnormalised probabilities
    st.floats(0.01, 0.5),  # threshold
)


@PROPERTIES
@given(xtc_cases)
def test_xtc_removes_the_top_choices_but_the_least_likely_when_two_pass(case):
    weights, threshold = case
    logits = torch.tensor(weights).log()
    out = processed(SamplerSettings(xtc_threshold=threshold, xtc_probability=1.0), torch.tensor([0]), logits)
    probs = torch.softmax(logits, dim=0)
    top = [i for i in range(len(weights)) if probs[i] >= threshold]
    if len(top) < 2:
        assert torch.equal(out, logits)
        return
    kept = min(top, key=lambda i: (float(probs[i]), i))
    removed = [i for i in top if i != kept]
    assert all(out[i] == NEG_INF for i in removed)
    untouched = [i for i in range(len(weights)) if i not in removed]
    assert torch.equal(out[untouched], logits[untouched])


def test_xtc_never_acts_when_its_roll_fails():
    """XTC draws one uniform number a position from the generator and acts only below xtc_probability."""
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    chain = SamplerChain(SamplerSettings(xtc_threshold=0.1, xtc_probability=0.3), vocab_size=3)
    generator, twin = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    acted = 0
    for _ in range(4000):
        roll = float(torch.rand((), generator=twin, dtype=torch.float64))
        out = chain.process(torch.tensor([0]), logits, generator=generator)
        if roll >= 0.3:
            assert torch.equal(out, logits)
        else:
            assert out.tolist() == [NEG_INF, NEG_INF, pytest.approx(math.log(0.2))]
            acted += 1
    assert acted / 4000 == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("tau", [2.0, 4.0])
def test_mirostat_holds_the_observed_surprise_near_tau(tau):
    ranks = torch.arange(1, 2001, dtype=torch.float32)
    logits = -1.1 * ranks.log()  # (V,) a Zipf-like distribution, about 6 bits of entropy
    chain = SamplerChain(SamplerSettings(mirostat_tau=tau, mirostat_eta=0.1), vocab_size=2000)
    generator = torch.Generator().manual_seed(0)
    history = torch.tensor([0])
    surprises = []
    for _ in range(3000):
        out = chain.process(history, logits, generator=generator)
        token = chain.choose(out, generator)
        chain.observe(token)
        surprises.append(-float(torch.log_softmax(out, dim=0)[token]) / math.log(2))
    assert sum(surprises[1000:]) / 2000 == pytest.approx(tau, abs=0.25)


@PROPERTIES
@given(cases, st.floats(0.05, 3.0), st.floats(0.2, 8.0))
def test_top_n_sigma_keeps_exactly_the_tokens_within_n_sigma_of_the_best(case, n, scale):
    history, logits = random_case(*case, scale=scale)
    banned = int(torch.argmax(logits))  # a banned token leaves the deviation and the best score
    out = processed(SamplerSettings(top_n_sigma=n, banned_tokens=(banned,)), history, logits)
    rest = torch.cat([logits[:banned], logits[banned + 1 :]]).double()
    cutoff = rest.max() - n * rest.std(correction=0)
    kept = torch.isfinite(out)
    expected = logits.double() >= cutoff
    expected[banned] = False
    near_cutoff = (logits.double() - cutoff).abs() < 1e-4
    assert torch.equal(kept[~near_cutoff], expected[~near_cutoff])
    assert torch.equal(out[kept], logits[kept])


def test_top_n_sigma_does_not_care_where_temperature_runs():
    history, logits = random_case(3, 1000, 5)
    early = SamplerSettings(top_n_sigma=1.0, temperature=0.5, order=("top_n_sigma", "temperature"))
    late = early.replace(order=("temperature", "top_n_sigma"))
    assert torch.equal(
        torch.isfinite(processed(early, history, logits)), torch.isfinite(processed(late, history, logits))
    )


@PROPERTIES
@given(
    st.lists(st.integers(0, 9), max_size=30),
    st.integers(-16, 16).map(lambda x: x / 8),
    st.integers(-16, 16).map(lambda x: x / 8),
    st.integers(0, 12),
    st.integers(0, 2**31),
)
def test_presence_and_frequency_penalties_subtract_exactly(history, presence, frequency, window, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randint(-64, 64, (10,), generator=generator) / 16  # exact in float32, as are the penalties
    penalties = SamplerSettings(presence_penalty=presence, frequency_penalty=frequency, repetition_range=window)
    out = processed(penalties, torch.tensor(history, dtype=torch.long), logits)
    counts = Counter(history[-window:] if window else history)
    expected = [float(logits[t]) - (presence if counts[t] else 0.0) - frequency * counts[t] for t in range(10)]
    assert out.tolist() == expected


def test_bans_and_ban_eos_remove_their_tokens_and_nothing_else():
    history, logits = random_case(1, 50, 5)
    out = processed(SamplerSettings(banned_tokens=(3, 7), ban_eos=True), history, logits, eos_token_ids=(0, 49))
    removed = [0, 3, 7, 49]
    assert all(out[i] == NEG_INF for i in removed)
    rest = [i for i in range(50) if i not in removed]
    assert torch.equal(out[rest], logits[rest])
    assert torch.equal(processed(SamplerSettings(ban_eos=True), history, logits), logits)  # no eos named


def test_a_banned_id_outside_the_vocabulary_is_refused():
    with pytest.raises(UserError) as caught:
        SamplerChain(SamplerSettings(banned_tokens=(50,)), vocab_size=50)
    assert caught.value.field == "banned_tokens"


@pytest.mark.parametrize("others", [{}, dataclasses.asdict(EVERYTHING)])
def test_choose_refuses_when_every_token_is_removed(others):
    chain = SamplerChain(SamplerSettings(**{**others, "no_repeat_ngram": 1}), vocab_size=5, eos_token_ids=(0,))
    out = chain.process(torch.tensor([0, 1, 2, 3, 4]), torch.zeros(5))
    assert not torch.isfinite(out).any()
    with pytest.raises(UserError, match="every token was removed"):
        chain.choose(out, None)


def test_the_order_changes_results_where_it_should():
    """Min-p measured on a flattened distribution keeps more tokens than min-p measured before flattening."""
    history, logits = random_case(5, 1000, 5)
    first_temperature = SamplerSettings(temperature=3.0, min_p=0.2, order=("temperature", "min_p"))
    first_min_p = first_temperature.replace(order=("min_p", "temperature"))
    kept_after = int(torch.isfinite(processed(first_temperature, history, logits)).sum())
    kept_before = int(torch.isfinite(processed(first_min_p, history, logits)).sum())
    assert kept_after > kept_before
    assert first_temperature.active_order() == ("temperature", "min_p")


# --- choosing ----------------------------------------------------------------------------------------------------


def test_draws_follow_the_processed_distribution_and_never_take_a_removed_token():
    logits = torch.tensor([0.5, 0.3, 0.2, 0.0]).log()  # the last one is -inf, removed
    chain = SamplerChain(SamplerSettings(), vocab_size=4)
    generator = torch.Generator().manual_seed(1)
    counts = Counter(chain.choose(logits, generator) for _ in range(6000))
    assert counts[3] == 0
    assert [counts[i] / 6000 for i in range(3)] == pytest.approx([0.5, 0.3, 0.2], abs=0.025)


@pytest.mark.parametrize("preset", ["balanced", "creative"])
def test_a_seed_reproduces_the_sequence_of_choices(preset):
    weights = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0)) * 2

    def run(seed: int) -> list[int]:
        chain = SamplerChain(PRESETS[preset], vocab_size=1000, decode_token=str)
        generator = torch.Generator().manual_seed(seed)
        tokens = [1]
        for _ in range(40):
            history = torch.tensor(tokens)
            logits = weights[tokens[-1] % 64]  # (V,) the "model": scores from the last token
            token = chain.choose(chain.process(history, logits, generator=generator), generator)
            chain.observe(token)
            tokens.append(token)
        return tokens

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize("chosen", ["everything", *PRESETS])
def test_process_never_modifies_its_inputs(chosen):
    sampler_settings = EVERYTHING if chosen == "everything" else PRESETS[chosen]
    history, logits = random_case(9, 500, 80)
    history_before, logits_before = history.clone(), logits.clone()
    chain = SamplerChain(sampler_settings, vocab_size=500, eos_token_ids=(0,), decode_token=str)
    out = chain.process(history, logits, generator=torch.Generator().manual_seed(0))
    chain.observe(chain.choose(out, None))
    assert torch.equal(history, history_before) and torch.equal(logits, logits_before)
    assert out is not logits and out.dtype == torch.float32


@pytest.mark.gpu
def test_scores_on_the_gpu_give_what_they_give_on_the_cpu():
    history, logits = random_case(4, 49_152, 300)
    without_xtc = EVERYTHING.replace(xtc_probability=0.0)  # its roll would come from another generator
    on_cpu = SamplerChain(without_xtc, vocab_size=49_152, eos_token_ids=(0,), decode_token=str)
    on_gpu = SamplerChain(without_xtc, vocab_size=49_152, eos_token_ids=(0,), decode_token=str)
    expected = on_cpu.process(history, logits)
    got = on_gpu.process(history, logits.cuda())  # the history may stay where the decoder keeps it
    assert got.device.type == "cuda"
    both = torch.isfinite(got).cpu() & torch.isfinite(expected)
    # Reductions run in another order there: a token at a cut may fall the other way, nothing more.
    assert int((torch.isfinite(got).cpu() != torch.isfinite(expected)).sum()) <= 2 and int(both.sum()) > 0
    assert torch.allclose(got.cpu()[both], expected[both], atol=1e-4)
    token = on_gpu.choose(got, torch.Generator("cuda").manual_seed(0))
    assert torch.isfinite(expected[token])
    on_gpu.observe(token)
    greedy = SamplerChain(PRESETS["greedy"], vocab_size=49_152)
    assert greedy.choose(greedy.process(history.cuda(), logits.cuda()), None) == int(torch.argmax(logits))


@PROPERTIES
@given(st.permutations(DEFAULT_ORDER), st.integers(0, 2**31), st.integers(0, 300))
def test_every_order_of_every_sampler_leaves_a_choice(order, seed, length):
    history, logits = random_case(seed, 500, length)
    chain = SamplerChain(EVERYTHING.replace(order=tuple(order)), vocab_size=500, eos_token_ids=(0,), decode_token=str)
    generator = torch.Generator().manual_seed(seed)
    out = chain.process(history, logits, generator=generator)
    token = chain.choose(out, generator)
    assert torch.isfinite(out[token]) and token not in (0, 3, 4)
    chain.observe(token)


def test_everything_on_at_once_leaves_a_choice():
    history, logits = random_case(2, 49_152, 300)
    chain = SamplerChain(EVERYTHING, vocab_size=49_152, eos_token_ids=(0,), decode_token=str)
    out = chain.process(history, logits)
    assert 1 <= int(torch.isfinite(out).sum()) <= 200
    assert torch.isfinite(out[chain.choose(out, None)])


# --- --ban -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    train_bpe(["the cat sat on the mat. the cat ate the rat.\n" * 50], 300).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def test_parse_banned_takes_token_texts_and_ids(bpe):
    the = bpe.encode(" the", add_special_tokens=False)
    assert len(the) == 1
    assert parse_banned([" the", "7", bpe.eos_token, "7"], bpe) == (the[0], 7, bpe.eos_token_id)


def test_parse_banned_names_how_a_text_splits(bpe):
    with pytest.raises(UserError, match=r"is \d+ tokens \(.*\|.*\), not one") as caught:
        parse_banned(["the cat sat"], bpe)
    assert caught.value.field == "banned_tokens"
    with pytest.raises(UserError, match="outside the tokenizer's"):
        parse_banned([str(len(bpe))], bpe)
    with pytest.raises(UserError, match="empty"):
        parse_banned([""], bpe)
