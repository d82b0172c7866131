"""Training hooks, enabled by name: forward hooks that measure activations, update hooks that edit gradients.

Forward hooks (`activation_stats[:every]`) record mean, std and max |x| of each block's output on the steps they
are due, and never change an output. Update hooks run between backward and the optimizer step:
`clip_per_layer:MAX` clips each block's gradient norm, `freeze:PREFIX` keeps parameters whose name starts with
PREFIX fixed, `grad_noise:STD` adds annealed Gaussian noise (std / (1 + step) ** 0.55, Neelakantan et al.).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from smoltui.engine.config import parse_hook
from smoltui.engine.errors import UserError
from smoltui.engine.run_contract import activation_metric

DEFAULT_ACTIVATION_EVERY = 50


@dataclass
class ActivationStats:
    """Forward hooks on every block, attached only for the steps on which statistics are due."""

    blocks: list[nn.Module]
    every: int
    _handles: list = field(default_factory=list)
    _stats: dict[str, torch.Tensor] = field(default_factory=dict)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def attach(self) -> None:
        for index, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_hook(self._recorder(index)))

    def detach(self) -> dict[str, float]:
        """Remove the hooks and return the statistics gathered since attach(), as plain floats."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        stats = {name: float(value) for name, value in self._stats.items()}
        self._stats.clear()
        return stats

    def _recorder(self, index: int) -> Callable:
        def record(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            with torch.no_grad():
                values = hidden.detach().float()  # (B, T, hidden)
                # Only the first micro-batch of a step is recorded: the statistics describe one forward pass.
                self._stats.setdefault(activation_metric(index, "mean"), values.mean())
                self._stats.setdefault(activation_metric(index, "std"), values.std())
                self._stats.setdefault(activation_metric(index, "absmax"), values.abs().max())

        return record


@dataclass
class UpdateHooks:
    """Gradient transforms applied in order between backward and the optimizer step."""

    transforms: list[Callable[[int], None]]

    def apply(self, step: int) -> None:
        for transform in self.transforms:
            transform(step)


@dataclass
class Hooks:
    activations: ActivationStats | None
    updates: UpdateHooks
    active: list[str]


def build_hooks(specs: list[str], model: nn.Module, blocks: list[nn.Module]) -> Hooks:
    """Turn the config's hook names into live hooks on `model` (freezing happens here, before the optimizer)."""
    activations = None
    transforms: list[Callable[[int], None]] = []
    for spec in specs:
        name, argument = parse_hook(spec)
        if name == "activation_stats":
            activations = ActivationStats(list(blocks), int(argument or DEFAULT_ACTIVATION_EVERY))
        elif name == "freeze":
            _freeze(model, argument)
        elif name == "clip_per_layer":
            transforms.append(_clip_per_block(blocks, float(argument or 1.0)))
        elif name == "grad_noise":
            transforms.append(_gradient_noise(model, float(argument or 0.01)))
    return Hooks(activations, UpdateHooks(transforms), list(specs))


def _freeze(model: nn.Module, prefix: str) -> None:
    frozen = [p for name, p in model.named_parameters() if name.startswith(prefix)]
    if not frozen:
        examples = ", ".join(name for name, _ in list(model.named_parameters())[:3])
        raise UserError(f"freeze:{prefix} matches no parameter; use a name prefix such as {examples}.", field="hooks")
    for parameter in frozen:
        parameter.requires_grad_(False)


def _clip_per_block(blocks: list[nn.Module], max_norm: float) -> Callable[[int], None]:
    def clip(step: int) -> None:
        for block in blocks:
            grads = [p for p in block.parameters() if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, max_norm)

    return clip


def _gradient_noise(model: nn.Module, std: float) -> Callable[[int], None]:
    def add_noise(step: int) -> None:
        scale = std / (1 + step) ** 0.55
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter.grad.add_(torch.randn_like(parameter.grad) * scale)

    return add_noise
