"""Operations on the workbench's current model: the registry of their declarations, and the runner that applies one,
measures its effect and records it in the history.

An operation is a function `apply(loaded, **params) -> OperationResult` that changes the model (in place, or by
returning another one) and neither saves nor measures. `run_operation` does the rest: load the current model,
measure it (or reuse what its step recorded), apply, measure again, save the folder atomically, record the step
and make it current. A new operation is one `register(Operation(...))` call; the CLI makes a command of each
entry and the Surgery screen a form, both from its `parameters`. Imports torch only inside the operations.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoltui.engine.effects import Effect, EvalSettings, Measurement, measure
from smoltui.engine.errors import UserError
from smoltui.engine.operation_result import OperationResult
from smoltui.engine.parameters import Parameter, parse_values
from smoltui.engine.pruning import PRUNE_KINDS, prune
from smoltui.engine.quantization import SUPPORTED_BITS, quantize
from smoltui.engine.weight_selection import matching_parameters
from smoltui.engine.workbench import HistoryStep, Workbench

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel

Progress = Callable[[str], None]
# What the runner can hand an operation besides its parameters, when the operation names it in `context`.
CONTEXT_NAMES = ("seed", "workspace", "device", "dtype", "progress")


@dataclass(frozen=True)
class Operation:
    """One operation: its name and help, its parameters, and the function that applies it."""

    name: str
    help: str  # one sentence, shown by `smoltui ls`, the command's --help and the form
    apply: Callable[..., Any]  # apply(loaded, **params, **context) -> OperationResult
    parameters: tuple[Parameter, ...] = ()
    context: tuple[str, ...] = ()  # of CONTEXT_NAMES: the settings and helpers `apply` also takes
    check: Callable[[dict[str, Any]], None] | None = None  # refuses a bad combination of parsed parameters
    needs_model: bool = True  # False: `apply` gets loaded=None (import starts from any model or none)
    records_step: bool = True  # False: apply(workbench, **params) -> str, a message; no model is made (export)

    def parse(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters from text or values, checked; a UserError names the first bad one."""
        values = parse_values(self.parameters, given)
        if self.check is not None:
            self.check(values)
        return values


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Add an operation to the registry (a later one of the same name replaces it) and return it."""
    unknown = set(operation.context) - set(CONTEXT_NAMES)
    if unknown:
        raise ValueError(f"unknown context {sorted(unknown)}; an operation may take {CONTEXT_NAMES}")
    OPERATIONS[operation.name] = operation
    return operation


def find_operation(name: str) -> Operation:
    if name not in OPERATIONS:
        raise UserError(f"unknown operation {name!r}; the operations are: {', '.join(OPERATIONS)}.", field="operation")
    return OPERATIONS[name]


def run_operation(
    workbench: Workbench,
    name: str,
    params: Mapping[str, Any],
    *,
    progress: Progress | None = None,
    evaluate: bool = True,
) -> HistoryStep:
    """Apply operation `name` to the current model and record it (see the module docstring); the new step.

    `evaluate` False measures only parameters and bytes (no perplexity, sample or speed) and needs no dataset.
    An operation that makes no model (export) returns the current step unchanged.
    """
    say = progress or (lambda _message: None)
    operation = find_operation(name)
    values = operation.parse(params)
    if not operation.records_step:
        say(operation.apply(workbench, **values))
        return workbench.require_model()
    settings = workbench.settings()
    current = workbench.require_model() if operation.needs_model else workbench.current()
    basis = EvalSettings.from_settings(settings, workbench.require_dataset()) if evaluate else None
    loaded = load_step(workbench, current, say) if operation.needs_model else None
    before = measure_before(workbench, current, loaded, basis, say)
    context = {
        "seed": settings["seed"],
        "workspace": workbench.workspace,
        "device": settings["device"],
        "dtype": settings["dtype"],
        "progress": say,
    }
    say(f"{name}: applying")
    result = operation.apply(loaded, **values, **{key: context[key] for key in operation.context})
    return _record(workbench, name, values, current, before, result, basis, say)


def import_loaded(
    workbench: Workbench, loaded: LoadedModel, *, progress: Progress | None = None, evaluate: bool = True
) -> HistoryStep:
    """Make a model already in memory (the session's) the current model, recorded as an import of its source.

    Unlike `import SOURCE` it keeps the exact weights (a preset's fresh weights, a model edited since it was
    loaded); `loaded` is only read. UserError when it is the current step's own model.
    """
    say = progress or (lambda _message: None)
    current = workbench.current()
    if is_current_model(workbench, loaded):
        raise UserError(f"the loaded model is step {current.step}'s, already the current model; nothing to import.")
    basis = EvalSettings.from_settings(workbench.settings(), workbench.require_dataset()) if evaluate else None
    before = measure_before(workbench, current, None, basis, say)
    summary = loaded.summary
    result = OperationResult(
        loaded,
        f"imported the loaded {loaded.source} ({loaded.kind_label}): {summary.architecture}, "
        f"{summary.total_params:,} parameters",
        {"kind": loaded.kind, "architecture": summary.architecture, "layers": summary.layers, "vocab": summary.vocab},
    )
    return _record(workbench, "import", {"source": loaded.source}, current, before, result, basis, say)


def _record(
    workbench: Workbench,
    name: str,
    values: Mapping[str, Any],
    current: HistoryStep | None,
    before: Measurement | None,
    result: OperationResult,
    basis: EvalSettings | None,
    say: Progress,
) -> HistoryStep:
    """Measure the operation's model, save it atomically and record it as the next step, made current."""
    after = measure(result.loaded, basis, workspace=workbench.workspace, progress=say)
    folder = workbench.partial_folder()
    try:
        say("saving the model")
        save_model(result.loaded, folder)
        return workbench.commit_step(
            operation=name,
            params=dict(values),
            parent=None if current is None else current.step,
            folder=folder,
            summary=result.summary,
            effect=Effect(before, after).to_json(),
            details=result.details,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone already when the step was committed


def is_current_model(workbench: Workbench, loaded: LoadedModel) -> bool:
    """Whether `loaded` was read from the current step's folder (importing it would add nothing)."""
    current = workbench.current()
    if current is None or current.folder is None or loaded.folder is None:
        return False
    try:
        return Path(loaded.folder).resolve() == current.folder.resolve()
    except OSError:
        return False


def load_step(workbench: Workbench, step: HistoryStep, progress: Progress | None = None) -> LoadedModel:
    """The model of a history step, on the workbench's device and in its dtype."""
    from smoltui.engine.models import load_model

    settings = workbench.settings()
    return load_model(
        str(step.folder),
        device=settings["device"],
        dtype=settings["dtype"],
        workspace=workbench.workspace,
        progress=progress,
    )


def measure_before(
    workbench: Workbench,
    current: HistoryStep | None,
    loaded: LoadedModel | None,
    basis: EvalSettings | None,
    progress: Progress | None = None,
) -> Measurement | None:
    """The current model's measurement: what its step recorded when taken the same way, else measured now."""
    if current is None:
        return None
    recorded = current.effect and current.effect.get("after")
    if recorded:
        measurement = Measurement.from_json(recorded)
        if basis is None or measurement.basis == basis.to_json():
            return measurement
    if loaded is None:
        loaded = load_step(workbench, current, progress)
    return measure(loaded, basis, workspace=workbench.workspace, progress=progress)


def save_model(loaded: LoadedModel, folder: Path) -> None:
    """A standard Hugging Face folder: the weights as safetensors (the LM head with them) and the tokenizer."""
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)


# -- the operations ---------------------------------------------------------------------------------------


def import_model(
    loaded: LoadedModel | None, *, source: str, seed: int, workspace: Path, device: str, dtype: str, progress: Progress
) -> OperationResult:
    """Any model source becomes the current model."""
    from smoltui.engine.models import load_model

    new = load_model(source, device=device, dtype=dtype, seed=seed, workspace=workspace, progress=progress)
    summary = new.summary
    return OperationResult(
        new,
        f"imported {source} ({new.kind_label}): {summary.architecture}, {summary.total_params:,} parameters",
        {"kind": new.kind, "architecture": summary.architecture, "layers": summary.layers, "vocab": summary.vocab},
    )


def export_model(workbench: Workbench, *, directory: str) -> str:
    """Copy the current model's folder to `directory`, which must be new or empty; returns what it did."""
    current = workbench.require_model()
    target = Path(directory).expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{directory} exists and is not empty; pass a new folder or empty that one.", field="directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        shutil.copytree(current.folder, temporary)
        os.replace(temporary, target)  # replaces an empty folder; a reader never sees half a model
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return f"exported step {current.step} ({current.operation}) to {target}"


def edit_parameters(
    loaded: LoadedModel,
    *,
    pattern: str,
    zero: bool = False,
    random: bool = False,
    scale: float | None = None,
    noise: float | None = None,
    seed: int = 0,
) -> OperationResult:
    """Zero, randomise, scale or add noise to every parameter whose name matches the regular expression."""
    import torch

    chosen = matching_parameters(loaded.model, pattern, "pattern")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in chosen:
            if zero:
                parameter.zero_()
            elif scale is not None:
                parameter.mul_(scale)
            else:
                drawn = torch.randn(parameter.shape, generator=generator).to(parameter.device, parameter.dtype)
                if noise is not None:
                    parameter.add_(drawn * noise)
                else:  # fresh values with the tensor's own mean and spread, so the scale of the model stays
                    values = parameter.float()
                    spread = values.std() if values.numel() > 1 else values.abs().mean()
                    parameter.copy_(drawn * spread + values.mean())
    count = sum(parameter.numel() for _, parameter in chosen)
    if zero:
        verb = "zeroed"
    elif scale is not None:
        verb = f"scaled by {scale:g}"
    elif noise is not None:
        verb = f"added noise of std {noise:g} to"
    else:
        verb = "randomised"
    names = [name for name, _ in chosen]
    return OperationResult(
        loaded,
        f"{verb} {len(chosen)} tensors ({count:,} parameters) matching '{pattern}'",
        {"tensors": len(chosen), "parameters": count, "names": names[:50]},
    )


def _one_edit(values: dict[str, Any]) -> None:
    given = [values["zero"], values["random"], values["scale"] is not None, values["noise"] is not None]
    if sum(given) != 1:
        raise UserError("edit takes exactly one of --zero, --random, --scale X or --noise STD; pick one.")


def reinit_model(loaded: LoadedModel, *, layers: int | None = None, seed: int = 0) -> OperationResult:
    """Fresh weights from the model's config (its initialiser, seeded), optionally with another number of layers."""
    import torch
    from transformers import AutoModelForCausalLM

    from smoltui.engine.models import summarize

    config = copy.deepcopy(loaded.model.config)
    old_layers = loaded.summary.layers
    if layers is not None:
        _set_depth(config, old_layers, layers)
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    placement = loaded.placement
    model = model.to(device=placement.torch_device, dtype=placement.torch_dtype).eval()
    new = dataclasses.replace(loaded, model=model, summary=summarize(model))
    depth = f", {old_layers} → {new.summary.layers} layers" if new.summary.layers != old_layers else ""
    return OperationResult(
        new,
        f"fresh weights for {new.summary.architecture} from its config (seed {seed}){depth}",
        {"layers_before": old_layers, "layers_after": new.summary.layers, "seed": seed},
    )


def _set_depth(config, old_layers: int, layers: int) -> None:
    """Give the config `layers` blocks; per-layer lists (layer_types, no_rope_layers…) repeat their pattern."""
    text_config = config.get_text_config(decoder=True)
    text_config.num_hidden_layers = layers  # every family's config maps its own name (n_layer…) onto this one
    for name, value in list(vars(text_config).items()):
        if "layer" in name and isinstance(value, list) and len(value) == old_layers and old_layers:
            setattr(text_config, name, [value[index % old_layers] for index in range(layers)])


register(
    Operation(
        "import",
        "Make a model current: a preset, a bundled model (smollm2-135m-instruct), a .gguf file, a folder or a Hub id.",
        import_model,
        (Parameter("source", "str", "The model source to import.", required=True),),
        context=("seed", "workspace", "device", "dtype", "progress"),
        needs_model=False,
    )
)
register(
    Operation(
        "export",
        "Write the current model as a standard Hugging Face folder (new or empty) that transformers loads.",
        export_model,
        (Parameter("directory", "str", "The folder to write, new or empty.", required=True),),
        records_step=False,
    )
)
register(
    Operation(
        "edit",
        "Zero, randomise, scale or add noise to the parameters whose names match a regular expression.",
        edit_parameters,
        (
            Parameter("pattern", "str", "A regular expression searched in each parameter's name.", required=True),
            Parameter("zero", "flag", "Set the matching parameters to zero.", option="--zero"),
            Parameter(
                "random", "flag", "Replace them with random values of their own mean and spread.", option="--random"
            ),
            Parameter("scale", "float", "Multiply them by X.", option="--scale", metavar="X"),
            Parameter("noise", "float", "Add Gaussian noise of this std.", option="--noise", metavar="STD", minimum=0),
        ),
        context=("seed",),
        check=_one_edit,
    )
)
register(
    Operation(
        "reinit",
        "Fresh weights from the model's config (seeded by the seed setting), optionally with another depth.",
        reinit_model,
        (
            Parameter(
                "layers",
                "int",
                "The number of layers (default: as now).",
                option="--layers",
                metavar="N",
                minimum=1,
                maximum=1024,
            ),
        ),  # fmt: skip
        context=("seed",),
    )
)
WHERE = Parameter(
    "where",
    "str",
    "A regular expression over parameter names limiting the candidates (e.g. mlp, or layers\\.[0-3]\\.); "
    "name the embeddings or the LM head to include them.",
    option="--where",
    metavar="PATTERN",
)
register(
    Operation(
        "prune",
        "Remove the smallest weights (zeroed), whole attention heads or whole layers (the model gets smaller).",
        lambda loaded, *, amount, kind, where: prune(loaded, amount=amount, kind=kind, where=where or None),
        (
            Parameter(
                "amount",
                "float",
                "The fraction to remove: of each weight matrix, of each layer's heads (per KV group), or of the "
                "layers; 0.3 is 30%.",
                required=True,
                option="--amount",
                metavar="P",
                minimum=0,
                maximum=1,
            ),
            Parameter(
                "kind",
                "str",
                "What goes: the smallest weights (unstructured), whole attention heads, or whole layers.",
                default="unstructured",
                option="--kind",
                choices=PRUNE_KINDS,
            ),
            WHERE,
        ),
    )
)
register(
    Operation(
        "quantize",
        "Round the linear weights to 8 or 4 bits per output channel (weight-only, kept dequantized; the report "
        "gives the packed size).",
        lambda loaded, *, bits, where: quantize(loaded, bits=bits, where=where or None),
        (
            Parameter(
                "bits",
                "int",
                f"Bits per weight: {' or '.join(map(str, SUPPORTED_BITS))}.",
                required=True,
                option="--bits",
                metavar="N",
                minimum=min(SUPPORTED_BITS),
                maximum=max(SUPPORTED_BITS),
            ),
            WHERE,
        ),
    )
)
