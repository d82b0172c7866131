"""Tokenizers: the char policy and its numpy fast path, local BPE, folders, and the Hub failing fast offline."""

from __future__ import annotations

import json
import random
import socket
import string
import time

import pytest
from transformers import AutoTokenizer

from smoltui.engine import tokenizers
from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import (
    END_OF_TEXT,
    char_tokenizer,
    describe_tokenizer,
    encode_char_ids,
    is_char_tokenizer,
    load_tokenizer,
    normalize_for_char,
    tokenizer_fingerprint,
    train_bpe,
)

MIXED_TEXT = (
    "  Leading spaces, \ttabs\t\tand  runs   of spaces.\n\n"
    "Curly ‘single’ and “double” quotes – dashes — and an ellipsis… with a\u00a0no-break space.\r\n"
    "Unknown: é, ß, 日本語, 🤖, a lone \r, DEL \x7f, NUL \x00, <PAD> and <UNK> as plain text.  \n"
)
BPE_TRAINING_TEXT = "The quick brown fox jumps over the lazy dog.\n" * 50 + "Ünïcödé 日本語 🤖 text\n" * 10
UNICODE_SAMPLES = [
    "plain ascii",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\n\n",
    "日本語のテキスト 🤖🚀 e\u0301 (combining) ß ẞ",
    "\x00\x07 control bytes and <|endoftext|> inside",
]


def test_char_vocabulary_has_pad_zero_unk_one_and_99_ids():
    tokenizer = char_tokenizer()
    assert len(tokenizer) == 99
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<PAD>", 0)
    assert (tokenizer.unk_token, tokenizer.unk_token_id) == ("<UNK>", 1)
    assert tokenizer.convert_tokens_to_ids([" ", "~", "\n", "\t"]) == [2, 96, 97, 98]


@pytest.mark.parametrize(
    "text",
    ["hello world", "  leading and trailing  ", "a\n\nb\tc\t\t", "many     spaces", "\n", string.printable[:95]],
)
def test_char_round_trip_is_exact(text):
    tokenizer = char_tokenizer()
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_char_normalises_typography():
    tokenizer = char_tokenizer()
    text = "‘a’ “b” c–d—e… f\u00a0g\r\nh"
    expected = "'a' \"b\" c-d-e... f g\nh"
    assert normalize_for_char(text) == expected
    assert tokenizer.decode(tokenizer.encode(text)) == expected


def test_char_maps_unknown_characters_to_unk_and_keeps_special_names_as_text():
    tokenizer = char_tokenizer()
    assert tokenizer.encode("é") == [1]
    assert tokenizer.encode("\r") == [1]
    assert tokenizer.encode("<PAD>") == tokenizer.convert_tokens_to_ids(list("<PAD>"))


def test_fast_path_gives_the_tokenizers_ids():
    tokenizer = char_tokenizer()
    rng = random.Random(0)
    noise = "".join(chr(rng.randrange(0, 0x3000)) for _ in range(2000))  # below the surrogates (U+D800)
    for text in (MIXED_TEXT, noise, "", "x"):
        ids = encode_char_ids(text)
        assert ids.dtype.name == "uint16"
        assert ids.tolist() == tokenizer.encode(text)


def test_fast_path_matches_on_shakespeare(shakespeare):
    text = shakespeare.read_text(encoding="utf-8")[:100_000]
    assert encode_char_ids(text).tolist() == char_tokenizer().encode(text)


def test_char_tokenizer_survives_save_and_auto_load(tmp_path):
    tokenizer = char_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = tokenizer.encode(MIXED_TEXT)
    assert loaded.encode(MIXED_TEXT) == ids
    assert loaded.decode(ids) == tokenizer.decode(ids)
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(tokenizer)
    assert is_char_tokenizer(loaded)
    assert describe_tokenizer(loaded) == "char (99)"


def test_bpe_round_trips_any_unicode_and_has_an_eos_token(tmp_path):
    tokenizer = train_bpe([BPE_TRAINING_TEXT], 300)
    assert 256 < len(tokenizer) <= 300
    assert tokenizer.eos_token == END_OF_TEXT
    assert tokenizer.eos_token_id is not None
    assert describe_tokenizer(tokenizer) == f"byte-level BPE ({len(tokenizer)})"
    assert not is_char_tokenizer(tokenizer)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(tokenizer)
    for text in UNICODE_SAMPLES:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert loaded.encode(text) == ids
        assert loaded.decode(ids) == text


def test_bpe_merges_frequent_words():
    tokenizer = train_bpe([BPE_TRAINING_TEXT], 300)
    assert len(tokenizer.encode("The quick brown fox")) < len("The quick brown fox") / 2


def test_bpe_refuses_a_vocabulary_smaller_than_the_byte_alphabet():
    with pytest.raises(UserError, match="at least 257"):
        train_bpe(["text"], 200)


def test_bpe_training_is_deterministic():
    """bpe:N is trained again on every run; the same corpus must give the same tokenizer (and token cache)."""
    fingerprints = {tokenizer_fingerprint(train_bpe([BPE_TRAINING_TEXT * 20], 400)) for _ in range(3)}
    assert len(fingerprints) == 1


def test_fingerprints_differ_between_tokenizers():
    char, bpe = char_tokenizer(), train_bpe([BPE_TRAINING_TEXT], 300)
    assert tokenizer_fingerprint(char) != tokenizer_fingerprint(bpe)
    assert tokenizer_fingerprint(bpe) != tokenizer_fingerprint(train_bpe([BPE_TRAINING_TEXT], 280))


def test_load_char_and_bpe_specs():
    assert is_char_tokenizer(load_tokenizer("char"))
    bpe = load_tokenizer("bpe:300", corpus_texts=lambda: [BPE_TRAINING_TEXT])
    assert bpe.eos_token == END_OF_TEXT


@pytest.mark.parametrize(
    ("spec", "corpus", "message"),
    [
        ("bpe:300", None, "pass a corpus"),
        ("bpe:lots", lambda: ["x"], "write bpe:N with a number"),
        ("bpe:", lambda: ["x"], "write bpe:N with a number"),
        ("bpe:100", lambda: ["x"], "at least 257"),
        ("not a name!", None, "is not a tokenizer name"),
        ("  ", None, "no tokenizer was named"),
        ("org/a..b", None, "is not a valid Hub id"),
    ],
)
def test_bad_specs_are_one_sentence(spec, corpus, message):
    with pytest.raises(UserError, match=message):
        load_tokenizer(spec, corpus_texts=corpus)


def test_load_from_a_saved_folder(tmp_path):
    folder = tmp_path / "my tokenizer"
    train_bpe([BPE_TRAINING_TEXT], 300).save_pretrained(folder)
    loaded = load_tokenizer(str(folder))
    assert loaded.eos_token == END_OF_TEXT
    assert loaded.decode(loaded.encode(UNICODE_SAMPLES[3])) == UNICODE_SAMPLES[3]


@pytest.mark.parametrize("spec", ["./no-such-tokenizer", "/no/such/tokenizer", "~/no-such-smoltui-tokenizer"])
def test_a_missing_folder_is_named(spec):
    with pytest.raises(UserError, match="no such folder"):
        load_tokenizer(spec)


def test_a_folder_without_tokenizer_files_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match=r"has no tokenizer files \(tokenizer\.json") as caught:
        load_tokenizer(str(tmp_path))
    assert str(tmp_path) in str(caught.value)


def test_a_corrupt_tokenizer_file_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="could not be read"):
        load_tokenizer(str(tmp_path))


def test_a_hub_id_in_the_hugging_face_cache_loads_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "models--smoltui-tests--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    train_bpe([BPE_TRAINING_TEXT], 300).save_pretrained(repo / "snapshots" / ("0" * 40))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: pytest.fail("no network"))
    assert load_tokenizer("smoltui-tests/cached").eos_token == END_OF_TEXT


HUB_SENTENCE = "could not reach the Hugging Face Hub for 'smoltui-tests/no-such-model'; download it"


def test_hub_id_fails_fast_in_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError, match=HUB_SENTENCE):
        load_tokenizer("smoltui-tests/no-such-model")
    assert time.monotonic() - started < 5


def test_hub_id_fails_fast_without_offline_mode(monkeypatch):
    """Here the Hub is unreachable; where it is reachable the id does not exist. Either way: fast, one sentence."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(UserError, match="Hub"):
        load_tokenizer("smoltui-tests/no-such-model")
    assert time.monotonic() - started < 10


def test_hub_id_fails_fast_when_the_network_hangs(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(tokenizers, "_HUB_PROBE_SECONDS", 0.3)

    def hang(*args, **kwargs):
        time.sleep(5)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    with pytest.raises(UserError, match=HUB_SENTENCE):
        load_tokenizer("smoltui-tests/no-such-model")
    assert time.monotonic() - started < 2
