"""Your own tools: self-contained scripts (PEP 723 header with their own dependencies) run through `uv run --script`
on the workbench's current model.

A tool gets the current model's folder, the dataset and a fresh output folder, both as environment variables
(SMOLTUI_MODEL, SMOLTUI_DATASET, SMOLTUI_OUTPUT) and as the first arguments (--model, --dataset, --output), then
the arguments the person gave. A model the tool saves in the output folder (a save_pretrained folder; the
tokenizer may be left out) becomes a history step named "tool:<script>" with its arguments and its effect, like
any built-in operation; a tool that fails is recorded as a failed step and leaves the current model as it was.
Tools found in `<workspace>/tools/*.py` can be run by name.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from smoltui.engine.effects import Effect, EvalSettings, measure
from smoltui.engine.errors import UserError
from smoltui.engine.operations import Progress, measure_before
from smoltui.engine.workbench import HistoryStep, Workbench

TOOLS_DIR = "tools"
OUTPUTS_DIR = "outputs"  # under the workbench: what a tool wrote that is not a model
MODEL_ENV, DATASET_ENV, OUTPUT_ENV = "SMOLTUI_MODEL", "SMOLTUI_DATASET", "SMOLTUI_OUTPUT"
_TAIL_LINES = 20


@dataclass(frozen=True)
class Tool:
    name: str  # the script's file name without .py
    path: Path
    description: str  # the first line of the script's docstring, "" without one


def list_tools(workspace: Path) -> list[Tool]:
    """The scripts in `<workspace>/tools/`, by name."""
    folder = workspace / TOOLS_DIR
    if not folder.is_dir():
        return []
    return [Tool(path.stem, path, _description(path)) for path in sorted(folder.glob("*.py"))]


def _description(path: Path) -> str:
    try:
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    return docstring.strip().splitlines()[0] if docstring else ""


def find_tool(script: str, workspace: Path) -> Path:
    """A script path as given, else a tool of the workspace by name (with or without .py)."""
    given = Path(script).expanduser()
    if given.is_file():
        return given.absolute()
    named = workspace / TOOLS_DIR / (script if script.endswith(".py") else f"{script}.py")
    if named.is_file():
        return named
    known = ", ".join(tool.name for tool in list_tools(workspace)) or "none yet"
    raise UserError(
        f"no such tool: {script}; pass a script's path or the name of one in {workspace / TOOLS_DIR} ({known}).",
        field="script",
    )


def uv_command() -> list[str]:
    """How to call uv: the `uv` on PATH, else the uv module of this Python."""
    found = shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    raise UserError("tools run through uv, which is not installed; install it (pip install uv) and run the tool again.")


def run_tool(
    workbench: Workbench,
    script: str,
    args: Sequence[str] = (),
    *,
    progress: Progress | None = None,
    output: Progress | None = None,
    evaluate: bool = True,
) -> HistoryStep | None:
    """Run a tool on the current model (see the module docstring): the step of the model it wrote, or None.

    Each line the tool prints goes to `output` (default: `progress`) as it comes.
    """
    from smoltui.engine.model_folders import has_tokenizer_files
    from smoltui.engine.models import load_model

    say = progress or (lambda _message: None)
    echo = output or say
    path = find_tool(script, workbench.workspace)
    settings = workbench.settings()
    current = workbench.require_model()
    basis = EvalSettings.from_settings(settings, workbench.require_dataset()) if evaluate else None
    dataset = settings["dataset"] or ""
    operation, params = f"tool:{path.stem}", {"script": str(path), "args": list(args)}
    folder = workbench.partial_folder()
    try:
        command = [*uv_command(), "run", "--script", str(path), "--model", str(current.folder)]
        command += [*(["--dataset", dataset] if dataset else []), "--output", str(folder), *args]
        environment = os.environ | {MODEL_ENV: str(current.folder), DATASET_ENV: dataset, OUTPUT_ENV: str(folder)}
        say(f"running {path.name} through uv")
        code, tail = _run(command, environment, echo)
        if code != 0:
            last = tail[-1] if tail else "no output"
            _record_failure(workbench, operation, params, current, f"exit status {code}: {last}")
            raise UserError(
                f"tool {path.name} failed with exit status {code}; the current model is still step {current.step}. "
                "Read its output above, fix it and run it again."
            )
        if not (folder / "config.json").is_file():
            _keep_outputs(workbench, folder, path.stem, say)
            return None
        say("loading the model the tool wrote")
        tokenizer = None if has_tokenizer_files(folder) else str(current.folder)
        try:
            loaded = load_model(
                str(folder),
                tokenizer=tokenizer,
                device=settings["device"],
                dtype=settings["dtype"],
                workspace=workbench.workspace,
                progress=say,
            )
        except UserError as error:
            _record_failure(workbench, operation, params, current, f"wrote an unreadable model: {error}")
            raise UserError(
                f"tool {path.name} wrote a model smoltui cannot load ({error}); "
                f"the current model is still step {current.step}."
            ) from None
        if tokenizer is not None:
            loaded.tokenizer.save_pretrained(folder)
        before = measure_before(workbench, current, None, basis, say)
        after = measure(loaded, basis, workspace=workbench.workspace, progress=say)
        arguments = " ".join(args)
        return workbench.commit_step(
            operation=operation,
            params=params,
            parent=current.step,
            folder=folder,
            summary=f"{path.name} {arguments}".rstrip() + f": {after.params:,} parameters",
            effect=Effect(before, after).to_json(),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone already when it became a step or was kept


def _run(command: list[str], environment: dict[str, str], echo: Progress) -> tuple[int, list[str]]:
    """Run the tool, handing each line it prints to `echo`; its exit status and its last lines."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            text=True,
            errors="replace",
        )
    except OSError as error:
        raise UserError(f"cannot start uv ({error.strerror}); check that uv is installed and runs.") from None
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            echo(line)
        return process.wait(), list(tail)
    finally:
        if process.poll() is None:  # interrupted: the tool must not outlive the run
            process.kill()
            process.wait()


def _record_failure(workbench: Workbench, operation: str, params: dict, current: HistoryStep, summary: str) -> None:
    workbench.commit_step(
        operation=operation, params=params, parent=current.step, folder=None, summary=summary, status="failed"
    )


def _keep_outputs(workbench: Workbench, folder: Path, name: str, say: Progress) -> None:
    """Move what a tool wrote, when it is not a model, where the person can find it."""
    if not any(folder.iterdir()):
        say("the tool wrote no model; the current model stays as it was")
        return
    outputs = workbench.root / OUTPUTS_DIR
    outputs.mkdir(mode=0o700, exist_ok=True)
    kept = outputs / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    os.replace(folder, kept)
    say(f"the tool wrote no model; what it wrote is in {kept}")
