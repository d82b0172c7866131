"""Model sources (preset, bundled model, GGUF file, local folder, Hub id, run:<id>[@step], step:<n>), loading,
summaries.

Every source ends as a transformers causal LM in eval mode on the chosen device, with its tokenizer: presets
(see presets.py) get fresh weights from a seed, folders and Hub snapshots load with
`AutoModelForCausalLM.from_pretrained` after their files are checked (see model_folders.py), and GGUF files, the
bundled ones included (see bundled.py), load from the folder they are converted to once (see gguf.py).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoltui.engine.architecture import model_parts
from smoltui.engine.bundled import BUNDLED_MODELS, BundledModelStatus, bundled_models
from smoltui.engine.device import Placement, resolve_placement
from smoltui.engine.errors import UserError
from smoltui.engine.gguf import converted_folder, forget_conversion, is_gguf_file
from smoltui.engine.model_folders import has_tokenizer_files, hub_snapshot, load_folder_model
from smoltui.engine.presets import PRESETS, Preset, build_preset_model, preset_config, preset_names
from smoltui.engine.workspace import cache_dir, workspace_path

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BUNDLED_MODELS",
    "KIND_LABELS",
    "PRESETS",
    "GGUF_KINDS",
    "BundledModelStatus",
    "LoadedModel",
    "ModelSummary",
    "ModuleRow",
    "Preset",
    "build_preset_model",
    "bundled_models",
    "load_model",
    "locate_source",
    "module_table",
    "preset_config",
    "preset_names",
    "resolve_tokenizer",
    "summarize",
]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# What each LoadedModel.kind means, in words for the Model screen and `smoltui info`.
KIND_LABELS = {
    "preset": "preset (fresh weights)",
    "bundled": "pretrained (bundled GGUF)",
    "gguf": "pretrained (GGUF file)",
    "folder": "model folder",
    "hub": "Hugging Face Hub",
    "run": "run checkpoint",
}
GGUF_KINDS = ("bundled", "gguf")


@dataclass(frozen=True)
class ModelSummary:
    """The numbers the Model screen and `smoltui info` show."""

    architecture: str  # the model's class, e.g. "LlamaForCausalLM"
    family: str  # the config's model_type, e.g. "llama"
    total_params: int  # unique parameters: tied embeddings count once
    embedding_params: int  # parameters of nn.Embedding modules (tokens, positions), as transformers counts them
    non_embedding_params: int
    layers: int
    heads: int
    kv_heads: int
    hidden: int
    context: int | None  # maximum positions, None where the config does not say
    vocab: int  # rows of the input embedding
    dtype: str  # "fp32", "bf16", "fp16", or torch's name for anything else
    device: str
    bytes: int  # unique parameters and buffers


@dataclass(frozen=True)
class ModuleRow:
    """One module of the tree: a tensor shared by two modules (tied embeddings) counts at the first one only."""

    name: str  # dotted path, "" for the model itself
    kind: str  # class name
    own_params: int  # parameters held directly by this module
    params: int  # own plus all descendants'
    depth: int  # 0 for the model itself


@dataclass
class LoadedModel:
    """A model ready to use, with the tokenizer it was built or saved with."""

    model: PreTrainedModel  # eval mode, on `placement`
    tokenizer: PreTrainedTokenizerBase
    source: str  # as the caller wrote it
    kind: str  # a key of KIND_LABELS: "preset", "bundled", "gguf", "folder", "hub" or "run"
    placement: Placement
    summary: ModelSummary
    folder: Path | None = None  # where the weights were read (a GGUF's cached conversion), None for a preset

    @property
    def kind_label(self) -> str:
        """The kind in words, e.g. "pretrained (bundled GGUF)" or "preset (fresh weights)"."""
        return KIND_LABELS.get(self.kind, self.kind)


def load_model(
    source: str,
    *,
    tokenizer: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    trust_remote_code: bool = False,
    corpus_texts: Callable[[], Iterable[str]] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load `source` (a preset, a bundled model, a .gguf file, a folder, a Hub id, "run:<id>[@step]" or a
    workbench step, "step:<n>" or "step:current").

    A preset or bundled name wins over a folder of the same name in the working directory; write "./tiny" for
    the folder. A GGUF file is converted once into the user cache (see gguf.py), reporting each step to
    `progress`; later loads read the cached folder.

    `tokenizer` overrides the source's own; `corpus_texts` is what a "bpe:N" tokenizer trains on (the built-in
    pydocs corpus when None); `overrides` changes a preset's config numbers (e.g. {"n_layer": 4, "dropout": 0}).
    """
    say = progress or (lambda _message: None)
    kind, location = locate_source(source, workspace)
    source = source.strip()
    placement = resolve_placement(device, dtype)
    if kind == "preset":
        return _load_preset(source, tokenizer, placement, seed, corpus_texts, workspace, overrides, say)
    if kind == "hub":
        location = hub_snapshot(source, trust_remote_code, say)
    if overrides:
        raise UserError(
            f"overrides change a preset's architecture, and {source!r} brings its own; drop them or start "
            "from a preset."
        )
    if kind in GGUF_KINDS:
        folder, model = _load_converted(location, placement, say)
        if tokenizer is None and not has_tokenizer_files(folder):
            raise UserError(
                f"{source} carries no tokenizer that transformers can convert; pass one with --tokenizer "
                "(char, bpe:N, a folder or a Hub id)."
            )
    else:
        folder, model = location, load_folder_model(location, placement, trust_remote_code, say)
    summary = summarize(model)  # first, so an architecture smoltui cannot read is refused before anything else
    if tokenizer is None and kind == "hub" and not has_tokenizer_files(folder):
        tokenizer = source  # the snapshot was fetched without tokenizer files; the tokenizer loader finds them
    tok = _tokenizer(tokenizer, folder, corpus_texts, workspace, trust_remote_code, say)
    if len(tok) > summary.vocab:
        raise UserError(
            f"the tokenizer has {len(tok)} tokens but the model's vocabulary has {summary.vocab}; "
            "pass a tokenizer that matches the model."
        )
    return LoadedModel(model, tok, source, kind, placement, summary, folder)


def _load_preset(name, tokenizer, placement, seed, corpus_texts, workspace, overrides, say) -> LoadedModel:
    preset = PRESETS[name]
    spec = tokenizer or _preset_tokenizer(preset, say)
    tok = resolve_tokenizer(spec, corpus_texts=corpus_texts, workspace=workspace, progress=say)
    say(f"building {name} with seed {seed} on {placement.device} ({placement.dtype})")
    model = build_preset_model(name, tok, seed=seed, overrides=overrides, placement=placement)
    summary = summarize(model)
    return LoadedModel(model, tok, name, "preset", placement, summary)


def _preset_tokenizer(preset: Preset, say) -> str:
    """The preset's default tokenizer; where that is a bundled model's and it is not installed, the fallback."""
    bundled = BUNDLED_MODELS.get(preset.tokenizer)
    if bundled is None or bundled.path() is not None or preset.fallback_tokenizer is None:
        return preset.tokenizer
    say(
        f"warning: {preset.name} takes its tokenizer from {bundled.name}, which is not installed (add it with "
        f"`{bundled.install_command}`); using {preset.fallback_tokenizer} instead."
    )
    return preset.fallback_tokenizer


def _load_converted(gguf_file: Path, placement: Placement, say) -> tuple[Path, PreTrainedModel]:
    """The model of a GGUF file, read from its cached conversion (converted first where there is none).

    The model from_pretrained gives for a GGUF refuses save_pretrained; the one read back from the converted
    folder is plain, so checkpoints of a fine-tuning run save like any other.
    """
    folder = converted_folder(gguf_file, say)
    try:
        return folder, load_folder_model(folder, placement, False, say)
    except UserError:  # the cache was changed by hand (a file removed or cut short): convert it again
        say(f"the cached conversion {folder} is damaged; converting {gguf_file.name} again")
        forget_conversion(folder)
        folder = converted_folder(gguf_file, say)
        return folder, load_folder_model(folder, placement, False, say)


def locate_source(source: str, workspace: str | os.PathLike[str] | None = None) -> tuple[str, Any]:
    """What a model source names and where it is, found without loading, fetching or importing torch.

    Returns (kind, location): ("preset", name), ("bundled", its GGUF file), ("gguf", file), ("folder", path: also
    for `step:<n>` and `step:current`, a workbench step's model), ("run", checkpoint folder) or ("hub", repo id).
    A source that names nothing is a UserError (field "model").
    """
    source = source.strip()
    if not source:
        raise UserError(
            f"no model given; pass a preset ({', '.join(PRESETS)}), a bundled model ({', '.join(BUNDLED_MODELS)}), "
            "a .gguf file, a folder or a Hub id.",
            field="model",
        )
    prefix, colon, rest = source.partition(":")
    if colon and prefix == "step":
        from smoltui.engine.workbench import step_model_folder

        return "folder", step_model_folder(rest, workspace)
    if colon and prefix == "run":
        from smoltui.engine.runs import run_checkpoint_folder

        try:
            return "run", run_checkpoint_folder(rest, workspace)
        except UserError as error:
            raise UserError(str(error), field="model") from None
    if source in PRESETS:
        return "preset", source
    if source in BUNDLED_MODELS:
        return "bundled", BUNDLED_MODELS[source].locate()
    path = Path(source).expanduser()
    if is_gguf_file(path):
        return "gguf", path
    if path.exists():
        return "folder", path
    if source.lower().endswith(".gguf"):
        raise UserError(f"no such file: {source}; check the path.", field="model")
    if source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source or source.endswith("/"):
        raise UserError(f"no such folder: {source}; check the path.", field="model")
    names = [*PRESETS, *BUNDLED_MODELS]
    looks_like_a_name = difflib.get_close_matches(source.lower(), names, n=1, cutoff=0.6)
    if not _HUB_ID.match(source) or ("/" not in source and looks_like_a_name):
        raise UserError(
            f"unknown model {source!r}; known presets: {', '.join(PRESETS)}; bundled: {', '.join(BUNDLED_MODELS)} "
            "— or pass a .gguf file, a folder or a Hub id.",
            field="model",
        )
    return "hub", source


def resolve_tokenizer(
    spec: str,
    *,
    corpus_texts: Callable[[], Iterable[str]] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    trust_remote_code: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PreTrainedTokenizerBase:
    """`load_tokenizer(spec)`, except that a "bpe:N" is trained once per corpus and kept in the workspace cache,
    and a bundled model's name or a .gguf file gives the tokenizer of its cached conversion."""
    from smoltui.engine.tokenizers import load_tokenizer

    gguf_file = _gguf_tokenizer_file(spec.strip())
    if gguf_file is not None:
        folder = converted_folder(gguf_file, progress)
        if not has_tokenizer_files(folder):
            raise UserError(f"{spec.strip()} carries no tokenizer that transformers can convert; pass another one.")
        return load_tokenizer(str(folder))
    size = spec.strip().removeprefix("bpe:").strip()
    if not spec.strip().startswith("bpe:") or not size.isdigit():
        return load_tokenizer(spec, corpus_texts=corpus_texts, trust_remote_code=trust_remote_code)
    texts = list(corpus_texts()) if corpus_texts is not None else [_builtin_corpus()]
    digest = hashlib.sha256()
    for text in texts:
        digest.update(f"{len(text)}:".encode())
        digest.update(text.encode("utf-8", "surrogatepass"))
    folder = cache_dir(workspace_path(workspace), "tokenizers") / f"bpe{int(size)}-{digest.hexdigest()[:16]}"
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(str(folder))
    if progress:
        progress(f"training a byte-level BPE of {int(size)} tokens on the corpus (once; it is cached)")
    tokenizer = load_tokenizer(spec, corpus_texts=lambda: texts)
    # Saved beside its final name and renamed into place, so a crash never leaves half a tokenizer behind.
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(folder)
    except OSError:  # another process finished the same tokenizer first; theirs is identical
        shutil.rmtree(partial, ignore_errors=True)
    return tokenizer


def _gguf_tokenizer_file(spec: str) -> Path | None:
    """The GGUF file a tokenizer spec names (a bundled model or a .gguf path), None for any other spec."""
    if spec in BUNDLED_MODELS:
        return BUNDLED_MODELS[spec].locate()
    path = Path(spec).expanduser()
    if is_gguf_file(path):
        return path
    if spec.lower().endswith(".gguf"):
        raise UserError(f"no such file: {spec}; check the path.")
    return None


def _builtin_corpus() -> str:
    from smoltui.engine.data import read_corpus

    return read_corpus("builtin:pydocs").text


def _tokenizer(spec, folder, corpus_texts, workspace, trust_remote_code, say) -> PreTrainedTokenizerBase:
    if spec is None and not has_tokenizer_files(folder):
        raise UserError(
            f"{folder} has no tokenizer files; pass a tokenizer (char, bpe:N, a folder or a Hub id) with --tokenizer."
        )
    return resolve_tokenizer(
        spec or str(folder),
        corpus_texts=corpus_texts,
        workspace=workspace,
        trust_remote_code=trust_remote_code,
        progress=say,
    )


def summarize(model: PreTrainedModel) -> ModelSummary:
    """Architecture and size of `model`; UserError for a model smoltui cannot read (see model_parts)."""
    from torch import nn

    parts = model_parts(model)
    config = model.config.get_text_config(decoder=True)
    params = _unique(model.parameters())
    embedding = _unique(p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters())
    first = next(iter(params.values()))
    total = sum(p.numel() for p in params.values())
    embedding_params = sum(p.numel() for p in embedding.values())
    heads = config.num_attention_heads
    tensors = params | _unique(model.buffers())
    return ModelSummary(
        architecture=type(model).__name__,
        family=parts.family,
        total_params=total,
        embedding_params=embedding_params,
        non_embedding_params=total - embedding_params,
        layers=len(parts.blocks),
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        hidden=config.hidden_size,
        context=getattr(config, "max_position_embeddings", None),
        vocab=parts.embed_tokens.num_embeddings,
        dtype=_dtype_name(first.dtype),
        device=str(first.device),
        bytes=sum(t.numel() * t.element_size() for t in tensors.values()),
    )


def module_table(model: nn.Module, max_depth: int | None = None) -> list[ModuleRow]:
    """Every module in tree order with its own and total parameter counts; rows deeper than max_depth left out."""
    seen: set[tuple] = set()
    rows: list[tuple[str, str, int]] = []
    for name, module in model.named_modules():
        own = _unique(module.parameters(recurse=False), seen)
        rows.append((name, type(module).__name__, sum(p.numel() for p in own.values())))
    totals: dict[str, int] = {}
    for name, _, own in rows:
        steps = name.split(".") if name else []
        for depth in range(len(steps) + 1):
            prefix = ".".join(steps[:depth])
            totals[prefix] = totals.get(prefix, 0) + own
    table = [ModuleRow(name, kind, own, totals[name], name.count(".") + 1 if name else 0) for name, kind, own in rows]
    return [row for row in table if max_depth is None or row.depth <= max_depth]


def _unique(tensors: Iterable, seen: set | None = None) -> dict[tuple, Any]:
    """Tensors keyed by the memory they use, so a weight shared by two modules is counted once."""
    seen = set() if seen is None else seen
    unique = {}
    for tensor in tensors:
        # Meta tensors all report address 0, and there sharing means being the same object.
        key = ("id", id(tensor)) if tensor.is_meta else (str(tensor.device), tensor.data_ptr(), tensor.numel())
        if key not in seen:
            seen.add(key)
            unique[key] = tensor
    return unique


def _dtype_name(dtype) -> str:
    import torch

    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(dtype, str(dtype).removeprefix("torch."))
