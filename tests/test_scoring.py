"""Scoring a text under a model: per-token log-probabilities and ranks, windows past the context, batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_lms import bpe_tokenizer, tiny_lm

from smoltui.engine.errors import UserError
from smoltui.engine.scoring import perplexity_of_ids, score_ids, score_text, surprise_diff

TEXT = "The quick brown fox jumps over the lazy dog. Ünïcödé 🤖!"


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_lm("llama", tmp_path_factory.mktemp("llama"))  # 64 positions


def reference_logprobs(model, sequence: list[int]) -> tuple[list[float], list[int]]:
    """log p(token | everything before it) and its rank, from one forward over the whole sequence."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([sequence])).logits[0, :-1].float()  # (T - 1, vocab)
    targets = torch.tensor(sequence[1:])
    logprobs = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
    ranks = (logits > logits.gather(-1, targets[:, None])).sum(-1)
    return logprobs.tolist(), ranks.tolist()


def test_every_token_gets_its_logprob_rank_and_text(model, tokenizer):
    score = score_text(model, tokenizer, TEXT)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    logprobs, ranks = reference_logprobs(model, [tokenizer.bos_token_id] + ids)  # the start token leads

    assert [token.token_id for token in score.tokens] == ids
    assert [token.logprob for token in score.tokens] == pytest.approx(logprobs, abs=1e-4)
    assert [token.rank for token in score.tokens] == ranks
    assert "".join(token.text for token in score.tokens) == TEXT
    assert score.scored_tokens == len(ids)
    assert score.total_logprob == pytest.approx(sum(logprobs), abs=1e-3)
    assert score.perplexity == pytest.approx(math.exp(-sum(logprobs) / len(ids)), rel=1e-4)


def test_a_text_longer_than_the_context_is_scored_in_windows(model, tokenizer):
    ids = tokenizer(TEXT * 6, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 * 64

    score = score_ids(model, tokenizer, ids, window=16, stride=6, batch_tokens=40)

    sequence = [tokenizer.bos_token_id] + ids
    expected = []  # token t is scored in the window that first reaches it, with that window's context
    begin, scored_to = 0, 1
    while scored_to < len(sequence):
        end = min(begin + 16, len(sequence))
        logprobs, _ = reference_logprobs(model, sequence[begin:end])
        expected += logprobs[scored_to - begin - 1 :]
        scored_to, begin = end, begin + 6
    assert [token.logprob for token in score.tokens] == pytest.approx(expected, abs=1e-4)
    one_at_a_time = score_ids(model, tokenizer, ids, window=16, stride=6, batch_tokens=1)
    assert [t.logprob for t in one_at_a_time.tokens] == pytest.approx([t.logprob for t in score.tokens], abs=1e-5)


@pytest.mark.parametrize(("window", "stride", "batch_tokens"), [(16, 6, 40), (64, 63, 128), (16, 15, 1)])
def test_the_loss_only_perplexity_equals_the_per_token_one(model, tokenizer, window, stride, batch_tokens):
    ids = np.asarray(tokenizer(TEXT * 6, add_special_tokens=False)["input_ids"], dtype=np.uint16)
    assert len(ids) > 2 * window

    lean = perplexity_of_ids(model, tokenizer, ids, window=window, stride=stride, batch_tokens=batch_tokens)
    full = score_ids(model, tokenizer, ids.tolist(), window=window, stride=stride, batch_tokens=batch_tokens)
    assert lean.scored_tokens == full.scored_tokens == len(ids)
    assert lean.total_nll == pytest.approx(-full.total_logprob, rel=1e-4)
    assert lean.perplexity == pytest.approx(full.perplexity, rel=1e-4)


def test_the_loss_only_perplexity_without_a_start_token_skips_the_first_token(tmp_path):
    from smoltui.engine.tokenizers import char_tokenizer

    tokenizer = char_tokenizer()
    model = tiny_lm("gpt2", tmp_path / "m", vocab_size=len(tokenizer))
    ids = tokenizer(TEXT * 3)["input_ids"]
    lean = perplexity_of_ids(model, tokenizer, ids, window=32, stride=20)
    full = score_ids(model, tokenizer, ids, window=32, stride=20)
    assert lean.scored_tokens == full.scored_tokens == len(ids) - 1
    assert lean.perplexity == pytest.approx(full.perplexity, rel=1e-4)


def test_without_a_start_token_the_first_token_is_not_scored(tmp_path):
    from smoltui.engine.tokenizers import char_tokenizer

    tokenizer = char_tokenizer()
    model = tiny_lm("gpt2", tmp_path / "m", vocab_size=len(tokenizer))
    score = score_text(model, tokenizer, "hello world")
    assert score.tokens[0].logprob is None and score.tokens[0].rank is None
    assert score.scored_tokens == len("hello world") - 1
    logprobs, _ = reference_logprobs(model, tokenizer("hello world")["input_ids"])
    assert [t.logprob for t in score.tokens[1:]] == pytest.approx(logprobs, abs=1e-4)


def test_surprise_diff_compares_two_models_token_by_token(model, tokenizer, tmp_path):
    other = tiny_lm("qwen2", tmp_path / "other", seed=3)
    first, second = score_text(model, tokenizer, TEXT), score_text(other, tokenizer, TEXT)
    diff = surprise_diff(first, second)
    assert diff == pytest.approx([a.logprob - b.logprob for a, b in zip(first.tokens, second.tokens, strict=True)])
    assert surprise_diff(first, first) == [0.0] * len(first.tokens)

    with pytest.raises(UserError):
        surprise_diff(first, score_text(model, tokenizer, TEXT + " more"))


def test_bad_settings_are_user_errors(model, tokenizer):
    with pytest.raises(UserError) as error:
        score_text(model, tokenizer, TEXT, window=100)  # past the 64-position context
    assert error.value.field == "window"
    with pytest.raises(UserError) as error:
        score_text(model, tokenizer, TEXT, window=16, stride=16)
    assert error.value.field == "stride"
    with pytest.raises(UserError):
        score_text(model, tokenizer, "")
