"""Batches of token windows: shifted pairs, reproducible and resumable, every window once, bad sizes refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from smoltui.engine.batches import RandomWindows, SequentialWindows, check_fits_context
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


def test_sequential_ranks_split_each_step_into_disjoint_shares_of_one_big_batch():
    """Two ranks of batch 2 read, step by step, exactly the windows one process of batch 4 reads, none twice."""
    ids = np.arange(25, dtype=np.uint16)  # (25 - 1) // 2 = 12 windows of 2
    ranks = [SequentialWindows(ids, batch_size=2, context=2, rank=rank, world_size=2) for rank in (0, 1)]
    alone = SequentialWindows(ids, batch_size=4, context=2)
    first_epoch = []
    for step in range(5):  # 3 steps are one epoch; 2 more wrap around
        shares = [windows.next_batch()[0] for windows in ranks]
        together = alone.next_batch()[0]
        assert torch.equal(torch.cat(shares), together), f"step {step}"
        if step < 3:
            first_epoch += torch.cat(shares)[:, 0].tolist()
    assert sorted(first_epoch) == list(range(0, 24, 2))  # every window of the epoch once, across both ranks
    assert [(windows.epoch, windows.position) for windows in ranks] == [(1, 8), (1, 10)]


def test_sequential_ranks_resume_exactly_and_a_single_process_state_still_loads():
    ids = np.arange(25, dtype=np.uint16)
    rank = SequentialWindows(ids, batch_size=2, context=2, rank=1, world_size=2)
    take(rank, 4)
    resumed = SequentialWindows(ids, batch_size=2, context=2, rank=1, world_size=2)
    resumed.load_state_dict(rank.state_dict())
    assert same(take(resumed, 5), take(rank, 5))

    saved_before_ranks = {"tokens": 25, "position": 3, "epoch": 2}  # what every process wrote before ranks
    alone = SequentialWindows(ids, batch_size=2, context=2)
    alone.load_state_dict(saved_before_ranks)
    assert [x[:, 0].tolist() for x, _ in take(alone, 2)] == [[6, 8], [10, 12]]
    assert (alone.epoch, alone.position) == (2, 7)
    second = SequentialWindows(ids, batch_size=2, context=2, rank=1, world_size=2)
    second.load_state_dict(saved_before_ranks)  # from here on, rank 1 reads its own share
    assert [x[:, 0].tolist() for x, _ in take(second, 2)] == [[10, 12], [18, 20]]
    with pytest.raises(UserError, match="rank 1 of 2 processes"):
        SequentialWindows(ids, batch_size=2, context=2).load_state_dict(rank.state_dict())


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
