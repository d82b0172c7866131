"""Corpora: text sources read from one string, token ids cached as memmaps, train/val splits and batches."""

from __future__ import annotations

import ast
import gc
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import encode_char_ids, is_char_tokenizer, split_at_newlines, tokenizer_fingerprint
from smoltui.engine.workspace import ensure_private_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIX = ".jsonl"
DOCUMENT_SEPARATOR = "\n\n"
BUILTIN_PYDOCS = "builtin:pydocs"
VAL_FRACTION = 0.05
# Standard-library parts left out of builtin:pydocs: jokes, GUI toolkits, scripts and test suites (whose files
# include deliberately broken Python).
_PYDOCS_SKIPPED = {"__main__", "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}
_PYDOCS_SKIPPED_FOLDERS = {"test", "tests", "idle_test"}
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
        return _corpus(source, _pydocs_documents(cache_dir), [])
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


def _pydocs_documents(cache_dir: Path | None) -> list[str]:
    """One document per standard-library module: its docstrings and those of its classes and functions."""
    key = hashlib.sha256(f"{_CACHE_FORMAT}|{sys.version}|{sysconfig.get_paths()['stdlib']}".encode()).hexdigest()
    cached = cache_dir / f"pydocs-{key[:16]}.json" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    # Parsing makes millions of short-lived AST nodes (no reference cycles); with torch loaded, the full
    # collections they trigger scan all of torch's objects too and triple the time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        documents = [document for module, file in _stdlib_sources() if (document := _module_docs(module, file))]
    finally:
        if gc_was_enabled:
            gc.enable()
    if cached is not None:
        ensure_private_dir(cached.parent)
        _write_atomically(cached, lambda out: out.write(json.dumps(documents).encode("utf-8")))
    return documents


def _module_docs(module: str, file: Path) -> str:
    try:
        tree = ast.parse(file.read_bytes())
    except (SyntaxError, ValueError):  # a stray unparsable file must not take the built-in corpus down
        return ""
    sections = [f"module {module}\n\n{doc}"] if (doc := ast.get_docstring(tree)) else []
    for header, node in _definitions(tree.body, module):
        if doc := ast.get_docstring(node):
            sections.append(f"{header}\n" + "\n".join(f"    {line}".rstrip() for line in doc.splitlines()))
    return "\n\n".join(sections)


def _stdlib_sources() -> Iterator[tuple[str, Path]]:
    """(module name, source file) for the pure-Python standard library, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for name in sorted(sys.stdlib_module_names - _PYDOCS_SKIPPED):
        if (root / f"{name}.py").is_file():
            yield name, root / f"{name}.py"
        elif (root / name).is_dir():
            for file in sorted((root / name).rglob("*.py")):
                parts = file.relative_to(root).with_suffix("").parts
                if not _PYDOCS_SKIPPED_FOLDERS & set(parts):
                    yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), file


def _definitions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
    """Public classes, functions and methods (not functions nested in functions), with a header line each."""
    for node in body:
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) or (
            node.name.startswith("_") and not node.name.endswith("__")  # private helpers, but keep __init__ & co
        ):
            continue
        if isinstance(node, ast.ClassDef):
            bases = f"({', '.join(ast.unparse(base) for base in node.bases)})" if node.bases else ""
            yield f"class {prefix}.{node.name}{bases}", node
            yield from _definitions(node.body, f"{prefix}.{node.name}")
        else:
            yield f"def {prefix}.{node.name}({ast.unparse(node.args)})", node


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
        _write_atomically(cache_path, ids.tofile)
        # The sidecar goes last: it is what marks the .bin as complete.
        _write_atomically(sidecar, lambda out: out.write(json.dumps(meta, indent=1).encode()))
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


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: readers see all or nothing."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_fits_context(tokenized: TokenizedCorpus, context: int) -> None:
    """Refuse a corpus whose train or validation split cannot hold one window of `context` tokens plus one."""
    _require_window(len(tokenized.train), context, "the training split")
    if tokenized.val_fraction > 0:
        _require_window(len(tokenized.val), context, "the validation split")


def _require_window(n_tokens: int, context: int, what: str) -> None:
    if n_tokens < context + 1:
        raise UserError(
            f"{what} has {n_tokens} tokens, but one context window of {context} needs {context + 1}; "
            "use a longer corpus or a shorter --context."
        )


def _batch_from_starts(ids: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, each (B, T) int64 on the CPU, from one fancy-indexed read of `ids`."""
    import torch

    windows = ids[starts[:, None] + np.arange(context + 1)]  # (B, T + 1)
    return torch.from_numpy(windows[:, :-1].astype(np.int64)), torch.from_numpy(windows[:, 1:].astype(np.int64))


class RandomWindows:
    """Batches of windows at random offsets (nanoGPT's get_batch), reproducible from `seed` and resumable."""

    def __init__(self, ids: np.ndarray, batch_size: int, context: int, seed: int) -> None:
        import torch

        _require_positive(batch_size=batch_size, context=context)
        _require_window(len(ids), context, "the token array")
        self.ids, self.batch_size, self.context = np.asarray(ids), batch_size, context
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> RandomWindows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        starts = torch.randint(len(self.ids) - self.context, (self.batch_size,), generator=self.generator)
        return _batch_from_starts(self.ids, starts.numpy(), self.context)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": len(self.ids), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require_same_tokens(state, len(self.ids))
        self.generator.set_state(state["generator"])


class SequentialWindows:
    """Batches of non-overlapping windows in order, wrapping to the start at the end (counted in `epoch`)."""

    def __init__(self, ids: np.ndarray, batch_size: int, context: int) -> None:
        _require_positive(batch_size=batch_size, context=context)
        _require_window(len(ids), context, "the token array")
        self.ids, self.batch_size, self.context = np.asarray(ids), batch_size, context
        self.n_windows = (len(ids) - 1) // context
        self.position = 0  # index of the next window
        self.epoch = 0

    def __iter__(self) -> SequentialWindows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        served = self.epoch * self.n_windows + self.position
        windows = (served + np.arange(self.batch_size)) % self.n_windows
        self.epoch, self.position = divmod(served + self.batch_size, self.n_windows)
        return _batch_from_starts(self.ids, windows * self.context, self.context)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": len(self.ids), "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require_same_tokens(state, len(self.ids))
        self.position, self.epoch = int(state["position"]), int(state["epoch"])


def evaluation_batches(ids: np.ndarray, batch_size: int, context: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every non-overlapping window of `ids` once, in order; the last batch may be smaller."""
    _require_positive(batch_size=batch_size, context=context)
    ids = np.asarray(ids)
    starts = np.arange((len(ids) - 1) // context) * context
    for first in range(0, len(starts), batch_size):
        yield _batch_from_starts(ids, starts[first : first + batch_size], context)


def _require_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise UserError(f"{name.replace('_', ' ')} must be at least 1, got {value}; pass a positive number.")


def _require_same_tokens(state: dict[str, Any], n_tokens: int) -> None:
    if state["tokens"] != n_tokens:
        raise UserError(
            f"the saved batch position is for {state['tokens']} tokens but this corpus has {n_tokens}; "
            "resume with the same corpus and tokenizer."
        )
