"""Sample: chat with the session's model or let it complete a text, watch each token's probability and its
alternatives, tune the samplers, compare two models (A/B and the surprise diff) and ask for JSON.

The screen's layout, keys, modes and token cursor are here; what it asks of the model session and how the answers
stream in is in sample_generation (SampleJobs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, Label, Static

from smoltui.screens.base import SmolScreen, model_name
from smoltui.screens.bundled_model import LOAD_BUNDLED_BINDING, BundledModelOffer
from smoltui.screens.sample_generation import STREAM_FPS, SampleJobs
from smoltui.screens.sample_jobs import TWEAK_HELP, SecondModel
from smoltui.screens.sample_stream import Column, measure_of
from smoltui.widgets.line_chart import LineChart
from smoltui.widgets.model_source import ModelSourceInput
from smoltui.widgets.sampler_form import SamplerForm
from smoltui.widgets.token_details import diff_legend, diff_panel, probability_legend, token_panel
from smoltui.widgets.token_view import TokenView

NARROW_WIDTH = 100
CURSOR_KEYS = "Move the token cursor (with shift: ten tokens)"
CHAT_HELP = "Chat through the model's chat template, or complete a text (either starts anew)"
GENERATE_HELP = "Send the message (chat) or complete the prompt; enter in the prompt does it too"
AB_HELP = (
    "Send the prompt to the session's model (A) and to model B side by side, with the same settings and seed; "
    "B can be A tweaked: type tweak: mlp.down_proj=0.01 as its source"
)
B_SOURCE_HELP = f"Model B: any model source, loaded by the next A/B run or diff, then kept; {TWEAK_HELP}."
DIFF_HELP = "Surprise diff: shade each token of the answer (or of a typed text) by how much likelier model B finds it"
MEASURE_HELP = "The sparkline: each token's entropy, or its surprise (−log p)"
TOKEN_HELP = "A cursor over the tokens: each one's top 20 alternatives before and after the samplers, its entropy"
TYPING_ACTIONS = {"generate", "stop", "leave_field"}  # what keys do while a field has the keyboard
MEASURE_TITLES = {"entropy": "entropy per token (nats)", "surprise": "surprise −log p per token (nats)"}
PROMPT_TITLES = {
    "chat": ("Message · enter sends it", "a message to the model"),
    "completion": ("Prompt · enter completes it", "a text for the model to continue"),
    "diff": ("Text to compare · enter scores it under A and B", "a text to score under both models"),
}


class SampleScreen(BundledModelOffer, SampleJobs, SmolScreen):
    """Generate from the session's model, token by token, and look at every token's alternatives."""

    MODE = "sample"
    AUTO_FOCUS = "#single"  # not the prompt: number keys still switch screens until i (or a click) starts typing
    BINDINGS: ClassVar[list[BindingType]] = [  # in order of importance: a narrow footer drops the last first
        Binding("ctrl+s", "generate", "Generate", tooltip=GENERATE_HELP),
        Binding("escape", "stop", "Stop", tooltip="Stop generating now (what came so far stays)"),
        LOAD_BUNDLED_BINDING,
        Binding("c", "toggle_chat", "Chat/text", tooltip=CHAT_HELP),
        Binding("n", "new_conversation", "New chat", tooltip="Start a new conversation: the answers so far go"),
        Binding("p", "cycle_preset", "Preset", tooltip="The next sampler preset: greedy, balanced, creative"),
        Binding("a", "toggle_ab", "A/B", tooltip=AB_HELP),
        Binding("d", "toggle_diff", "Diff", tooltip=DIFF_HELP),
        Binding("j", "toggle_json", "JSON", tooltip="JSON output: the answer fits the schema file of the side panel"),
        Binding("t", "toggle_cursor", "Token", tooltip=TOKEN_HELP),
        Binding("e", "toggle_measure", "Entropy/surprise", tooltip=MEASURE_HELP),
        Binding("i", "focus_prompt", "Type", tooltip="Type in the prompt", priority=True),
        Binding(
            "escape",
            "leave_field",
            "Leave field",
            tooltip="Stop typing in the field; the keys work again",
            priority=True,
        ),
        Binding("left", "move_cursor(-1)", "Token left", show=False, tooltip=CURSOR_KEYS),
        Binding("right", "move_cursor(1)", "Token right", show=False, tooltip=CURSOR_KEYS),
        Binding("shift+left", "move_cursor(-10)", "Token left", show=False, tooltip=CURSOR_KEYS),
        Binding("shift+right", "move_cursor(10)", "Token right", show=False, tooltip=CURSOR_KEYS),
    ]

    chat: reactive[bool] = reactive(True, repaint=False)  # the watchers draw what changes
    view: reactive[str] = reactive("single", repaint=False)  # "single", "ab" or "diff"
    cursor_on: reactive[bool] = reactive(False, repaint=False)
    measure: reactive[str] = reactive("entropy", repaint=False)  # or "surprise"
    generating: reactive[bool] = reactive(False, repaint=False)

    def __init__(self) -> None:
        super().__init__()
        self._init_jobs()
        self._view_before_diff = "single"
        self._series_colours: dict[str, str] = {}  # the sparkline's colour of A and of B
        self._selected: TokenView | None = None

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="sample-body"):
            with Vertical(id="sample-main"):
                with Horizontal(id="b-row"):
                    yield Label("Model B ", id="b-label")
                    source = ModelSourceInput(
                        self.smol.workspace,
                        self.smol.recent_sources,
                        placeholder="run:<id>, a folder, a preset… or tweak: mlp=0.01 (A tweaked) to compare with A",
                        compact=True,
                        id="b-source",
                    )
                    source.tooltip = B_SOURCE_HELP
                    yield source
                with ContentSwitcher(initial="single", id="sample-views"):
                    yield TokenView(id="single", classes="panel")
                    with Horizontal(id="ab"):
                        yield TokenView(id="column-a", classes="panel")
                        yield TokenView(id="column-b", classes="panel")
                    yield TokenView(id="diff", classes="panel")
                yield Static(id="sample-note")
                yield Static(probability_legend(), id="sample-legend")
                yield Static(id="sample-status")
                yield LineChart(compact=True, y_title=MEASURE_TITLES["entropy"], empty_text="", id="sparkline")
                system = Input(placeholder="system prompt (optional)", compact=True, id="system-prompt")
                system.tooltip = "The system prompt that opens the conversation (chat only)."
                yield system
                yield Input(id="prompt")
            with Vertical(id="sample-side", classes="panel"):
                with ContentSwitcher(initial="samplers", id="side-views"):
                    yield SamplerForm(self._tokenizer, id="samplers")
                    with VerticalScroll(id="token-panel"):
                        yield Static(id="token-details")

    def on_mount(self) -> None:
        super().on_mount()
        self._columns = {
            "single": Column("A", self.query_one("#single", TokenView)),
            "column-a": Column("A", self.query_one("#column-a", TokenView)),
            "column-b": Column("B", self.query_one("#column-b", TokenView)),
        }
        self._second = SecondModel(self.smol.device, self.smol.workspace)  # model B, loaded by its first job
        self._stream_timer = self.set_interval(1 / STREAM_FPS, self._show_pending, pause=True)
        chart = self.query_one("#sparkline", LineChart)
        self._series_colours = {name: chart.add_series(name) for name in ("A", "B")}  # A's colour, then B's
        chart.clear()  # the names keep their colours
        self.query_one("#sample-side").border_title = "Samplers"
        self.watch(self.app, "session_model", self._model_changed)
        self._show_mode()

    # -- what tests and benchmarks read ----------------------------------------------------------------------

    def column(self, key: str) -> Column:
        """A stream on screen: "single" (the conversation or completion), "column-a" or "column-b" (A/B)."""
        return self._columns[key]

    @property
    def conversation(self) -> tuple[dict[str, str], ...]:
        """The chat so far, as the template takes it."""
        return tuple(self._history)

    @property
    def model_b(self) -> SecondModel:
        return self._second

    # -- the model -------------------------------------------------------------------------------------------

    def _tokenizer(self):
        loaded = self.smol.session_model
        return None if loaded is None else loaded.tokenizer

    def _model_changed(self, loaded) -> None:
        if self._second.is_tweak:  # a tweak of the model A that went would keep that model's memory
            self.smol.session.submit("free", self._second.forget_stale_tweak, "free model B", tag=self)
        hint = self.no_model_hint()
        single = self._columns["single"].view
        single.placeholder = hint or (
            "Type a message below (i) and press enter." if self.chat else "Type a text below (i) and press enter."
        )
        self._columns["column-a"].view.placeholder = hint or "Model A's answer comes here."
        self._columns["column-b"].view.placeholder = "Model B's answer comes here: type its source above."
        self._titles()
        self.query_one(SamplerForm).validate()  # banned tokens written as text read through the new tokenizer
        self._status()
        self.refresh_bindings()

    # -- modes and views -------------------------------------------------------------------------------------

    def action_toggle_chat(self) -> None:
        self.chat = not self.chat
        self.action_new_conversation()  # a conversation and a completion do not continue one another

    def watch_chat(self) -> None:
        if self.is_mounted:
            self._model_changed(self.smol.session_model)  # the placeholders say what to type
            self._show_mode()

    def action_new_conversation(self) -> None:
        self._history.clear()
        self._pending_turn = None
        for column in self._columns.values():
            column.clear()
            column.view.border_subtitle = ""
        self.query_one("#sparkline", LineChart).clear()
        self._say("")
        self._show_details()

    def action_cycle_preset(self) -> None:
        name = self.query_one(SamplerForm).cycle_preset()
        self.notify(f"Preset {name}.", timeout=2)

    def action_toggle_ab(self) -> None:
        self.view = "single" if self.view == "ab" else "ab"

    def action_toggle_diff(self) -> None:
        if self.view == "diff":
            self.view = self._view_before_diff
            return
        self._view_before_diff = self.view
        answer = self._columns["column-a" if self.view == "ab" else "single"].answer_text
        self.view = "diff"
        self._score_diff(answer)

    def watch_view(self) -> None:
        if not self.is_mounted:
            return
        self._show_mode()
        self._redraw_sparkline()
        self._selected = None
        if self.cursor_on:
            self._place_cursor()

    def action_toggle_json(self) -> None:
        form = self.query_one(SamplerForm)
        form.json_output = not form.json_output

    def action_toggle_measure(self) -> None:
        self.measure = "surprise" if self.measure == "entropy" else "entropy"

    def watch_measure(self, measure: str) -> None:
        self._status()
        self._redraw_sparkline()

    def _redraw_sparkline(self) -> None:
        """The sparkline of what the view shows: each answer's entropy or surprise, or the diff's surprises."""
        chart = self.query_one("#sparkline", LineChart)
        chart.clear()
        if self.view == "diff":
            chart.y_title = MEASURE_TITLES["surprise"]
            for name, surprises in (self._diff.surprises() if self._diff else {}).items():
                chart.append(name, range(len(surprises)), surprises)
            return
        chart.y_title = MEASURE_TITLES[self.measure]
        for key in ("column-a", "column-b") if self.view == "ab" else ("single",):
            column = self._columns[key]
            answer = column.answer
            chart.append(column.name, range(len(answer)), [measure_of(token, self.measure) for token in answer])
            column.charted = len(answer)

    def action_focus_prompt(self) -> None:
        self.set_focus(self.query_one("#prompt", Input))  # at once: keys typed right behind go into the field

    def action_leave_field(self) -> None:
        self.set_focus(self._visible_views()[0])

    def _visible_views(self) -> list[TokenView]:
        if self.view == "ab":
            return [self._columns["column-a"].view, self._columns["column-b"].view]
        return [self.query_one("#diff" if self.view == "diff" else "#single", TokenView)]

    def _show_mode(self) -> None:
        self.query_one("#sample-views", ContentSwitcher).current = self.view
        self.query_one("#b-row").display = self.view in ("ab", "diff")
        self.query_one("#system-prompt").display = self.chat and self.view != "diff"
        legend = self.query_one("#sample-legend", Static)
        legend.update(diff_legend() if self.view == "diff" else probability_legend())
        prompt = self.query_one("#prompt", Input)
        title, placeholder = PROMPT_TITLES["diff" if self.view == "diff" else "chat" if self.chat else "completion"]
        prompt.border_title, prompt.placeholder = title, placeholder
        self._titles()
        self._status()
        self.refresh_bindings()

    def _titles(self) -> None:
        loaded = self.smol.session_model
        name = "no model" if loaded is None else model_name(loaded)
        self._columns["single"].view.border_title = f"{'Chat' if self.chat else 'Completion'} · {name}"
        self._columns["column-a"].view.border_title = f"A · {name}"
        view_b = self._columns["column-b"].view
        if not view_b.border_title:
            view_b.border_title = "B"
        source_b = self.query_one("#b-source", Input).value.strip()
        self.query_one("#diff", TokenView).border_title = f"Surprise diff · A {name} vs B {source_b}".rstrip()

    def _status(self) -> None:
        form = self.query_one(SamplerForm)
        parts = ["chat" if self.chat else "completion", f"preset {form.preset}" if form.preset else "custom samplers"]
        if form.json_output:
            parts.append("JSON")
        if self._seed is not None:
            parts.append(f"seed {self._seed}")
        if self.generating:
            parts.append("generating…")  # the footer says esc stops it
        parts.append("sparkline: surprise" if self.view == "diff" else f"sparkline: {self.measure} (e)")
        status = Text(" · ".join(parts))
        if self.view != "single":  # which line is which model's
            for name, colour in self._series_colours.items():
                status.append_text(Text.assemble(" ", ("━", colour), f" {name}"))
        self.query_one("#sample-status", Static).update(status, layout=False)  # one line, whatever it says

    def _say(self, note: str) -> None:
        """A note about the last generation (a truncated prompt, no chat template, a cancel) until the next one."""
        widget = self.query_one("#sample-note", Static)
        widget.update(note)
        widget.display = bool(note)

    @on(SamplerForm.Changed)
    def _form_changed(self) -> None:
        self._status()

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self) -> None:
        self.action_generate()

    @on(Input.Submitted, "#b-source")
    def _b_source_submitted(self) -> None:
        if self.view == "diff":
            self._score_diff(self._diff_text or self._columns["single"].answer_text)
        self.query_one("#prompt", Input).focus()

    # -- the token cursor ------------------------------------------------------------------------------------

    def action_toggle_cursor(self) -> None:
        self.cursor_on = not self.cursor_on

    def watch_cursor_on(self, on: bool) -> None:
        self.query_one("#side-views", ContentSwitcher).current = "token-panel" if on else "samplers"
        side = self.query_one("#sample-side")
        side.border_title = "Token · ← → · t closes" if on else "Samplers"
        if on:
            self._place_cursor()
        else:
            for view in self.query(TokenView):
                view.cursor = None
        self.refresh_bindings()

    def _place_cursor(self) -> None:
        views = self._visible_views()
        view = self._selected if self._selected in views else next((v for v in views if v.token_count), views[0])
        self._selected = view
        if view.cursor is None:
            view.cursor = view.token_count - 1
        view.focus()
        self._show_details()

    def action_move_cursor(self, step: int) -> None:
        view = self._selected
        if view is not None:
            view.cursor = view.token_count - 1 if view.cursor is None else view.cursor + step
            self._show_details()

    @on(TokenView.TokenClicked)
    def _token_clicked(self, event: TokenView.TokenClicked) -> None:
        for view in self.query(TokenView):
            if view is not event.view:
                view.cursor = None
        self._selected = event.view
        event.view.cursor = event.token
        self.cursor_on = True
        self._show_details()

    def _show_details(self) -> None:
        details = self.query_one("#token-details", Static)
        view = self._selected
        index = None if view is None else view.cursor
        if view is None or index is None:
            details.update("No token yet: generate something, then move the cursor over it.")
        elif view.id == "diff" and self._diff is not None:
            details.update(diff_panel(index, self._diff.tokens[index]))
        else:
            column = next(c for c in self._columns.values() if c.view is view)
            details.update(token_panel(index, column.tokens[index]))

    # -- keys ------------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = self.is_current and isinstance(self.focused, Input)
        if action == "stop":
            return self.generating
        if action == "leave_field":
            return typing and not self.generating
        if typing and action not in TYPING_ACTIONS:
            return False
        if action == "load_bundled":
            return self.can_load_bundled()
        if action == "move_cursor":
            return self.cursor_on
        if action in ("new_conversation", "toggle_chat"):
            return None if self.generating else True  # shown, but the answer coming in must end first
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()  # typing or not decides which keys work, and the footer says so

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    def watch_generating(self) -> None:
        self.refresh_bindings()

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW_WIDTH
        self.set_class(narrow, "-narrow")
        if self.is_mounted:
            self.query_one(SamplerForm).set_class(narrow, "-narrow")
