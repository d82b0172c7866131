"""Attention: where each token of a prompt looks, layer by layer and head by head, on the session's model.

Enter computes the attention maps and the activation report of the prompt as one session job. Three views of the
chosen layer: the heatmap of one head (or the head average), the grid of every head's thumbnail, and the text with
each token shaded by how much the chosen token attends to it (bertviz's head view). Beside them, each layer's
mean attention entropy and hidden-state norm.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, Label, Static

from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished, JobProgressed, JobStarted
from smoltui.heatmap import LEVELS, PALETTE, heat_legend, heat_levels
from smoltui.messages import SessionUpdated
from smoltui.screens.attention_jobs import Inspection, inspect_work
from smoltui.screens.base import SmolScreen, model_name
from smoltui.screens.bundled_model import LOAD_BUNDLED_BINDING, BundledModelOffer
from smoltui.widgets.attention_grid import AttentionHeadGrid
from smoltui.widgets.attention_heatmap import AttentionHeatmap
from smoltui.widgets.layer_panels import layer_panel
from smoltui.widgets.token_view import TokenView
from smoltui.widgets.worker_errors import describe_error

if TYPE_CHECKING:
    from smoltui.engine.attention import AttentionMaps

NARROW_WIDTH = 100  # below this many columns the layers' panel gives way to the heatmap
VIEWS = {"map": "attn-heatmap", "grid": "attn-grid", "text": "attn-text"}
TYPING_ACTIONS = {"leave_field"}
LAYER_HELP = "The layer above (]) or below ([); the heatmap, the grid and the text follow"
HEAD_HELP = "The next head (}) or the previous one ({); from the average, the first or the last head"
MOVE_HELP = "Heatmap: scroll the queries (↑↓); head grid: move the cursor; text: pick the token (←→ or a click)"


class AttentionScreen(BundledModelOffer, SmolScreen):
    """The attention of the session's model on a prompt (see module doc)."""

    MODE = "attention"
    AUTO_FOCUS = "#attn-heatmap"  # not the prompt: number keys still switch screens until i starts typing
    BINDINGS: ClassVar[list[BindingType]] = [  # in order of importance: a narrow footer drops the last first
        Binding("i", "focus_prompt", "Type", tooltip="Type a prompt; enter computes its attention", priority=True),
        LOAD_BUNDLED_BINDING,
        Binding("right_square_bracket", "layer(1)", "Layer", key_display="[ ]", tooltip=LAYER_HELP),
        Binding("right_curly_bracket", "head(1)", "Head", key_display="{ }", tooltip=HEAD_HELP),
        Binding("g", "toggle_view('grid')", "Heads", tooltip="Every head of the layer as a thumbnail"),
        Binding("t", "toggle_view('text')", "Text", tooltip="Shade the prompt by the chosen token's attention"),
        Binding("a", "toggle_average", "Average", tooltip="The average of the layer's heads, or back to one head"),
        Binding("enter", "open_head", "Open head", tooltip="Open the head under the cursor in the heatmap"),
        Binding("s", "save_svg", "Save SVG", tooltip="Save the screen as an SVG picture in the workspace"),
        Binding(
            "escape",
            "leave_field",
            "Leave field",
            tooltip="Stop typing in the field; the keys work again",
            priority=True,
        ),
        Binding("left_square_bracket", "layer(-1)", "Layer down", show=False, tooltip=LAYER_HELP),
        Binding("left_curly_bracket", "head(-1)", "Head down", show=False, tooltip=HEAD_HELP),
        Binding("up", "move(0, -1)", "Up", show=False, tooltip=MOVE_HELP),
        Binding("down", "move(0, 1)", "Down", show=False, tooltip=MOVE_HELP),
        Binding("left", "move(-1, 0)", "Left", show=False, tooltip=MOVE_HELP),
        Binding("right", "move(1, 0)", "Right", show=False, tooltip=MOVE_HELP),
    ]

    view: reactive[str] = reactive("map", repaint=False)  # "map", "grid" or "text"

    def __init__(self) -> None:
        super().__init__()
        self.inspection: Inspection | None = None
        self.layer_index = 0  # an index into the maps' layers (every block, in order)
        self.head: int | None = 0  # None: the head average
        self.chosen_token = 0  # the text view's chosen token
        self._job: Job | None = None
        self._layers_shown: AttentionMaps | None = None  # the maps the layers' panel was laid out for

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="attn-body"):
            with Vertical(id="attn-main"):
                with ContentSwitcher(initial="attn-message", id="attn-views"):
                    yield Static(id="attn-message", classes="panel")
                    yield AttentionHeatmap(id="attn-heatmap", classes="panel")
                    yield AttentionHeadGrid(id="attn-grid", classes="panel")
                    yield TokenView(id="attn-text", classes="panel")
                yield Static(id="attn-legend")
                yield Static(id="attn-status")
                with Horizontal(id="attn-prompt-row"):
                    yield Label("Prompt ", id="attn-prompt-label")
                    yield Input(placeholder="a text to look into; enter computes", compact=True, id="attn-prompt")
            with VerticalScroll(id="attn-side", classes="panel"):
                yield Static(id="attn-layers")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#attn-side").border_title = "Layers"
        self.query_one("#attn-side").border_subtitle = "entropy · norm"
        self.watch(self.app, "session_model", self._model_changed)

    # -- what tests and benchmarks read ------------------------------------------------------------------------

    @property
    def maps(self) -> AttentionMaps | None:
        return None if self.inspection is None else self.inspection.maps

    def matrix(self) -> np.ndarray:
        """(T, T): what the heatmap and the text view show, the chosen head's weights or the head average."""
        maps = self.maps
        assert maps is not None
        weights = maps.weights[self.layer_index]  # (heads, T, T)
        return weights.mean(axis=0) if self.head is None else weights[self.head]

    # -- the model and the job -----------------------------------------------------------------------------

    def _model_changed(self, _loaded) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None  # whatever it still says is about another model
        self.inspection = None  # the maps were another model's
        self._show()
        self.refresh_bindings()

    def _message(self) -> str:
        loaded = self.smol.session_model
        if loaded is None:
            return self.no_model_hint()
        if self._job is not None:
            return f"computing the attention of {model_name(loaded)} on the prompt…"
        return f"Type a prompt (i) and press enter: the attention of {model_name(loaded)} on it comes here."

    def action_focus_prompt(self) -> None:
        self.set_focus(self.query_one("#attn-prompt", Input))  # at once: keys typed right behind go into it

    def action_leave_field(self) -> None:
        """Focus the view (or nothing, before there are maps): the number keys switch screens again."""
        self.set_focus(self.query_one(f"#{VIEWS[self.view]}") if self.maps is not None else None)

    @on(Input.Submitted, "#attn-prompt")
    def compute(self) -> None:
        """Ask the session for the prompt's attention maps and activations (one job; the last one asked wins)."""
        if self.smol.session_model is None:
            self._say(self._message())
            return
        if self._job is not None:
            self._job.cancel()
        prompt = self.query_one("#attn-prompt", Input).value
        self._job = self.smol.session.submit("inspect", inspect_work(prompt), "attention", tag=self)
        self._say("")
        self.inspection = None
        self._show()
        self.action_leave_field()

    def on_session_updated(self, message: SessionUpdated) -> None:
        message.stop()
        event = message.event
        job = getattr(event, "job", None)
        if job is None or isinstance(event, JobStarted):
            return
        if job is self._load_job:
            self.load_event(event)
        elif job is self._job and not isinstance(event, JobProgressed):
            self._job = None
            if isinstance(event, JobFinished):
                self._take(event.result)
            elif isinstance(event, JobFailed):
                self._say(describe_error(event.error))
                self._show()
            elif isinstance(event, JobCancelled):
                self._show()
            self.refresh_bindings()  # the keys that move through the maps work now, or no longer

    def _take(self, inspection: Inspection) -> None:
        self.inspection = inspection
        maps = inspection.maps
        self.layer_index = min(self.layer_index, len(maps.layers) - 1)
        if self.head is not None:
            self.head = min(self.head, maps.heads - 1)
        self.chosen_token = len(maps.tokens) - 1
        self.query_one(AttentionHeatmap).clear()  # a new prompt starts at its last queries
        self._say(inspection.note)
        self._show()
        if self.focused is None:  # the view takes the keys, once it is shown
            self.call_after_refresh(self.action_leave_field)

    # -- keys ----------------------------------------------------------------------------------------------

    def action_layer(self, step: int) -> None:
        maps = self.maps
        if maps is None:
            return
        wanted = self.layer_index + step
        if not 0 <= wanted < len(maps.layers):
            missing = maps.layers[0] - 1 if wanted < 0 else maps.layers[-1] + 1
            self._say(f"layer {missing} does not exist; this model has layers {maps.layers[0]} to {maps.layers[-1]}.")
            return
        self.layer_index = wanted
        self._say("")
        self._show()

    def action_head(self, step: int) -> None:
        maps = self.maps
        if maps is None:
            return
        if self.view == "grid":
            self.query_one(AttentionHeadGrid).move(step)
            return
        if self.head is None:  # from the average, the first (or last) head
            self.head = 0 if step > 0 else maps.heads - 1
        else:
            wanted = self.head + step
            if not 0 <= wanted < maps.heads:
                self._say(f"head {wanted} does not exist; this model has heads 0 to {maps.heads - 1}.")
                return
            self.head = wanted
        self._say("")
        self._show()

    def action_toggle_average(self) -> None:
        if self.maps is None:
            return
        self.head = 0 if self.head is None else None
        self._show()

    def action_toggle_view(self, view: str) -> None:
        if view == "grid" and self.view != "grid" and self.maps is not None:  # the grid opens on the head shown
            self.query_one(AttentionHeadGrid).cursor = self.maps.heads if self.head is None else self.head
        self.view = "map" if self.view == view else view

    def watch_view(self) -> None:
        self._show()
        self.refresh_bindings()
        if self.maps is not None and not isinstance(self.focused, Input):
            self.query_one(f"#{VIEWS[self.view]}").focus()

    def action_open_head(self) -> None:
        grid = self.query_one(AttentionHeadGrid)
        self.head = None if grid.cursor == grid.heads else grid.cursor
        self.view = "map"

    def action_move(self, dx: int, dy: int) -> None:
        if self.maps is None:
            return
        if self.view == "map":
            self.query_one(AttentionHeatmap).scroll_lines(dy)
        elif self.view == "grid":
            grid = self.query_one(AttentionHeadGrid)
            grid.move(dx + dy * grid.columns)
        elif dx:
            self.chosen_token = max(0, min(self.chosen_token + dx, len(self.maps.tokens) - 1))
            self._show_text()

    @on(TokenView.TokenClicked, "#attn-text")
    def _token_clicked(self, event: TokenView.TokenClicked) -> None:
        self.chosen_token = event.token
        self._show_text()

    def action_save_svg(self) -> None:
        self.app.deliver_screenshot()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = self.is_current and isinstance(self.focused, Input)
        if action == "leave_field":
            return typing
        if typing and action not in TYPING_ACTIONS:
            return False
        if action == "load_bundled":
            return self.can_load_bundled()
        if action == "open_head":
            return self.view == "grid" and self.maps is not None
        if action in ("layer", "head", "toggle_average", "toggle_view", "move"):
            return None if self.maps is None else True  # shown, greyed until there are maps
        return True

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW_WIDTH, "-narrow")  # the heatmap needs the width more

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()  # typing or not decides which keys work, and the footer says so

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    # -- drawing -------------------------------------------------------------------------------------------

    def _say(self, sentence: str) -> None:
        """One sentence in the status line (a mistake, a note about the prompt) until the next."""
        status = self.query_one("#attn-status", Static)
        status.update(sentence)
        status.display = bool(sentence)

    def _show(self) -> None:
        """Everything that depends on the maps, the layer, the head and the view."""
        maps = self.maps
        switcher = self.query_one("#attn-views", ContentSwitcher)
        if maps is None:
            message = self.query_one("#attn-message", Static)
            message.update(self._message())
            message.border_title = "Attention"
            switcher.current = "attn-message"
            self.query_one("#attn-layers", Static).update("")
            self._layers_shown = None
            self.query_one("#attn-legend", Static).update("")
            return
        switcher.current = VIEWS[self.view]
        index = self.layer_index
        block = maps.layers[index]
        head = "average of heads" if self.head is None else f"head {self.head}/{maps.heads - 1}"
        name = model_name(self.smol.session_model) if self.smol.session_model is not None else ""
        if self.view == "map":
            heatmap = self.query_one(AttentionHeatmap)
            heatmap.show(self.matrix(), maps.tokens)
            entropy = maps.entropy[index].mean() if self.head is None else maps.head_entropy[index, self.head]
            heatmap.border_title = f"Layer {block}/{maps.layers[-1]} · {head} · entropy {entropy:.2f} nats · {name}"
        elif self.view == "grid":
            grid = self.query_one(AttentionHeadGrid)
            grid.show(maps.layer(block), maps.head_average[index], maps.head_entropy[index],
                      float(maps.entropy[index].mean()))  # fmt: skip
            grid.border_title = f"Layer {block}/{maps.layers[-1]} · {maps.heads} heads and their average · {name}"
        else:
            self._show_text()
        self._legend()
        self._show_layers()

    def _legend(self) -> None:
        maps = self.maps
        if maps is None:
            return
        if self.view == "map":
            legend = heat_legend(colour=True, high=self.query_one(AttentionHeatmap).high)
            legend.append(" · rows: queries, columns: keys", "dim")
        elif self.view == "grid":
            legend = Text("←→↑↓ pick a head · enter opens it · H: mean entropy, nats · each on its own colour scale")
        else:
            legend = heat_legend(colour=True)
            legend.append(" · ←→ pick the token that looks", "dim")
        self.query_one("#attn-legend", Static).update(legend, layout=False)  # one line, whatever it says

    def _show_text(self) -> None:
        maps = self.maps
        assert maps is not None
        view = self.query_one("#attn-text", TokenView)
        row = self.matrix()[self.chosen_token]  # (T,) the chosen token's weights over the keys
        levels = heat_levels(row[None, :], causal=False)[0]  # (T,) on the weights' own scale, 0 to 1, as bertviz
        styles = [
            "" if key > self.chosen_token else f"{'black' if level > LEVELS // 2 else 'white'} on {PALETTE[level]}"
            for key, level in enumerate(levels.tolist())
        ]
        if view.token_count != len(maps.tokens):
            view.clear()
            view.append((token, style, True) for token, style in zip(maps.tokens, styles, strict=True))
        else:
            view.restyle(enumerate(styles))
        view.cursor = self.chosen_token
        head = "the head average" if self.head is None else f"head {self.head}"
        token, block = maps.tokens[self.chosen_token], maps.layers[self.layer_index]
        view.border_title = f"Layer {block} · {head} · what token {self.chosen_token} {token!r} looks at"
        self._legend()

    def _show_layers(self) -> None:
        maps = self.maps
        assert maps is not None
        entropy = maps.entropy.mean(axis=(1, 2))  # (layers,) over heads and queries
        activations = self.inspection.activations if self.inspection is not None else None
        norms = None if activations is None else activations.residual_norm[1:].mean(axis=1)  # (layers,) blocks
        panel = self.query_one("#attn-layers", Static)
        # As many lines for every layer of the same maps: only new maps can change the panel's height.
        panel.update(layer_panel(entropy, norms, self.layer_index), layout=self._layers_shown is not maps)
        self._layers_shown = maps
        side = self.query_one("#attn-side", VerticalScroll)  # the layer shown stays in sight on a deep model
        side.scroll_to(y=max(0, self.layer_index + 1 - side.scrollable_content_region.height // 2), animate=False)
