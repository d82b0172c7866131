"""Token texts and statistics: incremental detokenizing, the two-pass top-k, argmax and rank."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny_lms import bpe_tokenizer

from smoltui.engine.token_text import IncrementalDetokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


@pytest.mark.parametrize("text", ["Ünïcödé wörds, 日本語のテキスト and 🤖🚀 emoji.", "plain words  and\n\nnewlines"])
def test_incremental_detokenizer_keeps_multibyte_characters_whole(text, tokenizer):
    ids = tokenizer(text)["input_ids"]
    assert any(tokenizer.decode([token]) == "\ufffd" for token in tokenizer("🤖日")["input_ids"])
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces = [detokenizer.push(token) for token in ids]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_incremental_detokenizer_keeps_the_spaces_of_sentencepiece_style_tokenizers():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(["the cat sat on the mat"] * 5, trainers.BpeTrainer(special_tokens=["<unk>"]))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    ids = tokenizer("the cat sat on the mat")["input_ids"]
    assert tokenizer.decode(ids[1:2]) != " " + tokenizer.decode(ids[1:2])  # alone, a token loses its space

    detokenizer = IncrementalDetokenizer(tokenizer, ids[:1])
    assert "".join(detokenizer.push(token) for token in ids[1:]) == " cat sat on the mat"


@pytest.mark.parametrize("size", [49152, 1000, 301, 30])
def test_two_pass_top_k_and_first_argmax_agree_with_torch(size):
    from smoltui.engine.token_stats import count_above, first_argmax, top_k

    torch.manual_seed(size)
    values = torch.randn(size)
    values[size // 3] = values[size // 2] = values.max() + 1  # a tie at the top: the first index wins
    top_values, top_indices = top_k(values, 20)
    expected_values, expected_indices = torch.topk(values, min(20, size))
    assert torch.equal(top_values, expected_values)
    assert set(top_indices.tolist()) == set(expected_indices.tolist())
    assert first_argmax(values) == int(torch.argmax(values)) == size // 3
    assert count_above(values, 5) == int((values > values[5]).sum())
