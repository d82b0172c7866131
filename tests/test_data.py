"""Corpora: every source kind and bad input, the token cache, and the train/validation split."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest

from smoltui.engine import data
from smoltui.engine.batches import check_fits_context
from smoltui.engine.data import BUILTIN_PYDOCS, read_corpus, tokenize_corpus
from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import char_tokenizer, encode_char_ids, train_bpe

PROSE = "It was the best of times, it was the worst of times.\nIt was the age of wisdom.\n"


@pytest.fixture(scope="module")
def bpe():
    return train_bpe([PROSE * 20], 300)


@pytest.fixture(scope="module")
def pydocs(tmp_path_factory):
    """builtin:pydocs read once without a cache (~1.5 s), then from the cache it wrote."""
    cache = tmp_path_factory.mktemp("corpora")
    return read_corpus(BUILTIN_PYDOCS, cache_dir=cache), cache


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# Sources


@pytest.mark.parametrize("name", ["notes.txt", "README.md", "UPPER.TXT"])
def test_a_text_file_is_read_as_is(tmp_path, name):
    path = write(tmp_path / name, PROSE)
    corpus = read_corpus(str(path))
    assert corpus.text == PROSE
    assert corpus.fingerprint == hashlib.sha256(PROSE.encode()).hexdigest()
    assert corpus.warnings == []
    assert list(corpus.documents()) == [PROSE]


def test_a_byte_order_mark_is_dropped(tmp_path):
    assert read_corpus(str(write(tmp_path / "bom.txt", b"\xef\xbb\xbfhello"))).text == "hello"


def test_a_folder_joins_its_text_files_in_sorted_order(tmp_path):
    write(tmp_path / "b.md", "second")
    write(tmp_path / "a.txt", "first")
    write(tmp_path / "c" / "d.jsonl", '{"text": "third"}\n{"text": "fourth"}\n')
    write(tmp_path / "empty.txt", "  \n")
    write(tmp_path / "script.py", "print('not a corpus')")
    write(tmp_path / ".git" / "notes.txt", "hidden")
    corpus = read_corpus(str(tmp_path))
    assert corpus.text == "first\n\nsecond\n\nthird\n\nfourth"
    assert list(corpus.documents()) == ["first", "second", "third", "fourth"]


def test_jsonl_gives_one_document_per_line(tmp_path):
    lines = [json.dumps({"text": "one", "id": 1}), "", json.dumps({"text": "two\nlines"})]
    corpus = read_corpus(str(write(tmp_path / "data.jsonl", "\n".join(lines))))
    assert list(corpus.documents()) == ["one", "two\nlines"]
    assert corpus.text == "one\n\ntwo\nlines"


def test_pydocs_holds_the_standard_librarys_docstrings(pydocs):
    corpus, _ = pydocs
    assert len(corpus.text) > 500_000
    assert "module json\n\nJSON (JavaScript Object Notation)" in corpus.text
    assert "def json.dumps(obj, *" in corpus.text
    assert "module antigravity" not in corpus.text
    assert corpus.warnings == []


def test_pydocs_is_deterministic_and_cached(pydocs):
    corpus, cache = pydocs
    assert len(list(cache.glob("pydocs-*.json"))) == 1
    started = time.perf_counter()
    again = read_corpus(BUILTIN_PYDOCS, cache_dir=cache)
    assert time.perf_counter() - started < 0.5
    assert again.fingerprint == corpus.fingerprint
    assert read_corpus(BUILTIN_PYDOCS).fingerprint == corpus.fingerprint  # rebuilt from source


# Bad input


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(UserError, match="no such file or folder: .*nothing.txt; check the path"):
        read_corpus(str(tmp_path / "nothing.txt"))


def test_a_folder_without_text_files_is_refused(tmp_path):
    write(tmp_path / "image.png", b"\x89PNG")
    with pytest.raises(UserError, match=r"has no \.txt, \.md or \.jsonl files"):
        read_corpus(str(tmp_path))


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_an_empty_file_is_refused(tmp_path, content):
    path = write(tmp_path / "notes.txt", content)
    with pytest.raises(UserError, match=f"corpus file {path} is empty; pass a file with text in it"):
        read_corpus(str(path))


def test_a_folder_of_empty_files_is_refused(tmp_path):
    write(tmp_path / "a.txt", "")
    with pytest.raises(UserError, match="every file in corpus folder .* is empty"):
        read_corpus(str(tmp_path))


@pytest.mark.parametrize("content", [b"text\x00with a NUL", bytes(range(1, 9)) * 100 + b"some text"])
def test_a_binary_file_is_refused(tmp_path, content):
    with pytest.raises(UserError, match="looks binary, not text"):
        read_corpus(str(write(tmp_path / "data.txt", content)))


def test_non_utf8_bytes_are_replaced_with_a_warning(tmp_path):
    path = write(tmp_path / "latin1.txt", "café déjà\n".encode("latin-1") + "valid \ufffd kept".encode())
    corpus = read_corpus(str(path))
    assert corpus.text == "caf\ufffd d\ufffdj\ufffd\nvalid \ufffd kept"
    assert corpus.warnings == [f"{path}: 3 bytes were not UTF-8 and were replaced with U+FFFD"]


def test_an_unsupported_extension_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"unsupported type \(\.pdf\); pass a \.txt, \.md or \.jsonl file"):
        read_corpus(str(write(tmp_path / "paper.pdf", "text")))


@pytest.mark.parametrize(
    ("second_line", "message"),
    [("{not json", "line 2 is not valid JSON"), ('{"body": "x"}', 'line 2 has no "text" string'), ("[1]", "line 2")],
)
def test_a_bad_jsonl_line_is_named(tmp_path, second_line, message):
    path = write(tmp_path / "data.jsonl", '{"text": "fine"}\n' + second_line + "\n")
    with pytest.raises(UserError, match=message):
        read_corpus(str(path))


def test_an_unknown_builtin_is_refused():
    with pytest.raises(UserError, match="the built-in corpus is builtin:pydocs"):
        read_corpus("builtin:wikipedia")


# Tokenising and the cache


def test_char_tokens_equal_the_fast_path_and_are_cached(tmp_path, monkeypatch):
    corpus = read_corpus(str(write(tmp_path / "notes.txt", PROSE * 10)))
    first = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path / "tokens")
    assert not first.cache_hit
    assert first.ids.dtype == np.uint16
    assert first.ids.tolist() == encode_char_ids(corpus.text).tolist()
    assert (first.n_chars, first.vocab_size) == (len(corpus.text), 99)
    sidecar = json.loads(first.cache_path.with_suffix(".json").read_text())
    assert sidecar["tokens"] == len(first.ids) and sidecar["dtype"] == "uint16"

    monkeypatch.setattr(data, "encode_char_ids", lambda text: pytest.fail("a cache hit must not tokenise"))
    second = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path / "tokens")
    assert second.cache_hit
    assert second.cache_path == first.cache_path
    assert isinstance(second.ids, np.memmap) and not second.ids.flags.writeable
    assert np.array_equal(second.ids, first.ids)


def test_a_cache_hit_is_faster_than_tokenising(tmp_path, bpe):
    corpus = read_corpus(str(write(tmp_path / "big.txt", PROSE * 5000)))
    started = time.perf_counter()
    cold = tokenize_corpus(corpus, bpe, cache_dir=tmp_path)
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    warm = tokenize_corpus(corpus, bpe, cache_dir=tmp_path)
    assert (cold.cache_hit, warm.cache_hit) == (False, True)
    assert time.perf_counter() - started < cold_seconds


def test_a_changed_corpus_gets_a_new_cache_entry(tmp_path):
    path = write(tmp_path / "notes.txt", PROSE)
    before = tokenize_corpus(read_corpus(str(path)), char_tokenizer(), cache_dir=tmp_path / "tokens")
    write(path, PROSE + "One more line.\n")
    after = tokenize_corpus(read_corpus(str(path)), char_tokenizer(), cache_dir=tmp_path / "tokens")
    assert not after.cache_hit
    assert after.cache_path != before.cache_path
    assert len(after.ids) == len(PROSE) + len("One more line.\n")


def test_a_torn_sidecar_means_tokenising_again(tmp_path):
    corpus = read_corpus(str(write(tmp_path / "notes.txt", PROSE)))
    first = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path)
    first.cache_path.with_suffix(".json").write_text('{"tokens": ')
    again = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path)
    assert not again.cache_hit
    assert np.array_equal(again.ids, first.ids)


def test_bpe_puts_eos_between_documents_and_reports_progress(tmp_path, bpe):
    write(tmp_path / "docs" / "a.txt", PROSE)
    write(tmp_path / "docs" / "b.txt", "It was the epoch of belief.\n")
    corpus = read_corpus(str(tmp_path / "docs"))
    calls = []
    tokenized = tokenize_corpus(corpus, bpe, cache_dir=tmp_path / "tokens", progress=lambda *a: calls.append(a))
    ids = tokenized.ids.tolist()
    assert ids.count(bpe.eos_token_id) == 1
    assert bpe.decode(ids) == PROSE + bpe.eos_token + "It was the epoch of belief.\n"
    total = len(PROSE) + len("It was the epoch of belief.\n")
    assert calls and calls[-1] == (total, total)


def test_the_last_five_percent_is_validation(tmp_path):
    corpus = read_corpus(str(write(tmp_path / "notes.txt", "x" * 1000)))
    tokenized = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path)
    assert (len(tokenized.train), len(tokenized.val)) == (950, 50)
    assert np.shares_memory(tokenized.val, tokenized.ids)
    wider = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path, val_fraction=0.1)
    assert (len(wider.train), len(wider.val)) == (900, 100)
    with pytest.raises(UserError, match="validation fraction"):
        tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path, val_fraction=1.0)


def test_shakespeare_tokenises_to_one_id_per_character(shakespeare, tmp_path):
    corpus = read_corpus(str(shakespeare))
    tokenized = tokenize_corpus(corpus, char_tokenizer(), cache_dir=tmp_path)
    assert len(tokenized.ids) == len(corpus.text)
    assert len(tokenized.val) == round(len(corpus.text) * 0.05)
    check_fits_context(tokenized, 256)
