"""The training loop of one run, in its own process: `python -m smoltui.engine.trainer RUN_DIR [--resume]`.

Everything it knows comes from the run's store (config in meta) and everything it does goes back there:
metrics, evaluations, samples, events, status, heartbeat. Viewers steer it through the store's commands table.
Launched by `smoltui.engine.runs.launch_run` in a new session so it outlives the program that started it, or by
`torchrun --nproc-per-node N -m smoltui.engine.trainer RUN_DIR` for data-parallel training (rank 0 writes).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from smoltui.engine import checkpoints
from smoltui.engine.architecture import model_parts
from smoltui.engine.batches import RandomWindows, SequentialWindows, check_fits_context
from smoltui.engine.config import TrainConfig
from smoltui.engine.data import read_corpus, tokenize_corpus
from smoltui.engine.device import resolve_device, resolve_precision
from smoltui.engine.distributed import Distributed
from smoltui.engine.errors import UserError
from smoltui.engine.evaluation import evaluate, generate_sample
from smoltui.engine.hooks import build_hooks
from smoltui.engine.models import load_model
from smoltui.engine.optim import build_optimizers, learning_rate, set_learning_rate
from smoltui.engine.run_contract import EventKind, Metric, RunStatus
from smoltui.engine.runstore import RunStore
from smoltui.engine.trainer_control import (
    COMMAND_POLL_EVERY_S,
    Control,
    catch_stop_signals,
    read_commands,
    wait_while_paused,
)
from smoltui.engine.trainer_state import TrainingRun, restore_checkpoint, save_checkpoint
from smoltui.engine.workspace import cache_dir

HEARTBEAT_EVERY_S = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smoltui.engine.trainer", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    parser.add_argument("--stop-at", type=int, default=None, help="stop (with a checkpoint) after this step")
    args = parser.parse_args(argv)
    _quiet_transformers()
    dist = Distributed.from_environment()
    store = RunStore.open(args.run_dir, readonly=not dist.is_main)
    if dist.is_main:
        store.update_status(RunStatus.RUNNING)  # records this process as the run's trainer
        store.start_heartbeat(HEARTBEAT_EVERY_S)
    status = None
    try:
        status = train(args.run_dir, store, dist, resume=args.resume, stop_at=args.stop_at)
    except UserError as error:
        _fail(store, dist, EventKind.BAD_CONFIG, str(error))
        return 2
    except torch.OutOfMemoryError:
        _fail(
            store,
            dist,
            EventKind.OUT_OF_MEMORY,
            "out of memory; lower --batch-size (or raise --grad-accum) and resume.",
        )
        return 1
    except Exception:
        _fail(store, dist, EventKind.CRASH, traceback.format_exc())
        return 1
    finally:
        dist.close(finished_together=status is not None)
    store.close()
    return 0 if status in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


def train(run_dir: Path, store: RunStore, dist: Distributed, *, resume: bool, stop_at: int | None) -> str:
    """Set up, then step until `max_steps` or a stop; return the final status, "finished" or "stopped"."""
    run = set_up(run_dir, store, dist, resume=resume)
    config = run.config
    pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []  # (step, loss, grad norm, lr), read lazily
    read_every = 1 if run.device == "cpu" else 16  # reading a GPU number waits for the GPU; batch those waits
    read_at = time.perf_counter()
    catch_stop_signals(run.stop_signal)
    run.started = time.monotonic() - run.progress.elapsed_s
    run.model.train()

    while run.progress.step < config.max_steps:
        # -- control: commands, signals, budgets
        control = poll_control(run, stop_at)
        if control.checkpoint or control.stop_reason:
            save_checkpoint(run)
        if control.sample and dist.is_main:
            _log_sample(run)
        if dist.is_main:
            for command_id in control.command_ids:
                store.mark_done(command_id)
        if control.stop_reason:
            final = RunStatus.FINISHED if control.stop_reason == "time budget reached" else RunStatus.STOPPED
            run.log("info", final, f"{control.stop_reason}; checkpoint saved at step {run.progress.step}.")
            _finish(store, dist, final)
            return final
        if control.pause and not wait_while_paused(run):
            continue  # a stop arrived during the pause: the next pass saves and stops

        # -- one optimizer step: forward, backward, clip, update (train_step, just below)
        lr = learning_rate(run.progress.step, config)
        set_learning_rate(run.optimizers, lr)
        loss, grad_norm = train_step(run)
        run.progress.step += 1
        run.progress.tokens_seen += run.tokens_per_step
        step = run.progress.step
        pending.append((step, loss, grad_norm, lr))

        # -- numbers out: read the pending losses, check they are finite, log them
        eval_due = step % config.eval_every == 0 or step == config.max_steps
        sample_due = config.sample_every and step % config.sample_every == 0
        checkpoint_due = step % config.checkpoint_every == 0 or step == config.max_steps
        if len(pending) >= read_every or eval_due or sample_due or checkpoint_due:
            bad_step = _log_steps(run, pending, seconds=time.perf_counter() - read_at)
            pending.clear()
            read_at = time.perf_counter()
            run.progress.elapsed_s = time.monotonic() - run.started
            if bad_step is not None:
                _recover_from_nan(run, bad_step)
                wait_while_paused(run)
                continue  # resumed: carry on from the checkpoint; stopped: the next pass saves and stops

        # -- evaluate, sample, checkpoint
        if eval_due and dist.is_main:
            val_loss = evaluate(run.model, run.val_ids, config, run.context, run.device, run.autocast)
            _log_evaluation(run, val_loss)
        if sample_due and dist.is_main:
            _log_sample(run)
        if checkpoint_due:
            save_checkpoint(run)

    run.log(
        "info",
        EventKind.FINISHED,
        f"reached max_steps {config.max_steps}; final checkpoint at step {run.progress.step}.",
    )
    _finish(store, dist, RunStatus.FINISHED)
    return RunStatus.FINISHED


def train_step(run: TrainingRun) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over `grad_accum` micro-batches: forward, backward, unscale, update hooks, clip, step.

    Returns the step's loss and gradient norm as tensors on the device, unread: reading them waits for the device.
    """
    config, step, activations = run.config, run.progress.step, run.hooks.activations
    record_activations = activations is not None and activations.due(step)
    if record_activations:
        activations.attach()
    loss_sum = torch.zeros((), device=run.device)
    for micro_step in range(config.grad_accum):
        x, y = run.batches.next_batch()  # (B, T) each
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        last_micro = micro_step == config.grad_accum - 1
        with run.dist.no_sync(run.ddp_model, last_micro), run.autocast:
            logits = run.ddp_model(input_ids=x).logits  # (B, T, vocab)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1)) / config.grad_accum
        run.scaler.scale(loss).backward()
        loss_sum += loss.detach()
    if record_activations:
        statistics = activations.detach()
        if run.dist.is_main:
            run.store.log_metrics(step + 1, statistics)  # logged steps count from 1
    for optimizer in run.optimizers:
        run.scaler.unscale_(optimizer)  # hooks and clipping see true gradients
    run.hooks.updates.apply(step)
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, max_norm)
    for optimizer in run.optimizers:
        run.scaler.step(optimizer)  # an fp16 step whose gradients overflowed is skipped
    run.scaler.update()
    for optimizer in run.optimizers:
        optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def poll_control(run: TrainingRun, stop_at: int | None) -> Control:
    """What to do before the next step, the same on every rank: rank 0's commands, a stop signal caught by any
    rank, `--stop-at` and the time budget. The store is read at most every COMMAND_POLL_EVERY_S."""
    control = Control(stop_reason=run.stop_signal.reason)
    if run.dist.is_main and time.monotonic() - run.commands_read_at >= COMMAND_POLL_EVERY_S:
        run.commands_read_at = time.monotonic()
        read_commands(run.store, control)
    if stop_at is not None and run.progress.step >= stop_at:
        control.stop_reason = control.stop_reason or f"stop requested at step {stop_at}"
    budget = run.config.time_budget_s
    if budget is not None and time.monotonic() - run.started >= budget:
        control.stop_reason = control.stop_reason or "time budget reached"
    return run.dist.agree(control)


def set_up(run_dir: Path, store: RunStore, dist: Distributed, *, resume: bool) -> TrainingRun:
    """Config, device, model, data, optimizers and hooks, restored from the latest checkpoint when resuming."""
    meta = store.meta()
    config = TrainConfig.from_dict(meta["config"])
    device = dist.device_for(resolve_device(config.device))
    precision = resolve_precision(config.precision, device)
    log = _logger(store, dist)
    workspace = run_dir.parent.parent

    checkpoint = checkpoints.latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        log("info", EventKind.RESUME, "no checkpoint was saved yet; starting this run from step 0.")
    corpus = read_corpus(config.corpus)
    for warning in corpus.warnings:
        log("warning", EventKind.CORPUS, warning)
    torch.manual_seed(config.seed)
    loaded = load_model(
        str(checkpoint.path) if checkpoint else config.model,
        tokenizer=None if checkpoint else config.tokenizer,
        device=device,
        dtype="fp32",  # master weights stay fp32; bf16/fp16 run under autocast
        seed=config.seed,
        trust_remote_code=config.trust_remote_code,
        corpus_texts=lambda: [corpus.text],
        workspace=workspace,
        overrides=None if checkpoint else config.model_overrides or None,
    )
    model, tokenizer = loaded.model, loaded.tokenizer
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    context = config.context_for(loaded.summary.context)
    tokenized = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(workspace, "tokens"))
    check_fits_context(tokenized, context)
    hooks = build_hooks(config.hooks, model, list(model_parts(model).blocks))  # freezes before the optimizers
    optimizers = build_optimizers(model, config, model.get_output_embeddings(), device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ddp_model = dist.wrap(model)
    if config.batching == "random":
        batches = RandomWindows(tokenized.train, config.batch_size, context, seed=config.seed + dist.rank)
    else:
        batches = SequentialWindows(
            tokenized.train, config.batch_size, context, rank=dist.rank, world_size=dist.world_size
        )
    run = TrainingRun(
        run_dir=run_dir,
        store=store,
        dist=dist,
        config=config,
        device=device,
        precision=precision,
        context=context,
        model=model,
        ddp_model=ddp_model,
        tokenizer=tokenizer,
        trainable=trainable,
        optimizers=optimizers,
        scaler=torch.amp.GradScaler(device.partition(":")[0], enabled=precision == "fp16"),
        autocast=_autocast(device, precision),
        hooks=hooks,
        batches=batches,
        val_ids=tokenized.val,
        log=log,
    )
    if checkpoint is not None:
        restore_checkpoint(run, checkpoint)
        log("info", EventKind.RESUME, f"resumed from checkpoint step {run.progress.step}.")
    if dist.is_main:
        store.set_meta(
            device=device,
            precision=precision,
            context=context,
            world_size=dist.world_size,
            hooks=hooks.active,
            parameters=loaded.summary.total_params,
            corpus_tokens=len(tokenized.ids),
            versions=_versions(),
            started_training=time.time(),
        )
        store.flush()
    log(
        "info",
        EventKind.START,
        f"training {config.model} on {device} ({precision}), context {context}, "
        f"{loaded.summary.total_params:,} parameters, {len(tokenized.train):,} training tokens.",
    )
    return run


# ---- set-up helpers ------------------------------------------------------------------------------------------------


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Set every dropout of the model, both nn.Dropout modules and attention kernels' dropout rates."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p
    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout"):
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, p)


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.partition(":")[0], dtype=dtype)


def _logger(store, dist):
    def log(level: str, kind: str, message: str) -> None:
        if dist.is_main:
            store.log_event(level, kind, message)
            print(f"[{kind}] {message}", flush=True)

    return log


def _versions() -> dict[str, str]:
    import platform

    import transformers

    import smoltui

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "smoltui": smoltui.__version__,
    }


# ---- loop helpers, in the order the loop uses them -----------------------------------------------------------------


def _log_sample(run: TrainingRun) -> None:
    config, step = run.config, run.progress.step
    text = generate_sample(
        run.model,
        run.tokenizer,
        config.sample_prompt,
        config.sample_length,
        config.temperature,
        run.context,
        config.seed + step,
        run.device,
        run.autocast,
    )
    run.store.log_sample(step, config.sample_prompt, text)


def _finish(store, dist, status: str) -> None:
    if dist.is_main:
        store.update_status(status)
        store.flush()


def _log_steps(run: TrainingRun, pending, *, seconds: float) -> int | None:
    """Log the pending steps' numbers; return the first step whose loss or gradient is not finite, if any.

    A non-finite gradient poisons that step's update even while its loss is still finite, so it counts as bad.
    `seconds` is the time the pending steps took, for their tokens per second.
    """
    values = torch.stack([torch.stack([loss.float(), norm.float()]) for _, loss, norm, _ in pending]).tolist()
    tokens_per_step = run.tokens_per_step
    rate = len(pending) * tokens_per_step / seconds if seconds > 0 else 0.0
    tokens = run.progress.tokens_seen - tokens_per_step * (len(pending) - 1)
    bad_step = None
    for (step, _, _, lr), (loss, norm) in zip(pending, values, strict=True):
        if not (math.isfinite(loss) and math.isfinite(norm)) and bad_step is None:
            bad_step = step
        if bad_step is None and run.dist.is_main:
            run.store.log_metrics(
                step,
                {
                    Metric.TRAIN_LOSS: loss,
                    Metric.LR: lr,
                    Metric.GRAD_NORM: norm,
                    Metric.TOKENS_PER_S: rate,
                    Metric.TOKENS_SEEN: tokens,
                },
            )
        tokens += tokens_per_step
    return run.dist.agree_on_step(bad_step)


def _recover_from_nan(run: TrainingRun, bad_step: int) -> None:
    """Put back the last good checkpoint and pause, saying where the loss went bad."""
    checkpoint = checkpoints.latest_checkpoint(run.run_dir)
    if checkpoint is None:
        raise UserError(
            f"the loss became NaN or infinite at step {bad_step} before any checkpoint was saved; "
            "start again with a lower --lr or --grad-clip."
        )
    weights = type(run.model).from_pretrained(checkpoint.path, dtype=torch.float32).state_dict()
    run.model.load_state_dict(weights, strict=False)
    restore_checkpoint(run, checkpoint)
    run.log(
        "error",
        EventKind.NAN,
        f"the loss became NaN or infinite at step {bad_step}; paused and rolled back to the last good "
        f"checkpoint (step {checkpoint.step}). Resume to continue from there, or stop and lower --lr.",
    )


def _log_evaluation(run: TrainingRun, val_loss: float) -> None:
    progress = run.progress
    progress.last_val = val_loss
    run.store.log_metrics(progress.step, {Metric.VAL_LOSS: val_loss, Metric.VAL_PPL: math.exp(min(val_loss, 50.0))})
    if progress.best_val is None or val_loss < progress.best_val:
        progress.best_val, progress.best_step = val_loss, progress.step
    print(f"step {progress.step}: val loss {val_loss:.4f}", flush=True)


# ---- the process ---------------------------------------------------------------------------------------------------


def _fail(store, dist, kind: str, message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    if dist.is_main:
        store.log_event("error", kind, message)
        store.update_status(RunStatus.FAILED)
        store.close()


def _quiet_transformers() -> None:
    """train.log is for the run's own story: no download bars or advice meant for notebooks."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _exit(code: int) -> None:
    """Exit; a rank under torchrun leaves without the interpreter's teardown. Everything it wrote is flushed and
    its process group is gone by now, but gloo's threads were once seen to abort the process during teardown
    ("terminate called without an active exception"), which torchrun reports as a failed run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
