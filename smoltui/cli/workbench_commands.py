"""The workbench commands, as smolbox users know them: the state (`state`, `set`, `get`, `init`, `reset`), the
history (`history`, `checkout`, `undo`), one command per operation of engine.operations.OPERATIONS (`import`,
`export`, `edit`, `reinit`, …, built from their declarations), `tweak` (sampling only, never saved), `ls`,
and `tool run` for your own scripts.

Every operation prints its effect (perplexity, parameters, bytes and tokens/s before and after, and the two
samples side by side), or the step as JSON with --json. Imports torch only inside the commands.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.cli.workbench_views import history_table, print_step, step_json, write_json
from smoltui.engine.operations import OPERATIONS, Operation
from smoltui.engine.parameters import Parameter
from smoltui.engine.workbench import SETTING_NAMES, SETTINGS, Workbench

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON, for scripts.")]
NoEvalOption = Annotated[
    bool,
    typer.Option(
        "--no-eval",
        help="Skip perplexity, sample and speed (parameters and bytes are still counted); needs no dataset.",
    ),
]
SETTINGS_HELP = "; ".join(f"{s.name}: {s.help}" for s in SETTINGS)


@contextmanager
def opened(workspace: Path | None) -> Iterator[Workbench]:
    workbench = Workbench.open(workspace)
    try:
        yield workbench
    finally:
        workbench.close()


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the status line reports the steps; bars on stderr would tear it


def run_and_show(workspace: Path | None, name: str, given: dict[str, Any], as_json: bool, no_eval: bool) -> None:
    """Run one operation with its steps on a status line, then print the step and its effect."""
    from smoltui.engine.operations import run_operation

    operation = OPERATIONS[name]
    with opened(workspace) as workbench:
        if not operation.records_step:
            message = operation.apply(workbench, **operation.parse(given))
            if as_json:
                write_json({"message": message, "current": step_json(workbench.require_model())})
            else:
                console.print(message, highlight=False, soft_wrap=True)
            return
        _quiet_transformers()
        with error_console.status(f"{name}…") as status:
            step = run_operation(workbench, name, given, progress=status.update, evaluate=not no_eval)
        _show(step, as_json)


def _show(step, as_json: bool) -> None:
    if as_json:
        write_json(step_json(step, step.step))
    else:
        print_step(console, step)


def _cli_parameter(parameter: Parameter) -> inspect.Parameter:
    """The command's argument or option for one declared parameter; numbers come as text that `parse` reads."""
    if parameter.option is None:
        help_text = parameter.help
        annotation: Any = Annotated[
            str if parameter.required else str | None,
            typer.Argument(help=help_text, metavar=parameter.name.upper(), show_default=False),
        ]
        default = inspect.Parameter.empty if parameter.required else None
    elif parameter.kind == "flag":
        annotation, default = Annotated[bool, typer.Option(parameter.option, help=parameter.help)], False
    else:
        metavar = parameter.metavar or parameter.kind.upper()
        option = typer.Option(parameter.option, help=parameter.help, metavar=metavar, show_default=False)
        annotation, default = Annotated[str | None, option], None
    return inspect.Parameter(parameter.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _register_operation_command(operation: Operation) -> None:
    def command(**given: Any) -> None:
        as_json, no_eval, workspace = given.pop("as_json"), given.pop("no_eval", False), given.pop("workspace")
        run_and_show(workspace, operation.name, given, as_json, no_eval)

    common = [("as_json", JsonOption, False), ("workspace", WorkspaceOption, None)]
    if operation.records_step:
        common.insert(1, ("no_eval", NoEvalOption, False))
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            *(_cli_parameter(parameter) for parameter in operation.parameters),
            *(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in common),
        ]
    )
    command.__name__ = f"{operation.name}_command"
    command.__doc__ = operation.help
    app.command(operation.name, help=operation.help)(reports_user_errors(command))


def usage(operation: Operation) -> str:
    """How the operation is called, e.g. "PATTERN [--zero] [--scale X]"."""
    parts = []
    for parameter in operation.parameters:
        if parameter.option is None:
            parts.append(parameter.name.upper() if parameter.required else f"[{parameter.name.upper()}]")
        elif parameter.kind == "flag":
            parts.append(f"[{parameter.option}]")
        else:
            parts.append(f"[{parameter.option} {parameter.metavar or parameter.kind.upper()}]")
    return " ".join(parts)


for _operation in OPERATIONS.values():
    _register_operation_command(_operation)


@app.command()
@reports_user_errors
def state(as_json: JsonOption = False, workspace: WorkspaceOption = None) -> None:
    """The current model, the dataset and every setting."""
    from rich.table import Table

    with opened(workspace) as workbench:
        settings, current, steps = workbench.settings(), workbench.current(), len(workbench.history())
    if as_json:
        write_json({"current": current and step_json(current, current.step), "settings": settings, "steps": steps})
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    if current is None:
        facts.add_row("model", "none: `smoltui import SOURCE` makes one current")
    else:
        facts.add_row("model", f"step {current.step} ({current.operation}): {current.summary}")
        facts.add_row("folder", str(current.folder))
    for name, value in settings.items():
        if name != "model":
            facts.add_row(name, "-" if value is None else str(value))
    facts.add_row("history", f"{steps} steps (`smoltui history`)")
    console.print(facts, highlight=False)


@app.command("set", help=f"Change a setting; `set model SOURCE` imports SOURCE as the current model. {SETTINGS_HELP}")
@reports_user_errors
def set_setting(
    key: Annotated[str, typer.Argument(help=f"One of: {', '.join(SETTING_NAMES)}.", metavar="KEY")],
    value: Annotated[str, typer.Argument(help="The value; empty text restores the default.", metavar="VALUE")],
    as_json: JsonOption = False,
    no_eval: NoEvalOption = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Change a setting; `set model SOURCE` imports SOURCE as the current model."""
    if key == "model":
        run_and_show(workspace, "import", {"source": value}, as_json, no_eval)
        return
    with opened(workspace) as workbench:
        stored = workbench.set(key, value)
    if as_json:
        write_json({key: stored})
    else:
        console.print(f"{key} = {'-' if stored is None else stored}", highlight=False, soft_wrap=True)


@app.command("get")
@reports_user_errors
def get_setting(
    key: Annotated[str, typer.Argument(help=f"One of: {', '.join(SETTING_NAMES)}.", metavar="KEY")],
    workspace: WorkspaceOption = None,
) -> None:
    """Print one setting (model: the current model's folder); nothing when it is unset."""
    with opened(workspace) as workbench:
        value = workbench.get(key)
    typer.echo("" if value is None else str(value))


@app.command("init")
@reports_user_errors
def init_state(workspace: WorkspaceOption = None) -> None:
    """Fresh state: settings back to their defaults and no current model (the history stays for `checkout`)."""
    with opened(workspace) as workbench:
        workbench.init()
        root = workbench.root
    console.print(f"fresh workbench state in {root}; `smoltui import SOURCE` makes a model current.", highlight=False)


@app.command()
@reports_user_errors
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Forget the history and the settings, and delete every model folder the workbench made."""
    with opened(workspace) as workbench:
        steps = len(workbench.history())
        if not yes and not typer.confirm(f"forget {steps} steps and delete their models in {workbench.models_dir}?"):
            console.print("nothing changed.")
            raise typer.Exit(1)
        workbench.reset()
    console.print(f"forgot {steps} steps; the workbench is empty.", highlight=False)


@app.command()
@reports_user_errors
def history(as_json: JsonOption = False, workspace: WorkspaceOption = None) -> None:
    """Every step: its operation, parameters, the step it started from, its perplexity and what it changed."""
    with opened(workspace) as workbench:
        steps, current = workbench.history(), workbench.current_step
    if as_json:
        write_json([step_json(step, current) for step in steps])
    elif not steps:
        console.print("no steps yet; `smoltui import SOURCE` makes the first one.")
    else:
        console.print(history_table(steps, current))


StepArgument = Annotated[int, typer.Argument(help="The step number (see `smoltui history`).", metavar="N")]


@app.command()
@reports_user_errors
def checkout(step: StepArgument, as_json: JsonOption = False, workspace: WorkspaceOption = None) -> None:
    """Make step N's model the current one: undo, or branch from an earlier model."""
    with opened(workspace) as workbench:
        chosen = workbench.checkout(step)
    _current_is(chosen, as_json)


@app.command()
@reports_user_errors
def undo(as_json: JsonOption = False, workspace: WorkspaceOption = None) -> None:
    """Make the current step's parent current again (the undone step stays in the history)."""
    with opened(workspace) as workbench:
        chosen = workbench.undo()
    _current_is(chosen, as_json)


@app.command()
@reports_user_errors
def tweak(
    specs: Annotated[
        list[str],
        typer.Argument(help="PARAM=DELTA: add DELTA to every parameter whose name matches the regex PARAM."),
    ],
    prompt: Annotated[str | None, typer.Option("--prompt", help="The prompt (default: the prompt setting).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="The seed both samples are drawn with.")] = 0,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Tokens per sample.", min=1)] = None,
    as_json: JsonOption = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Sample the current model untouched and with the deltas added, with the same prompt and seed, side by side,
    with the perplexity on the eval tokens before and after. Never saves and never records a step: the model on
    disk stays as it is."""
    from smoltui.cli.workbench_views import print_tweak, tweak_json
    from smoltui.engine.effects import validation_ids
    from smoltui.engine.operations import load_step
    from smoltui.engine.tweaks import compare_tweak, parse_tweaks

    deltas = parse_tweaks(specs)
    with opened(workspace) as workbench:
        current = workbench.require_model()
        settings = workbench.settings()
        _quiet_transformers()
        with error_console.status("tweak…") as status:
            loaded = load_step(workbench, current, progress=status.update)
            eval_ids = None
            if settings["dataset"] and settings["eval_tokens"] > 0:
                status.update(f"scoring up to {settings['eval_tokens']:,} validation tokens, before and after")
                eval_ids = validation_ids(
                    settings["dataset"], loaded.tokenizer, settings["eval_tokens"], workbench.workspace
                )
            comparison = compare_tweak(
                loaded,
                deltas,
                prompt=settings["prompt"] if prompt is None else prompt,
                seed=seed,
                max_tokens=settings["sample_tokens"] if max_tokens is None else max_tokens,
                eval_ids=eval_ids,
            )
    if as_json:
        write_json(tweak_json(comparison))
    else:
        print_tweak(console, comparison, settings["prompt"] if prompt is None else prompt)


def _current_is(step, as_json: bool) -> None:
    if as_json:
        write_json(step_json(step, step.step))
    else:
        console.print(f"current model: step {step.step} ({step.operation}) {step.folder}", highlight=False)


@app.command("ls")
@reports_user_errors
def list_operations(workspace: WorkspaceOption = None) -> None:
    """The operations, and your tools in <workspace>/tools/*.py (run them with `smoltui tool run NAME`)."""
    from rich.markup import escape
    from rich.padding import Padding

    from smoltui.engine.tools import TOOLS_DIR, list_tools
    from smoltui.engine.workspace import workspace_path

    # Two lines each, how to call it and what it does, so that both read whole in a narrow terminal.
    console.print("[bold]operations[/]")
    for operation in OPERATIONS.values():
        console.print(f"  [bold]{operation.name}[/] {escape(usage(operation))}", highlight=False, soft_wrap=True)
        console.print(Padding(escape(operation.help), (0, 0, 0, 6)), highlight=False)
    console.print("  [dim]and: state, set, get, init, reset, history, checkout, undo, tweak, tool run[/]")
    root = workspace_path(workspace)
    tools = list_tools(root)
    if not tools:
        console.print(f"no tools in {root / TOOLS_DIR} yet (README: Changing a model).", highlight=False)
        return
    console.print(
        f"[bold]tools[/] in {escape(str(root / TOOLS_DIR))} ({escape('`smoltui tool run NAME [ARGS…]`')})",
        highlight=False,
    )
    for tool in tools:
        console.print(f"  [bold]{escape(tool.name)}[/]  {escape(tool.description)}", highlight=False)


tool_app = typer.Typer(
    help="Your own tools: PEP 723 scripts run through `uv run` on the current model.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(tool_app, name="tool")


@tool_app.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@reports_user_errors
def tool_run(
    script: Annotated[str, typer.Argument(help="A script's path, or the name of one in <workspace>/tools.")],
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments handed on to the tool.", metavar="[ARGS]...")
    ] = None,
    as_json: JsonOption = False,
    no_eval: NoEvalOption = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Run SCRIPT with `uv run --script`, handing it --model, --dataset and --output (and SMOLTUI_MODEL,
    SMOLTUI_DATASET, SMOLTUI_OUTPUT); a model it saves in the output folder becomes the current one.
    Options of smoltui go before SCRIPT; everything after it goes to the tool."""
    from rich.markup import escape

    from smoltui.engine.tools import run_tool

    with opened(workspace) as workbench:
        _quiet_transformers()
        with error_console.status(f"running {script}…") as status:
            step = run_tool(
                workbench,
                script,
                args or [],
                progress=status.update,
                output=lambda line: error_console.print(escape(line), highlight=False, soft_wrap=True),
                evaluate=not no_eval,
            )
    if step is None:
        if as_json:
            write_json(None)
        return
    _show(step, as_json)
