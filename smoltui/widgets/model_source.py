"""ModelSourceInput: where a person types a model source (the Model screen's input, the Train form's model
field), completing it from this session's recent sources, the bundled models, the presets, the workbench's
current model (step:current), the workspace's runs and the model folders near the current folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from textual import work
from textual.suggester import Suggester
from textual.widgets import Input

from smoltui.engine.bundled import bundled_models
from smoltui.engine.presets import preset_names

FOLDER_SCAN_DEPTH = 2  # model folders are looked for this deep under the current folder


def find_model_folders(root: Path, depth: int = FOLDER_SCAN_DEPTH) -> list[str]:
    """Folders with a config.json under `root` (hidden ones skipped), as paths relative to it."""
    found: list[str] = []
    frontier = [root]
    for _ in range(depth):
        next_frontier = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                if (child / "config.json").is_file():
                    found.append(str(child.relative_to(root)))
                next_frontier.append(child)
        frontier = next_frontier
    return found


def source_candidates(workspace: Path, recent: Sequence[str], folders: Sequence[str]) -> list[str]:
    """Every source worth offering, most likely first: recent ones, bundled and presets, runs, folders."""
    try:
        runs = sorted((p.name for p in (workspace / "runs").iterdir() if (p / "run.db").is_file()), reverse=True)
    except OSError:
        runs = []
    bundled = [model.name for model in bundled_models() if model.available]
    steps = ["step:current"] if (workspace / "workbench" / "history.db").is_file() else []  # the workbench's model
    ordered = [*recent, *bundled, *preset_names(), *steps, *(f"run:{run}" for run in runs), *folders]
    return list(dict.fromkeys(ordered))


class SourceSuggester(Suggester):
    """Completes a model source from a list of candidates (see source_candidates)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.candidates: list[str] = list(preset_names())

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value in self.candidates:  # a source typed in full is what enter loads
            return None
        return next((c for c in self.candidates if c.startswith(value)), None)


class ModelSourceInput(Input):
    """An input for a model source with completions; enter takes the greyed completion (as → does) first.

    `workspace` is where runs are listed from, `recent` the session's recent sources (read, never changed).
    The candidates are refreshed each time the input gains focus; nearby folders are scanned once, off the loop.
    """

    def __init__(self, workspace: Path, recent: Sequence[str] = (), **options) -> None:
        self.source_suggester = SourceSuggester()
        super().__init__(suggester=self.source_suggester, **options)
        self.workspace = workspace
        self.recent = recent
        self._folders: list[str] = []

    def on_mount(self) -> None:
        self.refresh_candidates()
        self._scan_folders()

    def on_focus(self) -> None:
        self.refresh_candidates()

    def refresh_candidates(self) -> None:
        self.source_suggester.candidates = source_candidates(self.workspace, self.recent, self._folders)

    @work(thread=True, exit_on_error=False, group="scan-folders")
    def _scan_folders(self) -> None:
        folders = find_model_folders(Path.cwd())
        self.app.call_from_thread(self._folders_found, folders)

    def _folders_found(self, folders: list[str]) -> None:
        self._folders = folders
        self.refresh_candidates()

    async def action_submit(self) -> None:
        if self.cursor_at_end and self.selection.is_empty:
            self.action_cursor_right()  # accepts the completion shown after the cursor; without one it stays put
        await super().action_submit()
