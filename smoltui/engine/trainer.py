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
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from smoltui.engine import checkpoints
from smoltui.engine.architecture import model_parts
from smoltui.engine.batches import RandomWindows, SequentialWindows, check_fits_context
from smoltui.engine.config import TrainConfig
from smoltui.engine.data import read_corpus, tokenize_corpus
from smoltui.engine.device import resolve_device
from smoltui.engine.distributed import Distributed
from smoltui.engine.errors import UserError
from smoltui.engine.hooks import build_hooks
from smoltui.engine.models import load_model
from smoltui.engine.optim import build_optimizers, learning_rate, set_learning_rate
from smoltui.engine.runstore import RunStore
from smoltui.engine.workspace import cache_dir

HEARTBEAT_EVERY_S = 2.0
COMMAND_POLL_EVERY_S = 0.25
DEFAULT_PRESET_CONTEXT_CAP = 1024


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
class Control:
    """What the outside world asked for since the last poll: commands from the store, signals from the OS."""

    stop_reason: str | None = None
    pause: bool = False
    resume: bool = False
    checkpoint: bool = False
    sample: bool = False
    command_ids: list[int] = field(default_factory=list)


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
        store.update_status("running")  # records this process as the run's trainer
        store.start_heartbeat(HEARTBEAT_EVERY_S)
    status = None
    try:
        status = train(args.run_dir, store, dist, resume=args.resume, stop_at=args.stop_at)
    except UserError as error:
        _fail(store, dist, "bad-config", str(error))
        return 2
    except torch.OutOfMemoryError:
        _fail(store, dist, "out-of-memory", "out of memory; lower --batch-size (or raise --grad-accum) and resume.")
        return 1
    except Exception:
        _fail(store, dist, "crash", traceback.format_exc())
        return 1
    finally:
        dist.close(finished_together=status is not None)
    store.close()
    return 0 if status in ("finished", "stopped") else 1


def train(run_dir: Path, store: RunStore, dist: Distributed, *, resume: bool, stop_at: int | None) -> str:
    # ---- set up: config, device, model, data, optimizer, hooks --------------------------------------------------
    meta = store.meta()
    config = TrainConfig.from_dict(meta["config"])
    device = dist.device_for(resolve_device(config.device))
    precision = resolve_precision(config.precision, device)
    log = _logger(store, dist)
    workspace = run_dir.parent.parent

    checkpoint = checkpoints.latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        log("info", "resume", "no checkpoint was saved yet; starting this run from step 0.")
    corpus = read_corpus(config.corpus)
    for warning in corpus.warnings:
        log("warning", "corpus", warning)
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
    context = choose_context(config, loaded.summary.context)
    tokenized = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir(workspace, "tokens"))
    check_fits_context(tokenized, context)
    parts = model_parts(model)
    hooks = build_hooks(config.hooks, model, list(parts.blocks))
    optimizers = build_optimizers(model, config, model.get_output_embeddings(), device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ddp_model = dist.wrap(model)
    window_class = RandomWindows if config.batching == "random" else SequentialWindows
    window_args = (tokenized.train, config.batch_size, context)
    batches = (
        window_class(*window_args, seed=config.seed + dist.rank)
        if config.batching == "random"
        else (window_class(*window_args))
    )
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    autocast = _autocast(device, precision)
    progress = Progress()

    if checkpoint is not None:
        progress = _restore(checkpoint, optimizers, batches, scaler, dist)
        log("info", "resume", f"resumed from checkpoint step {progress.step}.")
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
        "start",
        f"training {config.model} on {device} ({precision}), context {context}, "
        f"{loaded.summary.total_params:,} parameters, {len(tokenized.train):,} training tokens.",
    )

    # ---- the loop ---------------------------------------------------------------------------------------------
    stop_signal = _catch_stop_signals()
    tokens_per_step = config.batch_size * context * config.grad_accum * dist.world_size
    pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []  # (step, loss, grad norm, lr), read lazily
    read_every = 1 if device == "cpu" else 16  # reading a GPU number waits for the GPU; batch those waits
    window_start, window_steps = time.perf_counter(), 0
    last_poll = 0.0
    started = time.monotonic() - progress.elapsed_s
    model.train()

    while progress.step < config.max_steps:
        # -- control: commands, signals, budgets
        control = Control(stop_reason=stop_signal.reason)
        if dist.is_main and time.monotonic() - last_poll >= COMMAND_POLL_EVERY_S:
            last_poll = time.monotonic()
            _read_commands(store, control)
        if stop_at is not None and progress.step >= stop_at:
            control.stop_reason = control.stop_reason or f"stop requested at step {stop_at}"
        if config.time_budget_s is not None and time.monotonic() - started >= config.time_budget_s:
            control.stop_reason = control.stop_reason or "time budget reached"
        control = dist.agree(control)
        if control.checkpoint or control.stop_reason:
            _save(run_dir, store, dist, model, tokenizer, optimizers, batches, scaler, progress, config)
        if control.sample and dist.is_main:
            _log_sample(store, model, tokenizer, config, context, device, autocast, progress.step)
        if dist.is_main:
            for command_id in control.command_ids:
                store.mark_done(command_id)
        if control.stop_reason:
            final = "finished" if control.stop_reason == "time budget reached" else "stopped"
            log("info", final, f"{control.stop_reason}; checkpoint saved at step {progress.step}.")
            _finish(store, dist, final)
            return final
        if control.pause and not _wait_while_paused(store, dist, stop_signal, log):
            continue  # a stop arrived during the pause: the next pass saves and stops

        # -- one optimizer step
        lr = learning_rate(progress.step, config)
        set_learning_rate(optimizers, lr)
        record_activations = hooks.activations is not None and hooks.activations.due(progress.step)
        if record_activations:
            hooks.activations.attach()
        loss_sum = torch.zeros((), device=device)
        for micro_step in range(config.grad_accum):
            x, y = batches.next_batch()  # (B, T) each
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            last_micro = micro_step == config.grad_accum - 1
            with dist.no_sync(ddp_model, last_micro), autocast:
                logits = ddp_model(input_ids=x).logits  # (B, T, vocab)
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1)) / config.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            loss_sum += loss.detach()
        activation_stats = hooks.activations.detach() if record_activations else {}
        if scaler:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
        hooks.updates.apply(progress.step)
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip if config.grad_clip > 0 else math.inf)
        for optimizer in optimizers:
            if scaler:
                scaler.step(optimizer)
            else:
                optimizer.step()
        if scaler:
            scaler.update()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.tokens_seen += tokens_per_step
        window_steps += 1
        pending.append((progress.step, loss_sum, grad_norm, lr))
        if activation_stats and dist.is_main:
            store.log_metrics(progress.step, activation_stats)

        # -- numbers out: read the pending losses, check they are finite, log them
        eval_due = progress.step % config.eval_every == 0 or progress.step == config.max_steps
        sample_due = config.sample_every and progress.step % config.sample_every == 0
        checkpoint_due = progress.step % config.checkpoint_every == 0 or progress.step == config.max_steps
        if len(pending) >= read_every or eval_due or sample_due or checkpoint_due:
            elapsed = time.perf_counter() - window_start
            rate = window_steps * tokens_per_step / elapsed if elapsed > 0 else 0.0
            bad_step = _log_steps(store, dist, pending, rate, tokens_per_step, progress.tokens_seen)
            pending.clear()
            window_start, window_steps = time.perf_counter(), 0
            progress.elapsed_s = time.monotonic() - started
            if bad_step is not None:
                progress = _recover_from_nan(run_dir, store, dist, bad_step, optimizers, batches, scaler, model, log)
                _wait_while_paused(store, dist, stop_signal, log)
                continue  # resumed: carry on from the checkpoint; stopped: the next pass saves and stops

        if eval_due:
            val_loss = evaluate(model, tokenized.val, config, context, device, autocast) if dist.is_main else None
            progress.last_val = val_loss
            if dist.is_main:
                store.log_metrics(progress.step, {"val/loss": val_loss, "val/ppl": math.exp(min(val_loss, 50.0))})
                if progress.best_val is None or val_loss < progress.best_val:
                    progress.best_val, progress.best_step = val_loss, progress.step
                print(f"step {progress.step}: val loss {val_loss:.4f}", flush=True)
        if sample_due and dist.is_main:
            _log_sample(store, model, tokenizer, config, context, device, autocast, progress.step)
        if checkpoint_due:
            _save(run_dir, store, dist, model, tokenizer, optimizers, batches, scaler, progress, config)

    log("info", "finished", f"reached max_steps {config.max_steps}; final checkpoint at step {progress.step}.")
    _finish(store, dist, "finished")
    return "finished"


# ---- helpers, in the order the loop uses them -------------------------------------------------------------------


def resolve_precision(precision: str, device: str) -> str:
    """`auto` is bf16 autocast on CUDA and fp32 elsewhere (bf16 autocast measured slower on CPU: see README)."""
    kind = device.partition(":")[0]
    if precision == "auto":
        if kind == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "fp16" and kind != "cuda":
        raise UserError("fp16 training needs a CUDA GPU (its loss scaler is CUDA-only); pass --precision bf16 or fp32.")
    return precision


def choose_context(config: TrainConfig, model_context: int | None) -> int:
    if config.context is None:
        if model_context is None:
            raise UserError("this model does not say how many positions it has; pass --context.")
        return min(model_context, DEFAULT_PRESET_CONTEXT_CAP)
    if model_context is not None and config.context > model_context:
        raise UserError(
            f"context {config.context} is longer than the model's {model_context} positions; "
            f"pass --context {model_context} or less."
        )
    return config.context


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


@torch.no_grad()
def evaluate(model, val_ids, config: TrainConfig, context: int, device: str, autocast) -> float:
    """Mean loss over the first `eval_batches` sequential windows of the validation split: the same every time."""
    was_training = model.training
    model.eval()
    windows = SequentialWindows(val_ids, config.batch_size, context)
    available = max(1, (len(val_ids) - 1) // (config.batch_size * context))
    total = 0.0
    count = min(config.eval_batches, available)
    for _ in range(count):
        x, y = windows.next_batch()
        x, y = x.to(device), y.to(device)
        with autocast:
            logits = model(input_ids=x).logits  # (B, T, vocab)
        total += F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1)).item()
    model.train(was_training)
    return total / count


@torch.no_grad()
def generate_sample(
    model, tokenizer, prompt: str, length: int, temperature: float, context: int, seed: int, device: str, autocast
) -> str:
    """A sample that uses its own random stream, so sampling never shifts the training run's randomness."""
    was_training = model.training
    model.eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    if ids.numel() == 0:
        ids = torch.tensor([[tokenizer.eos_token_id or 0]], device=device)
    ids = ids[:, -(context - 1) :]
    new_tokens = max(1, min(length, context - ids.size(1)))
    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), autocast:
        torch.manual_seed(seed)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    model.train(was_training)
    return tokenizer.decode(out[0, ids.size(1) :], skip_special_tokens=True)


def _log_sample(store, model, tokenizer, config, context, device, autocast, step) -> None:
    text = generate_sample(
        model,
        tokenizer,
        config.sample_prompt,
        config.sample_length,
        config.temperature,
        context,
        config.seed + step,
        device,
        autocast,
    )
    store.log_sample(step, config.sample_prompt, text)


def _log_steps(store, dist, pending, rate: float, tokens_per_step: int, tokens_seen: int) -> int | None:
    """Log the pending steps' numbers; return the first step whose loss or gradient is not finite, if any.

    A non-finite gradient poisons that step's update even while its loss is still finite, so it counts as bad.
    """
    values = torch.stack([torch.stack([loss.float(), norm.float()]) for _, loss, norm, _ in pending]).tolist()
    tokens = tokens_seen - tokens_per_step * (len(pending) - 1)
    bad_step = None
    for (step, _, _, lr), (loss, norm) in zip(pending, values, strict=True):
        if not (math.isfinite(loss) and math.isfinite(norm)) and bad_step is None:
            bad_step = step
        if bad_step is None and dist.is_main:
            store.log_metrics(
                step,
                {
                    "train/loss": loss,
                    "lr": lr,
                    "grad_norm": norm,
                    "tokens_per_s": rate,
                    "tokens_seen": tokens,
                },
            )
        tokens += tokens_per_step
    return dist.agree_on_step(bad_step)


def _save(run_dir, store, dist, model, tokenizer, optimizers, batches, scaler, progress: Progress, config) -> None:
    if progress.saved_step == progress.step:
        return  # already saved at this step (a periodic save just before a stop or "checkpoint now")
    progress.saved_step = progress.step
    rank_state = dist.gather({"batches": batches.state_dict(), "rng": _rng_state()})
    if not dist.is_main:
        return
    state = {
        "step": progress.step,
        "tokens_seen": progress.tokens_seen,
        "elapsed_s": progress.elapsed_s,
        "best_val": progress.best_val,
        "best_step": progress.best_step,
        "last_val": progress.last_val,
        "optimizers": [optimizer.state_dict() for optimizer in optimizers],
        "scaler": scaler.state_dict() if scaler else None,
        "ranks": rank_state,
    }
    saved = checkpoints.save_checkpoint(run_dir, progress.step, model, tokenizer, state)
    checkpoints.prune_checkpoints(run_dir, config.keep_last, progress.best_step)
    store.log_event("info", "checkpoint", f"checkpoint saved at step {saved.step}.")
    store.set_meta(last_checkpoint=saved.step)


def _restore(checkpoint, optimizers, batches, scaler, dist) -> Progress:
    state = checkpoints.load_trainer_state(checkpoint)
    ranks = state["ranks"]
    if len(ranks) != dist.world_size:
        raise UserError(
            f"the checkpoint was written by {len(ranks)} process(es) but this run has {dist.world_size}; "
            f"resume with --nproc-per-node {len(ranks)}."
        )
    for optimizer, saved in zip(optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    if scaler and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    batches.load_state_dict(ranks[dist.rank]["batches"])
    _set_rng_state(ranks[dist.rank]["rng"])
    return Progress(
        step=state["step"],
        tokens_seen=state["tokens_seen"],
        elapsed_s=state["elapsed_s"],
        best_val=state["best_val"],
        best_step=state["best_step"],
        last_val=state["last_val"],
        saved_step=state["step"],
    )


def _recover_from_nan(run_dir, store, dist, bad_step, optimizers, batches, scaler, model, log) -> Progress:
    """Put back the last good checkpoint and pause, saying where the loss went bad."""
    checkpoint = checkpoints.latest_checkpoint(run_dir)
    if checkpoint is None:
        raise UserError(
            f"the loss became NaN or infinite at step {bad_step} before any checkpoint was saved; "
            "start again with a lower --lr or --grad-clip."
        )
    weights = type(model).from_pretrained(checkpoint.path, dtype=torch.float32).state_dict()
    model.load_state_dict(weights, strict=False)
    progress = _restore(checkpoint, optimizers, batches, scaler, dist)
    log(
        "error",
        "nan",
        f"the loss became NaN or infinite at step {bad_step}; paused and rolled back to the last good "
        f"checkpoint (step {checkpoint.step}). Resume to continue from there, or stop and lower --lr.",
    )
    return progress


def _read_commands(store: RunStore, control: Control) -> None:
    for command in store.pending_commands():
        control.command_ids.append(command.id)
        if command.kind == "stop":
            control.stop_reason = "stop requested"
        elif command.kind == "pause":
            control.pause, control.resume = True, False
        elif command.kind == "resume":
            control.pause, control.resume = False, True
        elif command.kind == "checkpoint":
            control.checkpoint = True
        elif command.kind == "sample":
            control.sample = True


def _wait_while_paused(store, dist, stop_signal, log) -> bool:
    """Sleep until resumed (True) or told to stop (False); the heartbeat keeps going meanwhile."""
    if dist.is_main:
        store.update_status("paused")
        log("info", "paused", "paused; resume to continue.")
    while True:
        control = Control(stop_reason=stop_signal.reason)
        if dist.is_main:
            _read_commands(store, control)
            for command_id in control.command_ids:
                store.mark_done(command_id)
        control = dist.agree(control)
        if control.stop_reason:
            stop_signal.reason = control.stop_reason
            return False
        if control.resume:
            if dist.is_main:
                store.update_status("running")
                log("info", "resumed", "resumed.")
            return True
        time.sleep(COMMAND_POLL_EVERY_S)


class _StopSignal:
    reason: str | None = None


def _catch_stop_signals() -> _StopSignal:
    """SIGTERM and Ctrl-C finish the current step, save a checkpoint and stop."""
    caught = _StopSignal()

    def handler(signum, frame):
        caught.reason = f"received {signal.Signals(signum).name}"

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    return caught


def _finish(store, dist, status: str) -> None:
    if dist.is_main:
        store.update_status(status)
        store.flush()


def _fail(store, dist, kind: str, message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    if dist.is_main:
        store.log_event("error", kind, message)
        store.update_status("failed")
        store.close()


def _logger(store, dist):
    def log(level: str, kind: str, message: str) -> None:
        if dist.is_main:
            store.log_event(level, kind, message)
            print(f"[{kind}] {message}", flush=True)

    return log


def _quiet_transformers() -> None:
    """train.log is for the run's own story: no download bars or advice meant for notebooks."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.partition(":")[0], dtype=dtype)


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
