"""Batches of token windows for training and evaluation, and the check that a corpus holds one window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import torch

    from smoltui.engine.data import TokenizedCorpus


def check_fits_context(tokenized: TokenizedCorpus, context: int) -> None:
    """Refuse a corpus whose train or validation split cannot hold one window of `context` tokens plus one."""
    _require_window(len(tokenized.train), context, "the training split")
    if tokenized.val_fraction > 0:
        _require_window(len(tokenized.val), context, "the validation split")


def _require_window(n_tokens: int, context: int, what: str) -> None:
    if n_tokens < context + 1:
        raise UserError(
            f"{what} has {n_tokens} tokens, but one context window of {context} needs {context + 1}; "
            "use a longer corpus or a shorter --context."
        )


def _batch_from_starts(ids: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, each (B, T) int64 on the CPU, from one fancy-indexed read of `ids`."""
    import torch

    windows = ids[starts[:, None] + np.arange(context + 1)]  # (B, T + 1)
    return torch.from_numpy(windows[:, :-1].astype(np.int64)), torch.from_numpy(windows[:, 1:].astype(np.int64))


class RandomWindows:
    """Batches of windows at random offsets (nanoGPT's get_batch), reproducible from `seed` and resumable."""

    def __init__(self, ids: np.ndarray, batch_size: int, context: int, seed: int) -> None:
        import torch

        _require_positive(batch_size=batch_size, context=context)
        _require_window(len(ids), context, "the token array")
        self.ids, self.batch_size, self.context = np.asarray(ids), batch_size, context
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> RandomWindows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        starts = torch.randint(len(self.ids) - self.context, (self.batch_size,), generator=self.generator)
        return _batch_from_starts(self.ids, starts.numpy(), self.context)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": len(self.ids), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require_same_tokens(state, len(self.ids))
        self.generator.set_state(state["generator"])


class SequentialWindows:
    """Batches of non-overlapping windows in order, wrapping to the start at the end (counted in `epoch`).

    Under data parallelism each step reads `batch_size * world_size` consecutive windows, of which rank r takes
    the r-th `batch_size`: together the ranks read what one process with the whole batch would, none twice.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, context: int, *, rank: int = 0, world_size: int = 1) -> None:
        _require_positive(batch_size=batch_size, context=context, world_size=world_size)
        _require_window(len(ids), context, "the token array")
        self.ids, self.batch_size, self.context = np.asarray(ids), batch_size, context
        self.rank, self.world_size = rank, world_size
        self.n_windows = (len(ids) - 1) // context
        self.epoch, self.position = divmod(rank * batch_size, self.n_windows)  # this rank's next window

    def __iter__(self) -> SequentialWindows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        served = self.epoch * self.n_windows + self.position
        windows = (served + np.arange(self.batch_size)) % self.n_windows
        self.epoch, self.position = divmod(served + self.batch_size * self.world_size, self.n_windows)
        return _batch_from_starts(self.ids, windows * self.context, self.context)

    def state_dict(self) -> dict[str, Any]:
        return {
            "tokens": len(self.ids),
            "position": self.position,
            "epoch": self.epoch,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _require_same_tokens(state, len(self.ids))
        epoch, position = int(state["epoch"]), int(state["position"])
        if "rank" not in state:  # saved before ranks had shares: every rank stood at the next step's first window
            epoch, position = divmod(epoch * self.n_windows + position + self.rank * self.batch_size, self.n_windows)
        elif (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise UserError(
                f"the saved batch position is for rank {state['rank']} of {state['world_size']} processes but this "
                f"is rank {self.rank} of {self.world_size}; resume with --nproc-per-node {state['world_size']}."
            )
        self.epoch, self.position = epoch, position


def _require_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise UserError(f"{name.replace('_', ' ')} must be at least 1, got {value}; pass a positive number.")


def _require_same_tokens(state: dict[str, Any], n_tokens: int) -> None:
    if state["tokens"] != n_tokens:
        raise UserError(
            f"the saved batch position is for {state['tokens']} tokens but this corpus has {n_tokens}; "
            "resume with the same corpus and tokenizer."
        )
