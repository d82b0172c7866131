"""The Surgery screen's operation form: one entry per operation of the registry and one for your own tools, each
with its declared parameters (a field each: a Checkbox for a flag, an Input for the rest), its help, how its values
are checked, and the session job that runs it. Every job speaks through `stoppable`, so that escape ends it at its
next progress line, before its step is committed: nothing changes."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.widgets import Checkbox, Input

from smoltui.engine.errors import UserError
from smoltui.engine.operations import OPERATIONS, import_loaded, run_operation
from smoltui.engine.parameters import Parameter, parse_values

if TYPE_CHECKING:
    from textual.widget import Widget

    from smoltui.engine.models import LoadedModel
    from smoltui.engine.session import JobContext
    from smoltui.engine.workbench import HistoryStep, Workbench

Work = Callable[["JobContext"], Any]  # what a session job runs
TOOL = "tool"
TOOL_HELP = (
    "Run your own script on the current model through uv (its PEP 723 header names its dependencies): it gets "
    "--model, --dataset and --output; a model it writes there becomes the next step. `smoltui ls` lists the "
    "workspace's tools."
)
TOOL_PARAMETERS = (
    Parameter("script", "str", "A script's path, or the name of one in the workspace's tools folder.", required=True),
    Parameter("args", "str", "Arguments handed on to the script, as on a command line.", metavar="ARGS"),
)


@dataclass(frozen=True)
class FormEntry:
    """What the form offers for one choice of its menu."""

    name: str
    help: str
    parameters: tuple[Parameter, ...]
    parse: Callable[[Mapping[str, Any]], dict[str, Any]]  # the fields' text → checked values, or UserError
    work: Callable[[Workbench, dict[str, Any]], Work]  # the checked values → the session job's work


def form_entries() -> dict[str, FormEntry]:
    """Every operation of the registry, in its order, then your own tools."""
    entries = {
        name: FormEntry(name, operation.help, operation.parameters, operation.parse, _operation_runner(name))
        for name, operation in OPERATIONS.items()
    }
    entries[TOOL] = FormEntry(TOOL, TOOL_HELP, TOOL_PARAMETERS, _tool_values, tool_work)
    return entries


def field_id(parameter: Parameter) -> str:
    return f"surgery-field-{parameter.name}"


def parameter_fields(entry: FormEntry, suggestions: Mapping[str, list[str]] | None = None) -> list[Widget]:
    """One field per parameter of the entry; `suggestions` completes the Inputs it names (e.g. the tools)."""
    from textual.suggester import SuggestFromList

    fields: list[Widget] = []
    for parameter in entry.parameters:
        if parameter.kind == "flag":
            fields.append(Checkbox(parameter.label, id=field_id(parameter), compact=True, tooltip=parameter.help))
            continue
        hint = parameter.metavar or parameter.name
        if parameter.choices:
            hint += f" ({'|'.join(parameter.choices)})"
        if parameter.default not in (None, ""):
            hint += f", default {parameter.default}"
        placeholder = f"{parameter.label} {hint}" if parameter.option else hint
        offered = (suggestions or {}).get(parameter.name)
        suggester = SuggestFromList(offered) if offered else None
        field = Input(placeholder=placeholder, compact=True, id=field_id(parameter), suggester=suggester)
        field.tooltip = parameter.help
        fields.append(field)
    return fields


def _operation_runner(name: str) -> Callable[[Workbench, dict[str, Any]], Work]:
    def runner(workbench: Workbench, values: dict[str, Any]) -> Work:
        return operation_work(workbench, name, values)

    return runner


def operation_work(workbench: Workbench, name: str, values: dict[str, Any]) -> Work:
    """The session job: run one operation on the workbench, its progress lines as the job's events."""

    def work(context: JobContext) -> HistoryStep:
        return run_operation(workbench, name, values, progress=stoppable(context))

    return work


def import_work(workbench: Workbench, loaded: LoadedModel) -> Work:
    """The session job: make `loaded` (the session's model, as it is in memory) the workbench's current model."""

    def work(context: JobContext) -> HistoryStep:
        return import_loaded(workbench, loaded, progress=stoppable(context))

    return work


def tool_work(workbench: Workbench, values: dict[str, Any]) -> Work:
    """The session job: run a tool through uv, each line it prints a progress line; its step, or None when it
    wrote no model. Stopped, the tool's process is killed and nothing is recorded."""
    from smoltui.engine.tools import run_tool

    def work(context: JobContext) -> HistoryStep | None:
        say = stoppable(context)
        return run_tool(workbench, values["script"], values["args"], progress=say, output=say)

    return work


def stoppable(context: JobContext) -> Callable[[str], None]:
    """A progress callback that passes each line on, and ends the job there once it has been cancelled."""

    def say(line: str) -> None:
        context.stop_if_cancelled()
        context.emit(line)

    return say


def _tool_values(given: Mapping[str, Any]) -> dict[str, Any]:
    values = parse_values(TOOL_PARAMETERS, given)
    try:
        values["args"] = shlex.split(values["args"] or "")
    except ValueError as error:
        message = f"the arguments do not read as a command line ({error}); close the quote."
        raise UserError(message, field="args") from None
    return values
