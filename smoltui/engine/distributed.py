"""Data-parallel plumbing for the trainer under torchrun: one process per device, rank 0 writes the run store.

With a single process every method is a cheap no-op, so the training loop reads the same either way.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> Distributed:
        """Join the process group torchrun describes in the environment, or stand alone."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend=backend)
        return cls(rank, local_rank, world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def device_for(self, device: str) -> str:
        """Each rank takes its own GPU; CPU ranks share the CPU."""
        if self.active and device.startswith("cuda"):
            return f"cuda:{self.local_rank}"
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def no_sync(self, model: torch.nn.Module, last_micro_step: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.active and not last_micro_step:
            return model.no_sync()
        return contextlib.nullcontext()

    def agree(self, control):
        """Every rank acts on rank 0's commands; a stop signal caught by any rank stops all of them."""
        if not self.active:
            return control
        flags = [f.name for f in fields(control) if isinstance(getattr(control, f.name), bool)]
        local = torch.tensor([float(getattr(control, name)) for name in flags] + [float(bool(control.stop_reason))])
        shared = local.clone()
        torch_dist.broadcast(shared, src=0)
        stops = local[-1:].clone()
        torch_dist.all_reduce(stops, op=torch_dist.ReduceOp.MAX)
        for name, value in zip(flags, shared[:-1].tolist(), strict=True):
            setattr(control, name, bool(value))
        if (shared[-1] or stops[0]) and not control.stop_reason:
            control.stop_reason = "stop requested on another rank"
        return control

    def agree_on_step(self, step: int | None) -> int | None:
        """The earliest step any rank reports (e.g. the first non-finite loss), or None when none does."""
        if not self.active:
            return step
        value = torch.tensor([math.inf if step is None else float(step)], dtype=torch.float64)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MIN)
        return None if math.isinf(value.item()) else int(value.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(gathered, obj)
        return gathered

    def close(self, *, finished_together: bool) -> None:
        """Leave the process group. After a normal end, every rank waits for the others first: a rank that tore its
        connections down while rank 0 still wrote the final checkpoint was seen to abort in gloo ("terminate called
        without an active exception"). After an error there is no waiting: the other ranks may be gone."""
        if not (self.active and torch_dist.is_initialized()):
            return
        if finished_together:
            torch_dist.barrier()
        torch_dist.destroy_process_group()
