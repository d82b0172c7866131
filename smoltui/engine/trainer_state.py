"""TrainingRun, the state of one run's training in its process, and the part of it a checkpoint carries beside
the weights for an exact resume: progress, optimizers, loss scaler, each rank's data position and random states."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from smoltui.engine import checkpoints
from smoltui.engine.errors import UserError
from smoltui.engine.run_contract import EventKind
from smoltui.engine.trainer_control import StopSignal

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from smoltui.engine.batches import RandomWindows, SequentialWindows
    from smoltui.engine.config import TrainConfig
    from smoltui.engine.distributed import Distributed
    from smoltui.engine.hooks import Hooks
    from smoltui.engine.runstore import RunStore


@dataclass
class Progress:
    """The numbers a checkpoint must carry for an exact resume, beside optimizer, data and RNG states."""

    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    best_val: float | None = None
    best_step: int | None = None
    last_val: float | None = None
    saved_step: int | None = None  # not stored: a restored run has just "saved" the step it restored


@dataclass
class TrainingRun:
    """One run's training as this process holds it: where it reports, what it trains, and how far it has got."""

    run_dir: Path
    store: RunStore
    dist: Distributed
    config: TrainConfig
    device: str
    precision: str
    context: int
    model: PreTrainedModel  # checkpoints, evaluation and samples use the model itself
    ddp_model: torch.nn.Module  # training steps go through DDP's wrapper (the model itself in one process)
    tokenizer: PreTrainedTokenizerBase
    trainable: list[torch.nn.Parameter]
    optimizers: list[torch.optim.Optimizer]
    scaler: torch.amp.GradScaler  # enabled for fp16 only; a disabled scaler passes everything through
    autocast: contextlib.AbstractContextManager
    hooks: Hooks
    batches: RandomWindows | SequentialWindows
    val_ids: np.ndarray
    log: Callable[[str, str, str], None]
    progress: Progress = field(default_factory=Progress)
    stop_signal: StopSignal = field(default_factory=StopSignal)
    started: float = 0.0  # time.monotonic() when this run's training would have started, had it never stopped
    commands_read_at: float = 0.0

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step, all ranks together."""
        return self.config.batch_size * self.context * self.config.grad_accum * self.dist.world_size


def save_checkpoint(run: TrainingRun) -> None:
    """Every rank hands rank 0 its data position and random states; rank 0 writes the checkpoint and prunes."""
    progress = run.progress
    if progress.saved_step == progress.step:
        return  # already saved at this step (a periodic save just before a stop or "checkpoint now")
    progress.saved_step = progress.step
    rank_state = run.dist.gather({"batches": run.batches.state_dict(), "rng": _rng_state()})
    if not run.dist.is_main:
        return
    state = {
        "step": progress.step,
        "tokens_seen": progress.tokens_seen,
        "elapsed_s": progress.elapsed_s,
        "best_val": progress.best_val,
        "best_step": progress.best_step,
        "last_val": progress.last_val,
        "optimizers": [optimizer.state_dict() for optimizer in run.optimizers],
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "ranks": rank_state,
    }
    saved = checkpoints.save_checkpoint(run.run_dir, progress.step, run.model, run.tokenizer, state)
    checkpoints.prune_checkpoints(run.run_dir, run.config.keep_last, progress.best_step)
    run.store.log_event("info", EventKind.CHECKPOINT, f"checkpoint saved at step {saved.step}.")
    run.store.set_meta(last_checkpoint=saved.step)


def restore_checkpoint(run: TrainingRun, checkpoint: checkpoints.Checkpoint) -> None:
    """Put back optimizers, scaler, this rank's data position and random states, and the progress; not weights."""
    state = checkpoints.load_trainer_state(checkpoint)
    ranks = state["ranks"]
    if len(ranks) != run.dist.world_size:
        raise UserError(
            f"the checkpoint was written by {len(ranks)} process(es) but this run has {run.dist.world_size}; "
            f"resume with --nproc-per-node {len(ranks)}."
        )
    for optimizer, saved in zip(run.optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    if state["scaler"]:  # None when written without fp16; a disabled scaler ignores a saved one
        run.scaler.load_state_dict(state["scaler"])
    run.batches.load_state_dict(ranks[run.dist.rank]["batches"])
    _set_rng_state(ranks[run.dist.rank]["rng"])
    run.progress = Progress(
        step=state["step"],
        tokens_seen=state["tokens_seen"],
        elapsed_s=state["elapsed_s"],
        best_val=state["best_val"],
        best_step=state["best_step"],
        last_val=state["last_val"],
        saved_step=state["step"],
    )


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
