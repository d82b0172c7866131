"""SamplerForm: the Sample screen's side panel of settings, generated from SamplerSettings' declarations.

Every SamplerSettings field becomes a row (its name as the label, its help and bounds as the tooltip), beside the
run's own settings (max tokens, seed, stop strings, JSON output and its schema file). The presets fill every
field at once. Each change is checked as it is typed, and a mistake is marked at the field its UserError names,
so a generation with a bad value is refused before the session is asked for anything.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Static

from smoltui.engine.config import parse_number
from smoltui.engine.errors import UserError
from smoltui.engine.sampler_settings import PRESET_HELP, PRESETS, SamplerSettings, parse_order

SAMPLER_FIELDS = {setting.name: setting for setting in dataclasses.fields(SamplerSettings)}
DEFAULT_PRESET = "balanced"
DEFAULT_MAX_TOKENS = 256
# The run's own settings, beside the samplers': (name, label, tooltip).
RUN_FIELDS = (
    ("max_new_tokens", "max tokens", "Stop after this many new tokens (at least 1)."),
    ("seed", "seed", "Seed of the random draws: the same seed gives the same text again; empty draws a new one."),
    (
        "stop_strings",
        "stop strings",
        r"Stop as soon as the text contains one of these (comma-separated; \n newline, \, comma, \s space).",
    ),
    ("json_schema", "schema file", "The JSON schema file the answer must fit while JSON output is on (j)."),
)
FIELD_NAMES = {*SAMPLER_FIELDS, *(name for name, _, _ in RUN_FIELDS)}
JSON_HELP = "Write JSON that fits the schema file below (j): the answer always parses."


@dataclass(frozen=True)
class RunSettings:
    """Everything a generation takes from the form."""

    sampling: SamplerSettings
    max_new_tokens: int
    seed: int | None  # None: draw one
    stop_strings: tuple[str, ...]
    json_schema: Path | None  # the schema file, while JSON output is on


def split_list(text: str) -> tuple[str, ...]:
    r"""Comma-separated items with escapes (\n, \t, \s for a space, \, for a comma, \\); spaces around items go."""
    items, current, escaped = [], [], False
    for char in text:
        if escaped:
            # Fenced by NULs, which the strip below stops at, so an escaped space at either end stays.
            current.append("\0" + {"n": "\n", "t": "\t", "s": " "}.get(char, char) + "\0")
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    cleaned = (item.strip(" ").replace("\0", "") for item in items)
    return tuple(item for item in cleaned if item)


def join_list(items: Sequence[str]) -> str:
    """Items as split_list reads them back."""

    def escaped(item: str) -> str:
        item = item.replace("\\", "\\\\").replace(",", "\\,").replace("\n", "\\n").replace("\t", "\\t")
        return re.sub(r"^ | $", r"\\s", item)

    return ", ".join(escaped(item) for item in items)


def format_value(value: Any) -> str:
    """A setting's value as the form shows it."""
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, tuple):
        return join_list([str(item) for item in value])
    return str(value)


def bounds_text(setting: dataclasses.Field) -> str:
    low, high = setting.metadata.get("minimum"), setting.metadata.get("maximum")
    if low is None and high is None:
        return ""
    exclusive = setting.metadata.get("minimum_exclusive")
    lower = "" if low is None else (f"above {low:g}" if exclusive else f"at least {low:g}")
    upper = "" if high is None else f"at most {high:g}"
    return " (" + " and ".join(part for part in (lower, upper) if part) + ")"


class SamplerForm(Widget):
    """The presets, the run's settings and every sampler's setting, checked as typed (see the module doc).

    `tokenizer` returns the session's tokenizer (None without a model): banned tokens may be written as text.
    """

    DEFAULT_CSS = """
    SamplerForm {
        height: 1fr;
        #preset-row { height: 1; margin-bottom: 1; }
        #preset-row Button { width: auto; min-width: 0; padding: 0; }
        #preset-row Button.-chosen { text-style: bold reverse; }
        #form-state { height: auto; color: $text-muted; }
        #form-state.-error { color: $text-error; }
        #sampler-fields { height: 1fr; }
        .form-heading { color: $text-accent; text-style: bold; margin-top: 1; }
        .sampler-row { height: 1; }
        .sampler-label { width: 22; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
        .sampler-row Input { width: 1fr; }
        .sampler-error { display: none; color: $text-error; height: auto; }
        .sampler-error.-shown { display: block; }
        &.-narrow .sampler-row { height: 2; layout: vertical; }
        &.-narrow .sampler-label { width: 1fr; }
    }
    """

    class Changed(Message):
        """The form was checked again: its preset, its mistakes or JSON output may have changed."""

        def __init__(self, form: SamplerForm) -> None:
            super().__init__()
            self.form = form

    def __init__(self, tokenizer: Callable[[], Any] = lambda: None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tokenizer = tokenizer
        self.errors: dict[str, str] = {}
        self.preset: str | None = DEFAULT_PRESET  # the preset every field matches now, None when changed by hand
        self._inputs: dict[str, Input] = {}
        self._sampling: SamplerSettings | None = None  # the sampler settings of the last check, if they were valid
        self._state = ""  # what the line under the presets says
        self._ready = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="preset-row"):
            for name in PRESETS:
                button = Button(name, id=f"preset-{name}", compact=True)
                button.tooltip = PRESET_HELP[name]
                yield button
        yield Static(id="form-state")
        with VerticalScroll(id="sampler-fields"):
            yield Label("Output", classes="form-heading")
            for name, label, tooltip in RUN_FIELDS:
                if name == "json_schema":
                    box = Checkbox("JSON output", id="json-output", compact=True)
                    box.tooltip = JSON_HELP
                    yield box
                yield from self._row(name, label, tooltip, self._run_default(name))
            yield Label("Samplers", classes="form-heading")
            preset = PRESETS[DEFAULT_PRESET]
            for name, setting in SAMPLER_FIELDS.items():
                tooltip = setting.metadata["help"] + bounds_text(setting)
                if setting.type == "bool":
                    box = Checkbox(name.replace("_", " "), getattr(preset, name), id=f"field-{name}", compact=True)
                    box.tooltip = tooltip
                    yield box
                    yield Static(classes="sampler-error", id=f"error-{name}")
                else:
                    yield from self._row(name, name.replace("_", " "), tooltip, format_value(getattr(preset, name)))

    def _row(self, name: str, label: str, tooltip: str, value: str) -> ComposeResult:
        with Horizontal(classes="sampler-row"):
            yield Label(label, classes="sampler-label")
            field = Input(
                value, compact=True, id=f"field-{name}", placeholder="empty: random" if name == "seed" else ""
            )
            field.tooltip = tooltip
            yield field
        yield Static(classes="sampler-error", id=f"error-{name}")

    @staticmethod
    def _run_default(name: str) -> str:
        return str(DEFAULT_MAX_TOKENS) if name == "max_new_tokens" else ""

    def on_mount(self) -> None:
        self._inputs = {field.id.removeprefix("field-"): field for field in self.query(Input) if field.id}
        self._ready = True
        self.validate()

    # -- what the screen asks

    @property
    def json_output(self) -> bool:
        return self.query_one("#json-output", Checkbox).value

    @json_output.setter
    def json_output(self, on: bool) -> None:
        self.query_one("#json-output", Checkbox).value = on

    def set_field(self, name: str, text: str) -> None:
        """Fill a field as a person would (the form checks itself again)."""
        self._inputs[name].value = text

    def field_text(self, name: str) -> str:
        return self._inputs[name].value

    def focus_field(self, name: str) -> None:
        widget = self._inputs.get(name) or self.query_one(f"#field-{name}")
        self.screen.set_focus(widget)  # at once: keys typed right behind go into the field

    def apply_preset(self, name: str) -> None:
        """Fill every sampler field with preset `name`'s values."""
        preset = PRESETS[name]
        with self.prevent(Input.Changed, Checkbox.Changed):
            for field_name, setting in SAMPLER_FIELDS.items():
                value = getattr(preset, field_name)
                if setting.type == "bool":
                    self.query_one(f"#field-{field_name}", Checkbox).value = value
                else:
                    self._inputs[field_name].value = format_value(value)
        self.validate()

    def cycle_preset(self) -> str:
        """Apply the preset after the current one (the first when the fields match none); its name."""
        names = list(PRESETS)
        following = names[(names.index(self.preset) + 1) % len(names)] if self.preset in names else names[0]
        self.apply_preset(following)
        return following

    def show_error(self, error: UserError) -> None:
        """Mark a mistake found later (by the session's job: a schema llguidance refuses) at its field."""
        self._show({**self.errors, (error.field or ""): str(error)}, self._sampling)

    # -- reading and checking

    def read(self) -> RunSettings | None:
        """The settings as typed, or None when a field is wrong (each wrong field is marked)."""
        settings, sampling, errors = self._read()
        self._show(errors, sampling)
        return settings

    def validate(self) -> None:
        self.read()

    def _read(self) -> tuple[RunSettings | None, SamplerSettings | None, dict[str, str]]:
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for name, setting in SAMPLER_FIELDS.items():
            try:
                values[name] = self._sampler_value(name, setting)
            except UserError as error:
                errors[name] = str(error)
        sampling = None
        if not errors:
            try:
                sampling = SamplerSettings(**values)
            except UserError as error:
                errors[error.field or "order"] = str(error)
        run: dict[str, Any] = {}
        for name, _, _ in RUN_FIELDS:
            try:
                run[name] = self._run_value(name)
            except UserError as error:
                errors[name] = str(error)
        if errors or sampling is None:
            return None, sampling, errors
        return RunSettings(sampling=sampling, **run), sampling, errors

    def _sampler_value(self, name: str, setting: dataclasses.Field) -> Any:
        if setting.type == "bool":
            return self.query_one(f"#field-{name}", Checkbox).value
        text = self._inputs[name].value
        if setting.type in ("int", "float"):
            return parse_number(text, whole=setting.type == "int")  # the settings say why a text is no number
        if name == "order":
            return parse_order(text)
        items = split_list(text)
        if name == "banned_tokens":
            return self._banned(items)
        return items

    def _banned(self, items: tuple[str, ...]) -> tuple[int, ...]:
        tokenizer = self.tokenizer()
        if tokenizer is not None:
            from smoltui.engine.samplers import parse_banned

            return parse_banned(items, tokenizer)
        if all(item.isascii() and item.isdigit() for item in items):
            return tuple(int(item) for item in items)
        raise UserError(
            "banned tokens given as text need the model's tokenizer; load a model, or give token ids.",
            field="banned_tokens",
        )

    def _run_value(self, name: str) -> Any:
        text = self._inputs[name].value.strip()
        if name == "stop_strings":
            return split_list(self._inputs[name].value)
        if name == "json_schema":
            return check_schema_file(text) if self.json_output else None
        if name == "seed" and not text:
            return None
        number = parse_number(text, whole=True)
        low = 1 if name == "max_new_tokens" else 0
        if not isinstance(number, int) or number < low:
            what = "max tokens" if name == "max_new_tokens" else "the seed"
            raise UserError(f"{what} must be a whole number of at least {low}, not {text!r}.", field=name)
        return number

    def _show(self, errors: dict[str, str], sampling: SamplerSettings | None) -> None:
        before, self.errors, self._sampling = self.errors, errors, sampling
        for name in {*before, *errors} & FIELD_NAMES:  # only the marks that change: each update costs a layout
            message = errors.get(name, "")
            error = self.query_one(f"#error-{name}", Static)
            error.update(message)
            error.set_class(bool(message), "-shown")
            self.query_one(f"#field-{name}").set_class(bool(message), "-invalid")
        self.preset = next((name for name, preset in PRESETS.items() if preset == sampling), None)
        for name in PRESETS:
            self.query_one(f"#preset-{name}", Button).set_class(name == self.preset, "-chosen")
        state = self.query_one("#form-state", Static)
        if errors:
            said = f"✘ {next(iter(errors.values()))}"
        else:
            said = f"preset {self.preset}" if self.preset else "custom settings (p applies a preset)"
        if said != self._state:  # an update costs a layout
            self._state = said
            state.update(said)
            state.set_class(bool(errors), "-error")
        self.post_message(self.Changed(self))

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        if self._ready:
            self.validate()

    @on(Button.Pressed)
    def _preset_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id and event.button.id.startswith("preset-"):
            self.apply_preset(event.button.id.removeprefix("preset-"))


def check_schema_file(text: str) -> Path:
    """The schema file typed, if it is a readable JSON object (llguidance checks the rest when it compiles it)."""
    if not text:
        raise UserError("type the path of a JSON schema file, or turn JSON output off (j).", field="json_schema")
    path = Path(text).expanduser()
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(
            f"cannot read {path} ({error.strerror or error}); type the path of a JSON schema file.", field="json_schema"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        where = f" at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else ""
        raise UserError(f"{path} is not JSON{where}; fix the schema file.", field="json_schema") from None
    if not isinstance(schema, dict):
        raise UserError(f"{path} holds no JSON object; a schema is one, such as {{\"type\": \"object\"}}.",
                        field="json_schema")  # fmt: skip
    return path
