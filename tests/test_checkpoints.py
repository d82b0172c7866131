"""Checkpoint files: atomic replacement, a stale or missing `latest`, leftovers of a killed write, pruning."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from smoltui.engine import checkpoints
from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import char_tokenizer


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=99))
    return model, char_tokenizer()


def save(run_dir, step, model_and_tokenizer, **state):
    model, tokenizer = model_and_tokenizer
    return checkpoints.save_checkpoint(run_dir, step, model, tokenizer, {"step": step, **state})


def test_saved_checkpoints_are_found_and_loadable(tmp_path, model_and_tokenizer):
    for step in (5, 10, 15):
        save(tmp_path, step, model_and_tokenizer, value=step * 2)
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [5, 10, 15]
    latest = checkpoints.latest_checkpoint(tmp_path)
    assert latest.step == 15
    assert checkpoints.load_trainer_state(latest) == {"step": 15, "value": 30}
    assert (latest.path / "model.safetensors").is_file() and (latest.path / "tokenizer.json").is_file()
    assert (tmp_path / "checkpoints" / "latest").stat().st_mode & 0o777 == 0o600


def test_a_stale_latest_pointer_falls_back_to_the_newest_complete_checkpoint(tmp_path, model_and_tokenizer):
    save(tmp_path, 5, model_and_tokenizer)
    save(tmp_path, 10, model_and_tokenizer)
    (tmp_path / "checkpoints" / "latest").write_text("step_000099")
    assert checkpoints.latest_checkpoint(tmp_path).step == 10
    (tmp_path / "checkpoints" / "latest").unlink()
    assert checkpoints.latest_checkpoint(tmp_path).step == 10


def test_the_leftovers_of_a_killed_write_are_ignored_then_removed(tmp_path, model_and_tokenizer):
    save(tmp_path, 5, model_and_tokenizer)
    partial = tmp_path / "checkpoints" / ".partial-step_000010"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half a file")
    incomplete = tmp_path / "checkpoints" / "step_000012"  # a folder without its trainer state is not complete
    incomplete.mkdir()
    assert checkpoints.latest_checkpoint(tmp_path).step == 5
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [5]
    save(tmp_path, 10, model_and_tokenizer)
    assert not partial.exists()
    assert checkpoints.latest_checkpoint(tmp_path).step == 10


def test_saving_the_same_step_again_replaces_it(tmp_path, model_and_tokenizer):
    save(tmp_path, 5, model_and_tokenizer, value=1)
    save(tmp_path, 5, model_and_tokenizer, value=2)
    assert checkpoints.load_trainer_state(checkpoints.latest_checkpoint(tmp_path))["value"] == 2


def test_pruning_keeps_the_last_k_and_the_best(tmp_path, model_and_tokenizer):
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, model_and_tokenizer)
    checkpoints.prune_checkpoints(tmp_path, keep_last=2, best_step=2)
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [2, 4, 5]


def test_asking_for_a_missing_step_lists_the_steps_there_are(tmp_path, model_and_tokenizer):
    with pytest.raises(UserError, match="has no checkpoint yet"):
        checkpoints.find_checkpoint(tmp_path)
    save(tmp_path, 5, model_and_tokenizer)
    assert checkpoints.find_checkpoint(tmp_path, 5).step == 5
    with pytest.raises(UserError, match="no checkpoint at step 7; its checkpoints are at steps: 5."):
        checkpoints.find_checkpoint(tmp_path, 7)
