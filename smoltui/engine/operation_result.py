"""What an operation on a model returns: the model after it, a one-line summary and the numbers for the history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel


@dataclass(frozen=True)
class OperationResult:
    loaded: LoadedModel  # the model after the operation (may be the same object, edited in place)
    summary: str  # one line: what changed, e.g. "pruned 30% of 84 linear weights (unstructured)"
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able numbers for the history and --json
