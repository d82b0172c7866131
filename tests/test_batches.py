"""Batches of token windows: shifted pairs, reproducible and resumable, every window once, bad sizes refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from smoltui.engine.batches import RandomWindows, SequentialWindows, check_fits_context, evaluation_batches
from smoltui.engine.data import read_corpus, tokenize_corpus
from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import char_tokenizer

IDS = np.arange(1000, dtype=np.uint16)


def take(windows, steps):
    return [windows.next_batch() for _ in range(steps)]


def same(batches, others):
    return all(torch.equal(x, ox) and torch.equal(y, oy) for (x, y), (ox, oy) in zip(batches, others, strict=True))


def test_random_windows_are_shifted_pairs_of_int64():
    x, y = next(RandomWindows(IDS, batch_size=4, context=16, seed=0))
    assert x.shape == y.shape == (4, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # IDS counts up, so the next token is always one more


def test_random_windows_are_reproducible_from_the_seed():
    assert same(take(RandomWindows(IDS, 4, 16, seed=1), 5), take(RandomWindows(IDS, 4, 16, seed=1), 5))
    assert not same(take(RandomWindows(IDS, 4, 16, seed=1), 5), take(RandomWindows(IDS, 4, 16, seed=2), 5))


def test_random_windows_resume_exactly_through_a_checkpoint():
    straight = take(RandomWindows(IDS, 4, 16, seed=7), 20)
    first = RandomWindows(IDS, 4, 16, seed=7)
    head = take(first, 10)
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)
    saved.seek(0)
    resumed = RandomWindows(IDS, 4, 16, seed=999)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    assert same(head + take(resumed, 10), straight)


def test_sequential_windows_go_in_order_and_wrap():
    ids = np.arange(11, dtype=np.uint16)  # (11 - 1) // 2 = 5 windows of 2
    windows = SequentialWindows(ids, batch_size=2, context=2)
    starts = [x[:, 0].tolist() for x, _ in take(windows, 3)]
    assert starts == [[0, 2], [4, 6], [8, 0]]
    assert (windows.epoch, windows.position) == (1, 1)
    resumed = SequentialWindows(ids, batch_size=2, context=2)
    resumed.load_state_dict(windows.state_dict())
    assert same(take(resumed, 4), take(windows, 4))


def test_evaluation_batches_cover_every_window_once():
    batches = list(evaluation_batches(np.arange(23, dtype=np.uint16), batch_size=4, context=4))
    assert [x.shape[0] for x, _ in batches] == [4, 1]
    assert torch.cat([x[:, 0] for x, _ in batches]).tolist() == [0, 4, 8, 12, 16]


def test_windows_refuse_bad_sizes_and_a_state_from_another_corpus():
    with pytest.raises(UserError, match="the token array has 1000 tokens"):
        RandomWindows(IDS, 4, 1000, seed=0)
    with pytest.raises(UserError, match="batch size must be at least 1, got 0"):
        SequentialWindows(IDS, 0, 16)
    state = RandomWindows(IDS, 4, 16, seed=0).state_dict()
    with pytest.raises(UserError, match="resume with the same corpus"):
        RandomWindows(IDS[:500], 4, 16, seed=0).load_state_dict(state)


def test_check_fits_context_names_both_sizes(tmp_path):
    (tmp_path / "t.txt").write_text("y" * 800)
    tokenized = tokenize_corpus(read_corpus(str(tmp_path / "t.txt")), char_tokenizer(), cache_dir=tmp_path)
    check_fits_context(tokenized, 39)
    with pytest.raises(UserError, match="the validation split has 40 tokens, but one context window of 256 needs 257"):
        check_fits_context(tokenized, 256)
    with pytest.raises(UserError, match="the training split has 760 tokens, .* window of 1024 needs 1025"):
        check_fits_context(tokenized, 1024)
