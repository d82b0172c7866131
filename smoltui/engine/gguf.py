"""GGUF files as model sources: checked, then converted once by transformers into a cached Hugging Face folder.

transformers reads a GGUF (`from_pretrained(folder, gguf_file=NAME)`) and dequantizes it into an ordinary model,
but that takes tens of seconds, and the model it gives refuses `save_pretrained`. So the first load converts: the
weights move into a fresh model of the same config, which is saved (safetensors, fp32, in which dequantized weights
are exact) with the tokenizer and its chat template into a folder named by the file's SHA-256. Every later load is
a plain folder load, and the model it returns saves like any other.

The cache is the user's, not a workspace's: $SMOLTUI_CACHE, else $XDG_CACHE_HOME/smoltui, else ~/.cache/smoltui.
A conversion depends on the file's bytes alone, so every workspace, run and test session shares one. Layout:
    gguf/<sha256>/             config.json, model.safetensors, tokenizer files, chat_template.jinja, origin.json
    gguf/.partial-<pid>-<x>/   a conversion being written; renamed to its final name only once complete
    gguf/digests/<key>         the SHA-256 of a file, keyed by its path, size, mtime and inode
A later load hashes nothing while the file is unchanged: the digest is remembered per (path, size, mtime, inode),
so a file written again or replaced is hashed again. (Not ctime: a package manager that hard-links its cache into
each environment changes the file's ctime whenever it links it somewhere else.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError
from smoltui.engine.workspace import fsync_dir, write_atomically
from smoltui.formatting import format_bytes

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

CACHE_ENV = "SMOLTUI_CACHE"
GGUF_MAGIC = b"GGUF"
ORIGIN_FILE = "origin.json"  # what a cached folder was converted from, for people reading the cache
_PARTIAL_PREFIX = ".partial-"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_HASH_CHUNK = 1 << 20
# One conversion at a time per process: two would double the memory, and the dequantization report swaps a name
# in a transformers module for its duration.
_CONVERSION_LOCK = threading.Lock()


@dataclass(frozen=True)
class GgufFacts:
    """What a GGUF file's header says, read without touching its tensor data."""

    architecture: str  # llama.cpp's name, e.g. "llama"
    tensors: int
    types: tuple[str, ...]  # the storage types of its tensors, e.g. ("F32", "Q4_1")
    dequantized_bytes: int  # its tensors in fp32
    tokens: int  # the size of the vocabulary it carries, 0 when it carries none


def user_cache_dir() -> Path:
    """$SMOLTUI_CACHE, else $XDG_CACHE_HOME/smoltui, else ~/.cache/smoltui (not created)."""
    chosen = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "smoltui"
    return Path(chosen).expanduser().absolute()


def is_gguf_file(path: Path) -> bool:
    """A file named *.gguf, or any file that starts with GGUF's magic bytes."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".gguf":
        return True
    with path.open("rb") as file:
        return file.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def supported_architectures() -> list[str]:
    """The GGUF architectures this transformers can load, from its own GGUF integration."""
    from transformers.integrations.gguf import GGUF_CONFIG_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # The older table is keyed by metadata section, and two of its sections are not architectures.
    return sorted((set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}) | set(GGUF_CONFIG_ARCHS))


def read_gguf(path: Path) -> GgufFacts:
    """The header of GGUF file `path`; UserError when the file is not GGUF, is damaged or is cut short."""
    from transformers.integrations.gguf import GgufHeader, read_gguf_metadata

    size = path.stat().st_size
    with path.open("rb") as file:
        magic = file.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise _unreadable(path, "it does not start with GGUF's magic bytes" if size else "it is empty")
    try:
        metadata, _ = read_gguf_metadata(str(path))
        header = GgufHeader.from_file(str(path))
    except (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, struct.error) as error:
        raise _unreadable(path, f"its header is cut short or damaged: {str(error).rstrip('.')}") from None
    needed = max((header.data_start + tensor.offset + tensor.nbytes for tensor in header.tensors), default=0)
    if size < needed:
        raise UserError(
            f"{path} is truncated: it holds {size:,} of the {needed:,} bytes its header describes; re-download it."
        )
    kinds = {tensor.ggml_type for tensor in header.tensors}
    tokens = metadata.get("tokenizer.ggml.tokens", 0)  # the reader leaves string arrays as their length
    return GgufFacts(
        architecture=str(header.architecture),
        tensors=len(header.tensors),
        types=tuple(sorted(_type_name(kind) for kind in kinds)),
        dequantized_bytes=sum(4 * math.prod(tensor.shape) for tensor in header.tensors),
        tokens=tokens if isinstance(tokens, int) else 0,
    )


def converted_folder(path: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The cached Hugging Face folder of GGUF file `path`, converted on the first call (tens of seconds).

    `progress` hears each step with its size: hashing, reading the GGUF, converting the tokenizer, dequantizing,
    writing the cache; a cache hit reports one "using the cached conversion" line and nothing else.
    """
    say = progress or (lambda _message: None)
    path = path.expanduser().resolve()
    root = _private_dir(user_cache_dir() / "gguf")
    with _CONVERSION_LOCK:
        stat = path.stat()
        memo = _private_dir(root / "digests") / _stat_key(path, stat)
        digest = _remembered_digest(memo)
        if digest is None or not (root / digest).is_dir():
            facts = read_gguf(path)  # first, so a file that is not GGUF is refused before it is hashed
            if digest is None:
                say(f"hashing {path.name} ({format_bytes(stat.st_size)}) to find its conversion in the cache")
                digest = _sha256(path)
                write_atomically(memo, lambda out: out.write(digest.encode()))
            if not (root / digest).is_dir():  # not converted yet (a copy of this file elsewhere may have been)
                _remove_abandoned_conversions(root)
                _convert(path, facts, root / digest, say)
                return root / digest
        say(f"using the cached conversion of {path.name} ({root / digest})")
        return root / digest


def cached_conversion(path: Path) -> Path | None:
    """The cached folder of GGUF file `path` if this very file was converted before, found without hashing it."""
    path = path.expanduser().resolve()
    root = user_cache_dir() / "gguf"
    try:
        digest = _remembered_digest(root / "digests" / _stat_key(path, path.stat()))
    except OSError:
        return None
    return root / digest if digest is not None and (root / digest).is_dir() else None


def forget_conversion(folder: Path) -> None:
    """Remove a cached conversion (one found damaged), so the next load converts again."""
    if folder.parent.parent == user_cache_dir() and _DIGEST.fullmatch(folder.name):
        shutil.rmtree(folder, ignore_errors=True)


def _convert(path: Path, facts: GgufFacts, folder: Path, say: Callable[[str], None]) -> None:
    import torch
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoModelForCausalLM, __version__

    location = {"pretrained_model_name_or_path": path.parent, "gguf_file": path.name, "local_files_only": True}
    types = ", ".join(facts.types)
    say(
        f"reading {path.name} ({format_bytes(path.stat().st_size)}): a {facts.architecture} model, {facts.tensors} "
        f"tensors ({types})"
    )
    try:
        config = AutoConfig.from_pretrained(**location)
    except ValueError:
        if not _is_supported(facts.architecture):
            raise UserError(
                f"{path} holds a {facts.architecture!r} model, which transformers {__version__} cannot load from "
                f"GGUF; it loads {', '.join(supported_architectures())}."
            ) from None
        raise
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise UserError(
            f"{path} holds a {config.model_type} model, which is not a causal language model; smoltui loads "
            "decoder-only models such as GPT-2, Llama or Qwen2."
        )
    tokenizer = _convert_tokenizer(path, facts, location, config, say)
    say(f"loading and dequantizing {facts.tensors} tensors to fp32 ({format_bytes(facts.dequantized_bytes)})")
    try:
        with _progress_bars_reported(say):
            model, info = AutoModelForCausalLM.from_pretrained(
                **location, config=config, dtype=torch.float32, output_loading_info=True
            )
    except RuntimeError as error:
        if "mismatch" not in str(error):
            raise
        raise UserError(
            f"the tensors in {path} do not fit its metadata (their shapes differ); re-download it."
        ) from None
    if info["missing_keys"]:
        example = sorted(info["missing_keys"])[0]
        raise UserError(
            f"{path} lacks {len(info['missing_keys'])} tensors its metadata describes (e.g. {example}); re-download it."
        )
    plain = _serializable_copy(model, config)
    say(f"writing the converted model ({format_bytes(facts.dequantized_bytes)}) to the cache: {folder}")
    origin = {"gguf": str(path), "sha256": folder.name, "bytes": path.stat().st_size, "transformers": __version__}
    with _progress_bars_reported(say):
        _write_folder(folder, plain, tokenizer, origin)


def _convert_tokenizer(path, facts, location, config, say) -> PreTrainedTokenizerBase | None:
    """The tokenizer the file carries, or None (said) when it carries none that transformers can convert."""
    from transformers import AutoTokenizer

    if not facts.tokens:
        say(f"{path.name} carries no tokenizer; the model will need one passed with it")
        return None
    say(f"converting the tokenizer ({facts.tokens:,} tokens)")
    try:
        return AutoTokenizer.from_pretrained(**location, config=config)
    except ValueError as error:  # a tokenizer type transformers has no converter for
        say(f"warning: transformers cannot convert the tokenizer of {path.name} ({error}); continuing without")
        return None


def _serializable_copy(model: PreTrainedModel, config: PretrainedConfig) -> PreTrainedModel:
    """The same tensors in a fresh model of the same class and config, without the GGUF quantizer that refuses
    save_pretrained. Laid out on the meta device and given the weights by reference, so nothing is copied; its
    computed buffers (RoPE frequencies) stay empty, which is fine for a model that is only saved."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    return plain


def _write_folder(folder: Path, model, tokenizer, origin: dict) -> None:
    """Save into a hidden folder beside `folder` and rename it into place: a kill leaves no folder to trust."""
    root = folder.parent
    partial = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL_PREFIX}{os.getpid()}-", dir=root))
    try:
        model.save_pretrained(partial)
        if tokenizer is not None:
            tokenizer.save_pretrained(partial)
        (partial / ORIGIN_FILE).write_text(json.dumps(origin, indent=2) + "\n", encoding="utf-8")
        for file in partial.iterdir():
            _fsync_file(file)
        fsync_dir(partial)
        try:
            partial.rename(folder)
        except OSError:  # another process converted the same file first; its folder holds the same bytes
            shutil.rmtree(partial, ignore_errors=True)
            return
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _remove_abandoned_conversions(root: Path) -> None:
    """Partial folders whose writer is gone (killed mid-write) are never used; remove them."""
    for partial in root.glob(f"{_PARTIAL_PREFIX}*"):
        pid = partial.name.removeprefix(_PARTIAL_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def _progress_bars_reported(say: Callable[[str], None]) -> Iterator[None]:
    """transformers draws progress bars on stderr, which would tear a dashboard apart and tell `say` nothing: turn
    its own bars off for the duration, and swap its GGUF reader's plain tqdm bar for a counter that reports every
    tenth of the tensors to `say`."""
    from transformers import modeling_gguf_pytorch_utils as reader
    from transformers.utils import logging

    bars_were_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    drawn = getattr(reader, "tqdm", None)

    def counted(tensors, *_args, **_kwargs):
        tensors = list(tensors)
        every = max(1, len(tensors) // 10)
        for index, tensor in enumerate(tensors, start=1):
            yield tensor
            if index % every == 0 or index == len(tensors):
                say(f"dequantizing: {index}/{len(tensors)} tensors")

    if drawn is not None:  # a transformers that draws no bar there has nothing to swap
        reader.tqdm = counted
    try:
        yield
    finally:
        if drawn is not None:
            reader.tqdm = drawn
        if bars_were_on:
            logging.enable_progress_bar()


def _is_supported(architecture: str) -> bool:
    # transformers renames a few llama.cpp names before its own check ("qwen2moe" → "qwen2_moe", "gpt-oss" → …).
    squash = lambda name: name.replace("_", "").replace("-", "")  # noqa: E731
    return squash(architecture) in {squash(name) for name in supported_architectures()}


def _unreadable(path: Path, reason: str) -> UserError:
    return UserError(f"{path} is not a readable GGUF file ({reason}); re-download it, or pass a .gguf model file.")


def _type_name(kind: int) -> str:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return f"type {kind}"


def _stat_key(path: Path, stat: os.stat_result) -> str:
    identity = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}"
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _remembered_digest(memo: Path) -> str | None:
    try:
        digest = memo.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return digest if _DIGEST.fullmatch(digest) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _private_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (PermissionError, FileExistsError, NotADirectoryError):
        raise UserError(
            f"cannot create the model cache {path}; set {CACHE_ENV} to a folder you can write to."
        ) from None
    return path


def _fsync_file(path: Path) -> None:
    if path.is_dir():
        fsync_dir(path)
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
