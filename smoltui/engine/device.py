"""Device and dtype choice: `auto` picks cuda, then mps, then cpu; explicit choices are checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


@dataclass(frozen=True)
class Placement:
    """Where a model lives and in which precision."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # "fp32", "bf16" or "fp16"

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, _DTYPE_NAMES[self.dtype])


def resolve_device(name: str = "auto") -> str:
    """Return a concrete device name for `name`, or raise UserError when that device is not there."""
    import torch

    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    kind, _, index = name.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError("cuda was asked for but torch sees no GPU; pass --device cpu or --device auto.")
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise UserError(
                    f"{name} was asked for but torch sees {torch.cuda.device_count()} GPU(s); "
                    f"pass --device cuda:0 … cuda:{torch.cuda.device_count() - 1}."
                )
        return name
    if kind == "mps" and not index:
        if not _mps_available():
            raise UserError("mps was asked for but torch sees no Apple GPU; pass --device cpu or --device auto.")
        return "mps"
    raise UserError(f"unknown device {name!r}; pass one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")


def resolve_dtype(name: str, device: str) -> str:
    """Return "fp32", "bf16" or "fp16" for `name` on `device`.

    `auto` is bf16 where the device runs it natively for inference (CUDA with bf16 support, MPS), and fp32
    on CPU, where bf16 matmuls are emulated on most processors.
    """
    import torch

    name = _DTYPE_ALIASES.get(name.strip().lower(), name.strip().lower())
    kind = device.partition(":")[0]
    if name == "auto":
        if kind == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        if kind == "mps":
            return "bf16"
        return "fp32"
    if name not in _DTYPE_NAMES:
        raise UserError(f"unknown dtype {name!r}; pass one of {', '.join(DTYPE_CHOICES)}.")
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU does not support bf16; pass --dtype fp16 or --dtype fp32.")
    return name


def resolve_precision(precision: str, device: str) -> str:
    """The autocast precision of training on `device`: `auto` is bf16 on CUDA and fp32 elsewhere (bf16 autocast
    measured no faster on the CPU: see README)."""
    kind = device.partition(":")[0]
    if precision == "auto":
        if kind == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "fp16" and kind != "cuda":
        raise UserError(
            "fp16 training needs a CUDA GPU (its loss scaler is CUDA-only); pass --precision bf16 or fp32.",
            field="precision",
        )
    return precision


def resolve_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    concrete = resolve_device(device)
    return Placement(concrete, resolve_dtype(dtype, concrete))


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
