"""Model: load a model from the bundled ones, a preset, a GGUF file, a folder, a Hub id or a run's checkpoint;
its summary and module tree.

Loading is a job of the model session (torch and transformers are imported on its worker, never on the event
loop); its steps come back as SessionUpdated, and the loaded model becomes the session's (`app.session_model`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Label, LoadingIndicator, Static, Tree

from smoltui.engine.presets import preset_names
from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished, JobProgressed
from smoltui.formatting import format_bytes, format_count
from smoltui.messages import SessionUpdated
from smoltui.screens.base import SmolScreen
from smoltui.widgets.model_source import ModelSourceInput
from smoltui.widgets.worker_errors import describe_error, report_error

if TYPE_CHECKING:
    from torch import nn

    from smoltui.engine.models import LoadedModel, ModuleRow

LOAD_HINT = (
    "{bundled}a preset ({presets}), a .gguf file, a model folder, a Hub id, run:<id>[@step] or step:<n> (the "
    "workbench's) — enter loads it"
)
NEW_HINT = "a preset to build with fresh weights: {presets} — enter builds it"
TIED = "tied to the embedding"  # what a tied LM head shows instead of its parameters, which the embedding holds
EXPANDED_DEPTH = 2  # the tree opens two levels deep: the model's children and theirs


class ModelScreen(SmolScreen):
    """Load a model and look at its numbers and modules."""

    MODE = "model"
    AUTO_FOCUS = "#modules"  # not the input: the number keys must still switch screens
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "l",
            "focus_source",
            "Load",
            tooltip="Type a model source: preset, folder, Hub id or run:<id>.",
            priority=True,
        ),
        Binding("e", "expand_all", "Expand", tooltip="Expand every module of the tree."),
        Binding("c", "collapse_all", "Collapse", tooltip="Collapse the tree to the model's direct children."),
        Binding(
            "escape",
            "leave_source",
            "Leave input",
            show=False,
            tooltip="Stop typing; the keys work again.",
            priority=True,
        ),
    ]

    load_failure: reactive[str | None] = reactive(None)  # why the last load failed, shown until the next load

    def __init__(self) -> None:
        super().__init__()
        self._load_job: Job | None = None  # the load (or description) whose result this screen waits for
        self._shown: LoadedModel | None = None
        self._begin_wanted: bool | None = None  # a begin() asked for before the screen was mounted
        self._ready = False

    def compose_body(self) -> Iterable[Widget]:
        source = ModelSourceInput(
            self.smol.workspace,
            self.smol.recent_sources,
            placeholder="smollm2-135m-instruct, nano-char, ./my-model, model.gguf, run:<id>@500",
            id="source",
        )
        source.border_title = "Model source · l to type, enter to load"
        yield source
        with Horizontal(id="load-status"):
            yield LoadingIndicator(id="load-spinner")
            yield Label(load_hint(), id="load-text")
        with Horizontal(id="model-body"):
            with Vertical(id="summary-panel", classes="panel") as panel:
                panel.border_title = "Summary"
                yield Static("no model loaded yet: press l and type a source.", id="summary")
            with Vertical(id="modules-panel", classes="panel") as panel:
                panel.border_title = "Modules · parameters"
                tree: Tree[str] = Tree("no model", id="modules")
                tree.show_root = True
                yield tree

    def on_mount(self) -> None:
        self.query_one("#load-spinner").display = False
        self._ready = True
        self.watch(self.app, "session_model", self._session_model_changed)
        if self._begin_wanted is not None:
            self.begin(new=self._begin_wanted)

    # -- the source input ----------------------------------------------------------------------------------

    def begin(self, *, new: bool) -> None:
        """Focus the input, with a preset ready (`new`) or empty for any source (once mounted, if asked before)."""
        if not self._ready:
            self._begin_wanted = new
            return
        source = self.query_one("#source", Input)
        presets = ", ".join(preset_names())
        source.value = preset_names()[0] if new else ""
        if self.load_failure is None:  # a failure stays in view until the next load
            self._say(NEW_HINT.format(presets=presets) if new else load_hint())
        source.focus()

    def action_focus_source(self) -> None:
        self.set_focus(self.query_one("#source", Input))  # at once: keys typed right behind go into the field

    def action_leave_source(self) -> None:
        self.set_focus(self.query_one("#modules", Tree))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Both keys act before the focused widget sees a key (priority), so that the keys typed right behind
        # them go where they lead; typing, "l" is a letter of the source, and escape leaves only the input.
        typing = self.is_current and self.focused is self.query_one("#source", Input)
        if action == "focus_source":
            return not typing
        if action == "leave_source":
            return typing
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        source = event.value.strip()
        self.load_failure = None
        self.query_one("#load-spinner").display = True
        self._say(f"loading {source or '…'}")
        self.query_one("#modules", Tree).focus()  # the keys work again while it loads
        self._load_worker = self.load(source)

    # -- loading -------------------------------------------------------------------------------------------

    def load(self, source: str) -> Job:
        """Load `source` in the model session (cancelling what runs on the old model); its steps, the summary or
        the reason it failed come back as SessionUpdated."""
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # tqdm bars on stderr would tear the screen
        self._load_job = self.smol.session.load(
            source, then=describe_loaded, tag=self, device=self.smol.device, workspace=self.smol.workspace
        )
        return self._load_job

    def _session_model_changed(self, loaded: LoadedModel | None) -> None:
        """A model loaded elsewhere (`demo`, another screen) is described here too; this screen's own loads
        describe theirs as they finish."""
        if loaded is None or loaded is self._shown or (self._load_job and not self._load_job.finished.is_set()):
            return
        self._load_job = self.smol.session.submit(
            "describe", lambda context: describe_loaded(context.require_model()), "describe the model", tag=self
        )

    def on_session_updated(self, message: SessionUpdated) -> None:
        event = message.event
        if getattr(event, "job", None) is not self._load_job:
            return
        message.stop()
        if isinstance(event, JobProgressed):
            self._say(str(event.event))
        elif isinstance(event, JobFinished):
            self.show_loaded(event.result)
        elif isinstance(event, JobFailed):
            self.load_failure = describe_error(event.error)
            report_error(self, event.error)
        elif isinstance(event, JobCancelled):
            self._say("loading was cancelled: another model was asked for.")
        if isinstance(event, JobFinished | JobFailed | JobCancelled):
            self.query_one("#load-spinner").display = False

    def show_loaded(self, message: LoadedDescription) -> None:
        loaded = self._shown = message.loaded
        recent = self.smol.recent_sources
        if loaded.source in recent:
            recent.remove(loaded.source)
        recent.insert(0, loaded.source)
        self.query_one("#summary", Static).update(summary_table(message))
        fill_module_tree(
            self.query_one("#modules", Tree), message.modules, message.lm_head if message.head_tied else None
        )
        origin = loaded.kind_label if message.checkpoint is None else describe_checkpoint(*message.checkpoint)
        self._say(f"loaded {loaded.source} · {origin} · on {loaded.placement.device}; it is the session's model.")
        self.query_one(ModelSourceInput).refresh_candidates()

    def watch_load_failure(self, reason: str | None) -> None:
        self.query_one("#load-status").set_class(reason is not None, "-error")
        if reason is not None:
            self._say(f"nothing loaded: {reason}")

    def _say(self, text: str) -> None:
        self.query_one("#load-text", Label).update(text)

    # -- the tree ------------------------------------------------------------------------------------------

    def action_expand_all(self) -> None:
        self.query_one("#modules", Tree).root.expand_all()

    def action_collapse_all(self) -> None:
        root = self.query_one("#modules", Tree).root
        root.collapse_all()
        root.expand()


def load_hint() -> str:
    """What can be typed, the bundled pretrained model first (when it is installed)."""
    from smoltui.engine.bundled import bundled_models

    bundled = [model.name for model in bundled_models() if model.available]
    pretrained = f"the bundled pretrained {', '.join(bundled)}, " if bundled else ""
    return LOAD_HINT.format(bundled=pretrained, presets=", ".join(preset_names()))


@dataclass(frozen=True)
class LoadedDescription:
    """What the screen shows of a loaded model beside its summary, worked out off the event loop: its module
    table, the dotted name of its LM head and whether that head shares the token embedding's weight, and for a
    run:<id>[@step] source the run and the checkpoint step it loaded."""

    loaded: LoadedModel
    modules: Sequence[ModuleRow]
    lm_head: str
    head_tied: bool
    checkpoint: tuple[str, int] | None = None  # (run id, step)


def describe_loaded(loaded: LoadedModel) -> LoadedDescription:
    """What the Model screen shows of a model, worked out on the session's worker (off the UI's loop)."""
    from smoltui.engine.models import module_table

    lm_head, head_tied = lm_head_of(loaded.model)
    checkpoint = checkpoint_loaded(loaded) if loaded.kind == "run" else None
    return LoadedDescription(loaded, module_table(loaded.model), lm_head, head_tied, checkpoint)


def lm_head_of(model: nn.Module) -> tuple[str, bool]:
    """The dotted name of `model`'s LM head, and whether its weight is the token embedding's (tied)."""
    from smoltui.engine.architecture import model_parts

    parts = model_parts(model)
    name = next(name for name, module in model.named_modules() if module is parts.lm_head)
    head_weight = getattr(parts.lm_head, "weight", None)
    return name, head_weight is not None and head_weight is parts.embed_tokens.weight


def checkpoint_loaded(loaded: LoadedModel) -> tuple[str, int] | None:
    """(run id, step) of the checkpoint a run:<id>[@step] source loaded: the folder transformers loaded the model
    from, so "run:latest" names the step it read even if the run has saved another since."""
    from smoltui.engine.checkpoints import list_checkpoints

    folder = Path(loaded.model.name_or_path)
    run_dir = folder.parent.parent  # <run>/checkpoints/step_NNNNNN
    return next(((run_dir.name, c.step) for c in list_checkpoints(run_dir) if c.path.name == folder.name), None)


def describe_checkpoint(run_id: str, step: int) -> str:
    return f"run {run_id}, checkpoint step {step}"


def summary_table(message: LoadedDescription) -> Table | Group:
    loaded, summary = message.loaded, message.loaded.summary
    head_params = next((row.params for row in message.modules if row.name == message.lm_head), 0)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    rows = (
        ("source", f"{loaded.source} ({loaded.kind_label})"),
        ("architecture", summary.architecture),
        ("family", summary.family),
        ("parameters", format_count(summary.total_params)),
        ("  embedding", format_count(summary.embedding_params)),
        ("  non-embedding", format_count(summary.non_embedding_params)),
        ("LM head", TIED if message.head_tied else format_count(head_params)),
        ("layers", str(summary.layers)),
        ("heads", str(summary.heads)),
        ("KV heads", str(summary.kv_heads)),
        ("hidden", str(summary.hidden)),
        ("context", "-" if summary.context is None else str(summary.context)),
        ("vocab", format_count(summary.vocab)),
        ("dtype", summary.dtype),
        ("device", summary.device),
        ("memory", format_bytes(summary.bytes)),
    )
    for name, value in rows:
        facts.add_row(name, value)
    if message.checkpoint is None:
        return facts
    # Above the table, across the panel: a run id is wider than the table's value column.
    return Group(Text(describe_checkpoint(*message.checkpoint), style="bold"), facts)


def fill_module_tree(tree: Tree, modules: Sequence[ModuleRow], tied_head: str | None = None) -> None:
    """Rebuild `tree` from module_table rows: one node per module, labelled with its type and parameters; the
    module named `tied_head` (an LM head sharing the embedding's weight, counted there) says so instead."""
    tree.clear()
    parents = {row.name.rpartition(".")[0] for row in modules if row.name}
    nodes = {}
    for row in modules:
        if not row.name:
            tree.root.set_label(module_label("model", row))
            tree.root.data = ""
            nodes[""] = tree.root
            continue
        parent = nodes[row.name.rpartition(".")[0]]
        label = module_label(row.name.rpartition(".")[2], row, tied=row.name == tied_head)
        if row.name in parents:
            nodes[row.name] = parent.add(label, data=row.name, expand=row.depth < EXPANDED_DEPTH)
        else:
            parent.add_leaf(label, data=row.name)
    tree.root.expand()


def module_label(name: str, row: ModuleRow, *, tied: bool = False) -> Text:
    return Text.assemble((name, "bold"), " ", (row.kind, "dim"), f"  {TIED}" if tied else f"  {row.params:,}")
