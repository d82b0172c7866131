"""Corpora: text sources read from one string, token ids cached as memmaps, and train/val splits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smoltui.engine.errors import UserError
from smoltui.engine.pydocs import pydocs_documents
from smoltui.engine.tokenizers import encode_char_ids, is_char_tokenizer, split_at_newlines, tokenizer_fingerprint
from smoltui.engine.workspace import ensure_private_dir, write_atomically

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIX = ".jsonl"
DOCUMENT_SEPARATOR = "\n\n"
BUILTIN_PYDOCS = "builtin:pydocs"
VAL_FRACTION = 0.05
_SNIFF_BYTES = 1 << 16
_MAX_CONTROL_RATIO = 0.1  # more control bytes than this in the first 64 KiB means "not text"
# Control bytes that text does not hold; tab, newlines, form feed and ESC (coloured logs) are left out.
_CONTROL_BYTES = bytes(byte for byte in range(32) if byte not in b"\t\n\v\f\r\x1b") + b"\x7f"
_ENCODE_PIECE_CHARS = 1 << 16
_ENCODE_BATCH_CHARS = 1 << 22  # progress is reported after each batch of pieces
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class Corpus:
    """A corpus read into memory: its documents joined by DOCUMENT_SEPARATOR into `text`."""

    source: str
    text: str
    fingerprint: str  # sha256 of `text`
    document_starts: tuple[int, ...] = (0,)  # offset of each document in `text`
    warnings: list[str] = field(default_factory=list)

    def documents(self) -> Iterator[str]:
        ends = [start - len(DOCUMENT_SEPARATOR) for start in self.document_starts[1:]] + [len(self.text)]
        for start, end in zip(self.document_starts, ends, strict=True):
            yield self.text[start:end]


def read_corpus(source: str, *, cache_dir: Path | None = None) -> Corpus:
    """Read a .txt/.md/.jsonl file, a folder of them, or builtin:pydocs.

    `cache_dir` keeps the text of builtin:pydocs between calls (parsing the standard library takes 1 to 2 s).
    """
    if source.startswith("builtin:"):
        if source != BUILTIN_PYDOCS:
            raise UserError(f"unknown built-in corpus {source!r}; the built-in corpus is {BUILTIN_PYDOCS}.")
        return _corpus(source, pydocs_documents(cache_dir), [])
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(
            file
            for file in path.rglob("*")
            if file.is_file()
            and file.suffix.lower() in (*TEXT_SUFFIXES, JSONL_SUFFIX)
            and not any(part.startswith(".") for part in file.relative_to(path).parts)
        )
        if not files:
            raise UserError(f"folder {source} has no .txt, .md or .jsonl files; put text files in it or pass a file.")
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"no such file or folder: {source}; check the path, or pass {BUILTIN_PYDOCS}.")
    documents: list[str] = []
    warnings: list[str] = []
    for file in files:
        documents += _read_documents(file, warnings)
    documents = [document for document in documents if document.strip()]
    if not documents:
        what = f"corpus file {source} is" if path.is_file() else f"every file in corpus folder {source} is"
        raise UserError(f"{what} empty; pass a file with text in it.")
    return _corpus(source, documents, warnings)


def _corpus(source: str, documents: list[str], warnings: list[str]) -> Corpus:
    starts, offset = [], 0
    for document in documents:
        starts.append(offset)
        offset += len(document) + len(DOCUMENT_SEPARATOR)
    text = DOCUMENT_SEPARATOR.join(documents)
    fingerprint = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Corpus(source, text, fingerprint, tuple(starts), warnings)


def _read_documents(file: Path, warnings: list[str]) -> list[str]:
    suffix = file.suffix.lower()
    if suffix not in (*TEXT_SUFFIXES, JSONL_SUFFIX):
        raise UserError(
            f"corpus file {file} has an unsupported type ({suffix or 'no extension'}); "
            f"pass a .txt, .md or .jsonl file, a folder of them, or {BUILTIN_PYDOCS}."
        )
    text = _read_text(file, warnings)
    return _jsonl_documents(file, text) if suffix == JSONL_SUFFIX else [text]


def _read_text(file: Path, warnings: list[str]) -> str:
    """The file decoded as UTF-8; binary files are refused, undecodable bytes replaced with a warning."""
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read corpus file {file} ({error.strerror}); check its permissions.") from None
    head = raw[:_SNIFF_BYTES]
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if b"\0" in head or control > _MAX_CONTROL_RATIO * max(len(head), 1):
        raise UserError(f"corpus file {file} looks binary, not text; pass a UTF-8 text file (.txt, .md or .jsonl).")
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not part of the text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
    # Each invalid run became one U+FFFD (3 bytes once re-encoded); U+FFFD already in the file was valid.
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    bad_bytes = len(raw) - (len(text.encode("utf-8")) - 3 * replaced)
    warnings.append(f"{file}: {bad_bytes} bytes were not UTF-8 and were replaced with U+FFFD")
    return text


def _jsonl_documents(file: Path, text: str) -> list[str]:
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{file} line {number} is not valid JSON; fix or remove that line.") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f'{file} line {number} has no "text" string; give every line a "text" field.')
        documents.append(record["text"])
    return documents


@dataclass(frozen=True)
class TokenizedCorpus:
    """A corpus as token ids (a read-only memmap of the cache file), split into train and a validation tail."""

    ids: np.ndarray
    n_chars: int
    vocab_size: int
    cache_path: Path
    cache_hit: bool
    val_fraction: float = VAL_FRACTION

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"the validation fraction must be in [0, 1), got {self.val_fraction}; pass e.g. 0.05.")

    @property
    def split_at(self) -> int:
        return len(self.ids) - round(len(self.ids) * self.val_fraction)

    @property
    def train(self) -> np.ndarray:
        return self.ids[: self.split_at]

    @property
    def val(self) -> np.ndarray:
        return self.ids[self.split_at :]


def tokenize_corpus(
    corpus: Corpus,
    tokenizer: PreTrainedTokenizerBase,
    *,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    val_fraction: float = VAL_FRACTION,
) -> TokenizedCorpus:
    """The corpus's token ids, from the cache when this corpus and tokenizer were seen before.

    `progress(done_chars, total_chars)` is called while tokenising (never on a cache hit).
    """
    vocab_size = len(tokenizer)
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)  # ids < 65536 fit in uint16
    # Document boundaries belong in the key: with an eos token they change the ids, not the text.
    identity = [_CACHE_FORMAT, corpus.fingerprint, corpus.document_starts, tokenizer_fingerprint(tokenizer), dtype.str]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]
    cache_path, sidecar = cache_dir / f"{key}.bin", cache_dir / f"{key}.json"
    meta = _read_sidecar(sidecar)
    hit = cache_path.is_file() and cache_path.stat().st_size == meta.get("tokens", -1) * dtype.itemsize
    if not hit:
        ensure_private_dir(cache_dir)
        ids = _encode(corpus, tokenizer, dtype, progress)
        meta = {
            "tokens": len(ids),
            "dtype": dtype.name,
            "vocab_size": vocab_size,
            "chars": len(corpus.text),
            "source": corpus.source,
            "corpus": corpus.fingerprint,
        }
        write_atomically(cache_path, ids.tofile)
        # The sidecar goes last: it is what marks the .bin as complete.
        write_atomically(sidecar, lambda out: out.write(json.dumps(meta, indent=1).encode()))
    ids = np.memmap(cache_path, dtype=dtype, mode="r")
    return TokenizedCorpus(ids, meta["chars"], meta["vocab_size"], cache_path, hit, val_fraction)


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or torn: tokenise again
        return {}


def _encode(
    corpus: Corpus, tokenizer: PreTrainedTokenizerBase, dtype: np.dtype, progress: Callable[[int, int], None] | None
) -> np.ndarray:
    if is_char_tokenizer(tokenizer):
        ids = encode_char_ids(corpus.text).astype(dtype, copy=False)
        if progress is not None:
            progress(len(corpus.text), len(corpus.text))
        return ids
    eos = tokenizer.eos_token_id
    # With an end-of-text token, documents are tokenised alone and joined by it (GPT-2 style), not by "\n\n".
    documents = list(corpus.documents()) if eos is not None else [corpus.text]
    total, done = sum(map(len, documents)), 0
    parts: list[np.ndarray] = []
    for batch in _piece_batches(documents):
        encoded = _encode_pieces(tokenizer, [piece for piece, _ in batch])
        for (piece, starts_document), piece_ids in zip(batch, encoded, strict=True):
            if starts_document:
                parts.append(np.array([eos], dtype=dtype))
            parts.append(np.asarray(piece_ids, dtype=dtype))
            done += len(piece)
        if progress is not None:
            progress(done, total)
    return np.concatenate(parts)


def _piece_batches(documents: list[str]) -> Iterator[list[tuple[str, bool]]]:
    """Batches of (piece, starts a document after the first) of ~4 MiB: the backend encodes a batch in parallel."""
    batch: list[tuple[str, bool]] = []
    batch_chars = 0
    for index, document in enumerate(documents):
        for number, piece in enumerate(split_at_newlines(document, _ENCODE_PIECE_CHARS)):
            batch.append((piece, number == 0 and index > 0))
            batch_chars += len(piece)
            if batch_chars >= _ENCODE_BATCH_CHARS:
                yield batch
                batch, batch_chars = [], 0
    if batch:
        yield batch


def _encode_pieces(tokenizer: PreTrainedTokenizerBase, pieces: list[str]) -> list[list[int]]:
    if tokenizer.is_fast:  # the Rust backend directly: half the time of the Python wrapper, no length warnings
        return [encoding.ids for encoding in tokenizer.backend_tokenizer.encode_batch_fast(pieces, False)]
    return tokenizer(pieces, add_special_tokens=False, verbose=False)["input_ids"]
