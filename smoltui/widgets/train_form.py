"""TrainForm: the new-run form, every TrainConfig setting in its section, checked as you type.

The fields come from TrainConfig's settings (engine/config.py: label, help, what empty means, choices), their
text reads as the command line's does, and a mistake is marked at the field its UserError names. The quick
pre-launch checks (preflight) run as you type too, so the model, tokenizer and corpus are checked before Start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from smoltui.engine.config import SETTINGS, Setting, TrainConfig, format_setting, parse_setting, sections
from smoltui.engine.errors import UserError
from smoltui.engine.preflight import quick_checks
from smoltui.engine.workspace import workspace_path
from smoltui.widgets.model_source import ModelSourceInput

FIELDS = {spec.name: spec for _, specs in sections() for spec in specs}
DEFAULT_MODEL = SETTINGS["model"].default


class TrainForm(Widget):
    """Every setting of a new run, pre-filled with the defaults; Start (ctrl+s) posts `StartRequested`."""

    DEFAULT_CSS = """
    TrainForm {
        layout: vertical;
        height: 1fr;
        #form-bar { height: 1; margin: 0 1; }
        #form-title { width: 1fr; text-style: bold; }
        #form-bar Button { min-width: 14; }
        #form-status { height: auto; margin: 0 1; color: $text-muted; }
        #form-status.-error { color: $text-error; }
        #form-fields { height: 1fr; }
        #form-columns { height: auto; padding: 0 1; }
        .form-column { width: 1fr; height: auto; }
        .form-column.-left { margin-right: 1; }
        &.-narrow #form-columns { layout: vertical; }
        &.-narrow .form-column.-left { margin-right: 0; }
        .form-section {
            height: auto;
            border: round $border-blurred;
            border-title-color: $text-accent;
            padding: 0 1;
            &:focus-within { border: round $border; }
        }
        .field-row { height: 1; }
        .field-label { width: 18; color: $text-muted; }
        .field-row Input, .field-row Select { width: 1fr; }
        .field-error { display: none; color: $text-error; padding-left: 18; height: auto; }
        .field-error.-shown { display: block; }
    }
    """

    class StartRequested(Message):
        """The person asked to start a run with a valid config."""

        def __init__(self, config: TrainConfig) -> None:
            self.config = config
            super().__init__()

    def __init__(self, workspace: Path | None = None, recent_sources: Sequence[str] = (), *, id: str | None = None):
        super().__init__(id=id)
        self.workspace = workspace  # where run:<id> models are looked for
        self.recent_sources = recent_sources  # the session's recently loaded models, offered first
        self._default_model = DEFAULT_MODEL
        self.errors: dict[str | None, str] = {}
        self._fields: dict[str, Input | Select] = {}
        self._errors: dict[str, Static] = {}
        self._shown = False
        self._offered = DEFAULT_MODEL
        self._focus_wanted = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="form-bar"):
            yield Static("New training run", id="form-title")
            yield Button("Start run", id="start-run", variant="primary", compact=True)
        yield Static(id="form-status")
        with VerticalScroll(id="form-fields"), Horizontal(id="form-columns"):
            laid_out = sections()
            for column, side in ((laid_out[0::2], "-left"), (laid_out[1::2], "-right")):
                with Vertical(classes=f"form-column {side}"):
                    for title, specs in column:
                        section = Vertical(classes="form-section")
                        section.border_title = title
                        with section:
                            for spec in specs:
                                yield from self._compose_field(spec)

    def _compose_field(self, spec: Setting) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(spec.title, classes="field-label")
            if spec.kind == "choice":
                options = [(choice, choice) for choice in spec.choices]
                field = Select(options, value=spec.default, allow_blank=False, compact=True, id=f"field-{spec.name}")
            elif spec.name == "model":  # completes presets, bundled models, runs and folders as you type
                field = ModelSourceInput(
                    workspace_path(self.workspace),
                    self.recent_sources,
                    value=format_setting(spec.default, spec),
                    placeholder=spec.placeholder,
                    compact=True,
                    id=f"field-{spec.name}",
                )
            else:
                field = Input(
                    format_setting(spec.default, spec),
                    placeholder=spec.unset or spec.placeholder,
                    compact=True,
                    id=f"field-{spec.name}",
                )
            field.tooltip = spec.help + (f" Empty: {spec.unset}." if spec.unset else "")
            yield field
        yield Static(classes="field-error", id=f"error-{spec.name}")

    def on_mount(self) -> None:
        self._fields = {name: self.query_one(f"#field-{name}") for name in FIELDS}
        self._errors = {name: self.query_one(f"#error-{name}", Static) for name in FIELDS}
        self._offer_model()
        self.validate()
        if self._focus_wanted:
            self.focus_first()

    @property
    def ready(self) -> bool:
        """Whether the fields are mounted (the form is built on first use)."""
        return bool(self._fields)

    def focus_first(self) -> None:
        self._focus_wanted = not self.ready
        if self.ready:
            self._fields["model"].focus()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "-narrow")

    # -- values

    def set_field(self, name: str, text: str) -> None:
        """Fill a field as a person would (the form checks itself again)."""
        self._fields[name].value = text

    def offer_model(self, source: str | None) -> None:
        """Pre-fill the model with the session's model, unless the person has typed another one."""
        self._offered = source or DEFAULT_MODEL
        if self.ready:
            self._offer_model()

    def _offer_model(self) -> None:
        field = self._fields["model"]
        if field.value.strip() == self._default_model and self._offered != self._default_model:
            field.value = self._offered
        self._default_model = self._offered

    def read_settings(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Every setting as typed, and the fields whose text has no reading at all."""
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, spec in FIELDS.items():
            widget = self._fields[name]
            if spec.kind == "choice":
                values[name] = widget.value
                continue
            try:
                values[name] = parse_setting(widget.value, spec)
            except UserError as error:
                problems[name] = str(error)
        return values, problems

    def validate(self) -> TrainConfig | None:
        """Check the whole form, mark the fields that are wrong with their sentence; the config if none is.

        The settings first (TrainConfig), then what the quick pre-launch checks see without torch: the model
        source, tokenizer, corpus, context and device as named.
        """
        values, errors = self.read_settings()
        config = None
        if not errors:
            try:
                config = TrainConfig.from_dict(values)
                quick_checks(config, self.workspace)
            except UserError as error:
                errors[error.field] = str(error)
                config = None
        self._show_errors(errors)
        return config

    def show_error(self, error: UserError) -> None:
        """Mark a mistake found after Start (by the launch checks, which need torch) at its field."""
        self._show_errors({error.field: str(error)})

    def _show_errors(self, errors: dict[str | None, str]) -> None:
        if errors == self.errors and self._shown:
            return
        before, self.errors, self._shown = self.errors, errors, True
        for name in {name for name in (*before, *errors) if name in FIELDS}:
            message = errors.get(name, "")
            error = self._errors[name]
            error.update(message)
            error.set_class(bool(message), "-shown")
            self._fields[name].set_class(bool(message), "-invalid")
        status = self.query_one("#form-status", Static)
        if errors:
            status.update(Content.assemble(("✘ ", "bold"), next(iter(errors.values()))))
        else:
            status.update("Valid: ctrl+s or Start run launches the run in a process of its own.")
        status.set_class(bool(errors), "-error")

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        if self.ready:
            self.validate()

    # -- starting

    @on(Button.Pressed, "#start-run")
    def _start_pressed(self) -> None:
        self.start()

    def start(self) -> bool:
        """Post StartRequested if the form is valid, else notify with the first sentence; True if started."""
        config = self.validate()
        if config is None:
            self.notify(next(iter(self.errors.values())), title="Cannot start the run", severity="error")
            return False
        self.post_message(self.StartRequested(config))
        return True
