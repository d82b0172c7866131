"""The logit lens of one prompt across a run's checkpoints, to watch the layers learn; each grid cached on disk.

A grid is cached per (checkpoint, prompt, target, k, dtype) in the workspace cache (`cache/lens/`), as a numpy
`.npz` written atomically, so a second look at a run loads no model for the checkpoints it has seen. The key
includes the checkpoint's file sizes and modification times: a checkpoint saved again at the same step is
computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.errors import UserError
from smoltui.engine.lens import DEFAULT_TOP_K, LensGrid

if TYPE_CHECKING:
    import threading

CACHE_KIND = "lens"
CACHE_FORMAT = 1  # raise when the stored arrays change meaning; old files are then never read


@dataclass(frozen=True)
class CheckpointLens:
    """The grid of one checkpoint."""

    step: int
    grid: LensGrid
    cached: bool  # read from the cache rather than computed now


def checkpoint_lenses(
    run: str | os.PathLike[str],
    prompt: str,
    *,
    target: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    workspace: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    should_stop: Callable[[], bool] | threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[CheckpointLens]:
    """The lens grid of `prompt` at every checkpoint of `run` (an id, a unique prefix, "latest" or a folder),
    oldest first. `target` is a token's text, resolved by each checkpoint's tokenizer. Loading messages go to
    `progress`; `should_stop` is checked between checkpoints. A run without checkpoints is refused at the call,
    before any is computed."""
    from smoltui.engine.checkpoints import list_checkpoints
    from smoltui.engine.device import resolve_placement
    from smoltui.engine.runs import find_run
    from smoltui.engine.workspace import cache_dir, workspace_path

    if top_k < 1:
        raise UserError("the number of top tokens must be at least 1; raise --top.", field="top")
    run_dir = find_run(run, Path(workspace) if workspace is not None else None)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise UserError(
            f"run {run_dir.name} has no checkpoints yet; wait for its first save, or press checkpoint-now while "
            "it trains.",
            field="run",
        )
    placement = resolve_placement(device, dtype)
    folder = cache_dir(workspace_path(workspace), CACHE_KIND)
    return _checkpoint_lenses(
        run_dir, checkpoints, folder, prompt, target, top_k, workspace, placement, _stop_check(should_stop),
        progress or (lambda _line: None),
    )  # fmt: skip


def _checkpoint_lenses(
    run_dir, checkpoints, folder, prompt, target, top_k, workspace, placement, stop, say
) -> Iterator[CheckpointLens]:
    for checkpoint in checkpoints:
        if stop():
            return
        key = _cache_key(checkpoint.path, prompt, target, top_k, str(placement.dtype))
        path = folder / f"{run_dir.name}-step{checkpoint.step:06d}-{key[:16]}.npz"
        grid = _read_grid(path)
        if grid is not None:
            yield CheckpointLens(checkpoint.step, grid, cached=True)
            continue
        say(f"loading step {checkpoint.step} of {run_dir.name}")
        grid = _compute(checkpoint.path, prompt, target, top_k, placement, workspace)
        _write_grid(path, grid)
        yield CheckpointLens(checkpoint.step, grid, cached=False)


def _compute(folder: Path, prompt, target, top_k, placement, workspace) -> LensGrid:
    from smoltui.engine.lens import logit_lens, target_token
    from smoltui.engine.models import load_model

    loaded = load_model(str(folder), device=placement.device, dtype=placement.dtype, workspace=workspace)
    target_id = target_token(loaded.tokenizer, target).token_id if target is not None else None
    return logit_lens(loaded.model, loaded.tokenizer, prompt, target=target_id, top_k=top_k)


def _cache_key(folder: Path, prompt: str, target: str | None, top_k: int, dtype: str) -> str:
    files = sorted(
        (path.name, stat.st_size, stat.st_mtime_ns)
        for path in folder.iterdir()
        if path.is_file() and (stat := path.stat())
    )
    identity = {"format": CACHE_FORMAT, "files": files, "prompt": prompt, "target": target, "k": top_k, "dtype": dtype}
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


_ARRAYS = ("token_ids", "next_ids", "top_ids", "top_probs", "entropy", "kl_to_final", "next_prob")


def _write_grid(path: Path, grid: LensGrid) -> None:
    from smoltui.engine.workspace import write_atomically

    truncation = grid.truncation
    meta = {
        "target_id": grid.target_id,
        "texts": [[token, text] for token, text in grid.texts.items()],
        "truncation": None if truncation is None else [truncation.kept_tokens, truncation.dropped_tokens,
                                                       truncation.message],
    }  # fmt: skip
    arrays = {name: getattr(grid, name) for name in _ARRAYS}
    if grid.target_rank is not None:
        arrays |= {"target_rank": grid.target_rank, "target_prob": grid.target_prob}
    # JSON escapes every control character, so the text survives numpy's string arrays (which drop trailing NULs).
    arrays["meta"] = np.array(json.dumps(meta))

    def write(out: IO[bytes]) -> None:
        np.savez(out, **arrays)

    write_atomically(path, write)


def _read_grid(path: Path) -> LensGrid | None:
    """The cached grid, or None when there is none (or it cannot be read: it is then computed again)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError):
        return None
    truncation = meta["truncation"]
    return LensGrid(
        **{name: arrays[name] for name in _ARRAYS},
        target_id=meta["target_id"],
        target_rank=arrays.get("target_rank"),
        target_prob=arrays.get("target_prob"),
        texts={int(token): text for token, text in meta["texts"]},
        truncation=None if truncation is None else PromptTruncated(*truncation),
    )


def _stop_check(should_stop: Callable[[], bool] | threading.Event | None) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    return should_stop.is_set if hasattr(should_stop, "is_set") else should_stop
