"""Checkpoints of a run: written whole or not at all, found again after any crash, pruned to the last K plus best.

Layout under a run folder:
    checkpoints/step_000500/   model + tokenizer (save_pretrained, safetensors) and trainer_state.pt
    checkpoints/latest         the name of the newest complete checkpoint, replaced atomically
Imports torch only to save and load trainer state, so viewers can list checkpoints cheaply.
A checkpoint is assembled in a hidden temporary folder and renamed into place, so a kill at any instant leaves
either the old set or the new one; leftovers of a killed write are removed on the next save or resume.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoltui.engine.errors import UserError
from smoltui.engine.workspace import fsync_dir, write_atomically

STATE_FILE = "trainer_state.pt"
LATEST_FILE = "latest"
_PREFIX = "step_"
_TEMP_PREFIX = ".partial-"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, state: dict[str, Any]) -> Checkpoint:
    """Write model, tokenizer and trainer state for `step`, then make it the latest, atomically."""
    root = checkpoints_dir(run_dir)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_partial_writes(run_dir)
    name = f"{_PREFIX}{step:06d}"
    temp = root / f"{_TEMP_PREFIX}{name}"
    temp.mkdir(mode=0o700)
    model.save_pretrained(temp, safe_serialization=True)
    tokenizer.save_pretrained(temp)
    import torch

    torch.save(state, temp / STATE_FILE)
    for path in temp.iterdir():
        _fsync(path)
    final = root / name
    if final.exists():  # saved again at the same step (e.g. "checkpoint now" right after a periodic save)
        shutil.rmtree(final)
    os.replace(temp, final)
    fsync_dir(root)
    write_atomically(root / LATEST_FILE, lambda out: out.write(name.encode()))
    return Checkpoint(step, final)


def list_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        step = path.name.removeprefix(_PREFIX)
        if path.name.startswith(_PREFIX) and step.isdigit() and (path / STATE_FILE).is_file():
            found.append(Checkpoint(int(step), path))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The checkpoint `latest` names, or the newest complete one if that pointer is missing or stale."""
    root = checkpoints_dir(run_dir)
    try:
        name = (root / LATEST_FILE).read_text().strip()
    except OSError:
        name = ""
    step = name.removeprefix(_PREFIX)
    if name.startswith(_PREFIX) and step.isdigit() and (root / name / STATE_FILE).is_file():
        return Checkpoint(int(step), root / name)
    every = list_checkpoints(run_dir)
    return every[-1] if every else None


def find_checkpoint(run_dir: Path, step: int | None = None) -> Checkpoint:
    """The checkpoint at `step` (the latest when None), or a UserError that lists the steps there are."""
    if step is None:
        found = latest_checkpoint(run_dir)
        if found is None:
            raise UserError(f"run {run_dir.name} has no checkpoint yet; wait for its first save or train it longer.")
        return found
    every = list_checkpoints(run_dir)
    for checkpoint in every:
        if checkpoint.step == step:
            return checkpoint
    steps = ", ".join(str(c.step) for c in every) or "none"
    raise UserError(f"run {run_dir.name} has no checkpoint at step {step}; its checkpoints are at steps: {steps}.")


def load_trainer_state(checkpoint: Checkpoint) -> dict[str, Any]:
    import torch

    return torch.load(checkpoint.path / STATE_FILE, map_location="cpu", weights_only=True)


def prune_checkpoints(run_dir: Path, keep_last: int, best_step: int | None) -> None:
    """Delete all but the newest `keep_last` checkpoints and the one with the best validation loss."""
    every = list_checkpoints(run_dir)
    keep = {c.step for c in every[-keep_last:]}
    if best_step is not None:
        keep.add(best_step)
    for checkpoint in every:
        if checkpoint.step not in keep:
            shutil.rmtree(checkpoint.path, ignore_errors=True)


def remove_partial_writes(run_dir: Path) -> None:
    root = checkpoints_dir(run_dir)
    if root.is_dir():
        for path in root.glob(f"{_TEMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in root.glob(f".{LATEST_FILE}.*.tmp"):
            path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    if path.is_dir():
        fsync_dir(path)
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
