"""Tokenizers: the char-level policy, byte-level BPE trained on the spot, and any Hugging Face tokenizer.

Every tokenizer here is a standard `PreTrainedTokenizerFast`: it saves with `save_pretrained` and loads back
with `AutoTokenizer.from_pretrained` without custom code. transformers and tokenizers are imported inside the
functions, so importing this module stays cheap for the UI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

CHAR_PAD = "<PAD>"
CHAR_UNK = "<UNK>"
CHAR_PAD_ID = 0
CHAR_UNK_ID = 1
CHAR_ALPHABET = [chr(code) for code in range(32, 127)] + ["\n", "\t"]
CHAR_VOCAB = {CHAR_PAD: CHAR_PAD_ID, CHAR_UNK: CHAR_UNK_ID} | {
    char: index + 2 for index, char in enumerate(CHAR_ALPHABET)
}
# Applied in this order, by both the tokenizer's normalizer and `normalize_for_char`; "\r\n" goes first so
# that a Windows line end becomes one "\n" rather than an unknown "\r" plus "\n".
CHAR_REPLACEMENTS = (
    ("\r\n", "\n"),
    ("\u2018", "'"),
    ("\u2019", "'"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\u2026", "..."),
    ("\u00a0", " "),
)

END_OF_TEXT = "<|endoftext|>"
BYTE_ALPHABET_SIZE = 256
_BPE_SPECIAL_TOKENS = [END_OF_TEXT]

# Files that `save_pretrained` or the common Hub layouts put next to a tokenizer; a folder with none of them
# would load as an empty tokenizer (transformers builds one from config.json alone), so it is refused first.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "tekken.json",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_PROBE_SECONDS = 3.0
_CHAR_ID_SLICE = 1 << 22  # characters per utf-32 slice in encode_char_ids: bounds the temporary memory


def normalize_for_char(text: str) -> str:
    """The text as the char tokenizer's normalizer sees it: curly quotes, dashes, ellipsis, nbsp, CRLF."""
    for old, new in CHAR_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def char_tokenizer() -> PreTrainedTokenizerFast:
    """The Experimental SLM char policy: <PAD>=0, <UNK>=1, ASCII 32..126, "\\n", "\\t" (99 ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(CHAR_VOCAB, unk_token=CHAR_UNK))
    backend.normalizer = normalizers.Sequence([normalizers.Replace(old, new) for old, new in CHAR_REPLACEMENTS])
    # "[\s\S]" rather than "." because Oniguruma's "." stops at "\n", which must be a token of its own.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=CHAR_PAD,
        unk_token=CHAR_UNK,
        clean_up_tokenization_spaces=False,
        # The text "<PAD>" is five characters here, as in `encode_char_ids`, not the padding token.
        split_special_tokens=True,
    )


@lru_cache(maxsize=1)
def _char_lookup() -> np.ndarray:
    """Code point → char id for code points 0..127; callers clip larger ones to 127 (DEL), which is <UNK>."""
    table = np.full(128, CHAR_UNK_ID, dtype=np.uint16)
    for char in CHAR_ALPHABET:
        table[ord(char)] = CHAR_VOCAB[char]
    return table


def encode_char_ids(text: str) -> np.ndarray:
    """The char tokenizer's ids for `text` (uint16), computed with numpy: megabytes in milliseconds."""
    normalized = normalize_for_char(text)
    table = _char_lookup()
    ids = np.empty(len(normalized), dtype=np.uint16)
    for start in range(0, len(normalized), _CHAR_ID_SLICE):
        piece = normalized[start : start + _CHAR_ID_SLICE]
        code_points = np.frombuffer(piece.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ids[start : start + len(piece)] = table[np.minimum(code_points, 127)]
    return ids


def smallest_bpe_vocab() -> int:
    """The smallest byte-level BPE vocabulary: every byte plus the special tokens."""
    return BYTE_ALPHABET_SIZE + len(_BPE_SPECIAL_TOKENS)


def train_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style, exact round trip on any unicode) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    smallest = smallest_bpe_vocab()
    if vocab_size < smallest:
        raise UserError(
            f"a byte-level BPE vocabulary of {vocab_size} is too small; pass bpe:N with N of at least {smallest}."
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_BPE_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    pieces = (piece for text in texts for piece in split_at_newlines(text))
    backend.train_from_iterator(pieces, trainer=trainer)
    # As in GPT-2, one token marks every boundary; pad shares it so batched sampling works out of the box.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        clean_up_tokenization_spaces=False,
    )


def split_at_newlines(text: str, size: int = 1 << 16) -> Iterator[str]:
    """`text` in pieces of about `size` characters, each cut after a newline: pieces encode in parallel."""
    start = 0
    while start < len(text):
        cut = text.find("\n", start + size)
        end = len(text) if cut < 0 else cut + 1
        yield text[start:end]
        start = end


def check_tokenizer_spec(spec: str) -> str:
    """The kind a tokenizer spec names ("char", "bpe", "folder" or "hub"), checked without loading anything;
    UserError (field "tokenizer") for a spec that cannot name a tokenizer."""
    spec = spec.strip()
    if not spec:
        raise UserError("no tokenizer was named; pass char, bpe:N, a folder or a Hub id like gpt2.", field="tokenizer")
    if spec == "char":
        return "char"
    if spec.startswith("bpe:"):
        size = spec.removeprefix("bpe:").strip()
        if not size.isdigit():
            raise UserError(
                f"cannot read a vocabulary size in {spec!r}; write bpe:N with a number, e.g. bpe:4096.",
                field="tokenizer",
            )
        if int(size) < smallest_bpe_vocab():
            raise UserError(
                f"a byte-level BPE vocabulary of {size} is too small; pass bpe:N with N of at least "
                f"{smallest_bpe_vocab()}.",
                field="tokenizer",
            )
        return "bpe"
    if Path(spec).expanduser().is_dir():
        return "folder"
    if _looks_like_path(spec):
        raise UserError(f"no such folder: {spec}; pass an existing tokenizer folder, char or bpe:N.", field="tokenizer")
    if not _HUB_ID.match(spec):
        raise UserError(
            f"{spec!r} is not a tokenizer name; pass char, bpe:N, a folder or a Hub id like gpt2.", field="tokenizer"
        )
    return "hub"


def load_tokenizer(
    spec: str,
    *,
    corpus_texts: Callable[[], Iterable[str]] | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedTokenizerFast:
    """The tokenizer named by `spec`: "char", "bpe:N" (trained on `corpus_texts()`), a folder or a Hub id."""
    spec = spec.strip()
    kind = check_tokenizer_spec(spec)
    if kind == "char":
        return char_tokenizer()
    if kind == "bpe":
        if corpus_texts is None:
            raise UserError(f"{spec} trains a tokenizer on the corpus; pass a corpus to train it on.")
        return train_bpe(corpus_texts(), int(spec.removeprefix("bpe:").strip()))
    if kind == "folder":
        return _load_from_folder(Path(spec).expanduser(), trust_remote_code)
    return _load_from_hub(spec, trust_remote_code)


def _looks_like_path(spec: str) -> bool:
    if spec.startswith(("./", "../", "/", "~", ".\\")):
        return True
    return (os.sep in spec or "/" in spec) and not _HUB_ID.match(spec)


def _load_from_folder(folder: Path, trust_remote_code: bool) -> PreTrainedTokenizerFast:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{folder} has no tokenizer files (tokenizer.json or tokenizer_config.json); "
            "pass a folder written by save_pretrained."
        )
    try:
        return _from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise UserError(
            f"the tokenizer in {folder} could not be read ({_first_line(error)}); check the folder."
        ) from None


def _load_from_hub(repo_id: str, trust_remote_code: bool) -> PreTrainedTokenizerFast:
    snapshot = _cached_snapshot(repo_id)
    if snapshot is not None:
        return _load_from_folder(snapshot, trust_remote_code)
    # huggingface_hub retries an unreachable host for ~45 s, so decide up front whether to try at all.
    if hub_offline() or not hub_reachable():
        raise UserError(
            f"could not reach the Hugging Face Hub for {repo_id!r}; "
            "download it where the Hub is reachable and pass the local folder instead."
        )
    try:
        return _from_pretrained(repo_id, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise UserError(f"the Hub gave no tokenizer for {repo_id!r} ({_first_line(error)}); check the id.") from None


def _cached_snapshot(repo_id: str) -> Path | None:
    """The repo's folder in the Hugging Face cache if it holds tokenizer files, found without the network.

    Not `local_files_only=True`: on that path huggingface_hub 2.x first fetches an "agent registry" from the
    Hub, which costs up to 3 s when the Hub is unreachable.
    """
    from huggingface_hub import try_to_load_from_cache

    for name in TOKENIZER_FILES:
        try:
            found = try_to_load_from_cache(repo_id, name)
        except ValueError as error:  # huggingface_hub's HFValidationError
            raise UserError(f"{repo_id!r} is not a valid Hub id ({error}); pass a folder or an id like gpt2.") from None
        if isinstance(found, str):
            return Path(found).parent
    return None


def _from_pretrained(name: str, **options: bool) -> PreTrainedTokenizerFast:
    """AutoTokenizer.from_pretrained, with broken or code-bearing tokenizer files turned into a sentence."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, **options)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"the tokenizer {name} could not be read ({_first_line(error)}); save it again with save_pretrained, "
            "or pass --trust-remote-code if it ships its own code and you trust it."
        ) from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now: huggingface_hub reads them once, at import."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def hub_reachable() -> bool:
    """Whether a TCP connection to the Hub (or the proxy in front of it) opens within a few seconds."""
    from huggingface_hub import constants

    timeout = _HUB_PROBE_SECONDS

    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    target = urllib.parse.urlsplit(proxy if proxy and "://" in proxy else constants.ENDPOINT)
    port = target.port or (443 if target.scheme == "https" else 80)
    finished = threading.Event()
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((target.hostname, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass
        finally:
            finished.set()

    # Name resolution has no timeout of its own, so the probe runs in a daemon thread that we stop waiting for.
    threading.Thread(target=connect, daemon=True).start()
    finished.wait(timeout)
    return bool(opened)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short stable hash of everything that decides the ids: the cache key of tokenised corpora."""
    if tokenizer.is_fast:
        content = tokenizer.backend_tokenizer.to_str()
    else:  # a Python tokenizer: its class holds the rules, its vocabulary the ids
        content = type(tokenizer).__name__ + json.dumps(sorted(tokenizer.get_vocab().items()))
    identity = {
        "content": content,
        "special": {name: str(value) for name, value in sorted(tokenizer.special_tokens_map.items())},
        "split_special_tokens": bool(getattr(tokenizer, "split_special_tokens", False)),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _char_fingerprint() -> str:
    return tokenizer_fingerprint(char_tokenizer())


def is_char_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether `tokenizer` is the char policy (so `encode_char_ids` gives its ids), however it was loaded."""
    return len(tokenizer) == len(CHAR_VOCAB) and tokenizer_fingerprint(tokenizer) == _char_fingerprint()


def describe_tokenizer(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short label for summaries: "char (99)", "byte-level BPE (4096)", "Unigram (32000)"."""
    size = len(tokenizer)
    if is_char_tokenizer(tokenizer):
        return f"char ({size})"
    if tokenizer.is_fast:
        from tokenizers import decoders

        backend = tokenizer.backend_tokenizer
        kind = type(backend.model).__name__  # "BPE", "Unigram", "WordPiece", "WordLevel"
        if isinstance(backend.decoder, decoders.ByteLevel):
            kind = f"byte-level {kind}"
        return f"{kind} ({size})"
    return f"{type(tokenizer).__name__} ({size})"
