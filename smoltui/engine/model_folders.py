"""Model folders: a saved folder's files checked one by one before loading, and Hub snapshots fetched to one.

transformers' own errors for a bad folder are tracebacks from deep inside its loader (or, for a missing tensor,
a warning and silently random weights); each case here gets one sentence that names the file and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from smoltui.engine.device import Placement
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

# Files a model snapshot needs beside its weights: config, tokenizer, chat template, generation settings.
HUB_SIDE_FILES = ["*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def load_folder_model(
    folder: Path, placement: Placement, trust_remote_code: bool, say: Callable[[str], None]
) -> PreTrainedModel:
    """The model saved in `folder`, checked file by file first, on the placement."""
    from transformers import AutoModelForCausalLM

    config = _read_config(folder, trust_remote_code)
    weights = _weight_files(folder)
    say(f"loading weights from {folder}")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder,
            config=config,
            dtype=placement.torch_dtype,
            trust_remote_code=trust_remote_code,
            local_files_only=True,
            output_loading_info=True,
        )
    except Exception as error:
        raise _load_error(error, folder, weights) from None
    if info["missing_keys"]:
        example = sorted(info["missing_keys"])[0]
        raise UserError(
            f"{folder} lacks {len(info['missing_keys'])} tensors its config.json describes (e.g. {example}); "
            "re-save the folder with save_pretrained."
        )
    if placement.device != "cpu":
        say(f"moving the model to {placement.device}")
    return model.to(placement.torch_device).eval()


def _read_config(folder: Path, trust_remote_code: bool) -> PretrainedConfig:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, __version__

    if not folder.exists():
        raise UserError(f"no such folder: {folder}; check the path.")
    if not folder.is_dir():
        raise UserError(f"{folder} is a file; pass the folder that holds config.json and the weights.")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder} has no config.json; point at a folder saved with save_pretrained.")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{config_file} is not readable JSON ({error}); re-save or re-download it.") from None
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        if isinstance(raw, dict) and "auto_map" in raw and not trust_remote_code:
            raise UserError(f"{folder} ships its own model code; pass --trust-remote-code if you trust it.") from None
        model_type = raw.get("model_type") if isinstance(raw, dict) else None
        raise UserError(
            f"{config_file} describes a model type transformers {__version__} does not know ({model_type!r}); "
            "upgrade transformers or check the file."
        ) from None
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and "AutoModelForCausalLM" not in (
        getattr(config, "auto_map", None) or {}
    ):
        raise UserError(
            f"{folder} holds a {config.model_type} model, which is not a causal language model; smoltui loads "
            "decoder-only models such as GPT-2, Llama or Qwen2."
        )
    return config


def _weight_files(folder: Path, *, quiet: bool = False) -> list[Path]:
    """The weight files `folder` holds, safetensors headers checked; UserError when unusable ([] when quiet)."""
    try:
        files = _listed_files(folder, "model.safetensors.index.json", "model.safetensors") or _listed_files(
            folder, "pytorch_model.bin.index.json", "pytorch_model.bin"
        )
        if not files:
            raise UserError(
                f"{folder} has no weights (model.safetensors); point at a folder saved with save_pretrained."
            )
        for file in files:
            if file.suffix == ".safetensors":  # pickled weights are checked by transformers' loader (weights_only)
                _check_safetensors(file)
    except UserError:
        if quiet:
            return []
        raise
    return files


def _check_safetensors(file: Path) -> None:
    """Read the header only: it lists every tensor's byte range, so a cut-off file or garbage shows at once."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise UserError(f"{file} is truncated or corrupt ({error}); re-save or re-download it.") from None


def _listed_files(folder: Path, index_name: str, single_name: str) -> list[Path]:
    if (folder / single_name).is_file():
        return [folder / single_name]
    index = folder / index_name
    if not index.is_file():
        return []
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{index} is truncated or corrupt ({error}); re-save or re-download it.") from None
    missing = [name for name in shards if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder} lacks {missing[0]}, which {index_name} lists; re-save or re-download it.")
    return [folder / name for name in shards]


def _load_error(error: Exception, folder: Path, weights: list[Path]) -> Exception:
    """The UserError that `error` from from_pretrained means, or `error` itself when it is a bug."""
    import pickle

    import torch
    from safetensors import SafetensorError

    if isinstance(error, torch.OutOfMemoryError):
        return error
    if isinstance(error, RuntimeError) and "mismatch" in str(error):
        return UserError(
            f"the weights in {folder} do not fit its config.json (tensor shapes differ); re-save the folder "
            "with save_pretrained."
        )
    pickled = any(file.suffix == ".bin" for file in weights)
    if isinstance(error, SafetensorError) or (
        pickled and isinstance(error, OSError | RuntimeError | EOFError | pickle.UnpicklingError)
    ):
        return UserError(f"the weights in {folder} are truncated or corrupt ({error}); re-save or re-download them.")
    return error


def hub_snapshot(repo_id: str, trust_remote_code: bool, say: Callable[[str], None]) -> Path:
    """The local folder of `repo_id`: the Hugging Face cache if it holds the model, else a fresh download."""
    import httpx2  # the HTTP client huggingface_hub uses; its connection errors are not OSErrors
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    from smoltui.engine.tokenizers import hub_offline, hub_reachable

    try:
        cached = Path(snapshot_download(repo_id, allow_patterns=["config.json"], local_files_only=True))
        if (cached / "config.json").is_file() and _weight_files(cached, quiet=True):
            return cached
    except (LocalEntryNotFoundError, IncompleteSnapshotError):
        pass
    # huggingface_hub retries an unreachable host for many seconds (and waits forever on a silent one), so
    # ask once, briefly, whether the Hub answers at all.
    unreachable = UserError(
        f"could not reach the Hugging Face Hub for {repo_id!r}; download it where the Hub is reachable and pass "
        "the local folder instead."
    )
    if hub_offline() or not hub_reachable():
        raise unreachable
    try:
        files = HfApi().list_repo_files(repo_id)
        safetensors = any(fnmatch(name, "model*.safetensors") for name in files)
        weights = ["model*.safetensors"] if safetensors else ["pytorch_model*.bin"]
        code = ["*.py"] if trust_remote_code else []
        say(f"downloading {repo_id} from the Hugging Face Hub")
        return Path(snapshot_download(repo_id, allow_patterns=HUB_SIDE_FILES + weights + code, ignore_patterns=["*/*"]))
    except GatedRepoError:
        raise UserError(
            f"{repo_id} is gated; accept its terms on the Hub and log in with `hf auth login`, then try again."
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            f"no model {repo_id!r} on the Hugging Face Hub (or it is private); check the id or log in with "
            "`hf auth login`."
        ) from None
    except (OSError, httpx2.HTTPError):  # LocalEntryNotFoundError and the Hub's HTTP errors are OSErrors too
        raise unreachable from None


def has_tokenizer_files(folder: Path) -> bool:
    from smoltui.engine.tokenizers import TOKENIZER_FILES

    return any((folder / name).is_file() for name in TOKENIZER_FILES)
