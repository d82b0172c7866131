"""The offer a screen that needs a model makes while none is loaded: press b to load the bundled SmolLM2 here (the
key, the sentence that says so, the load, and what the load's events say)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding

from smoltui.engine.bundled import bundled_models
from smoltui.engine.session import JobCancelled, JobFailed, JobFinished, JobProgressed
from smoltui.widgets.worker_errors import describe_error, report_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from smoltui.engine.session import Job
    from smoltui.screens.base import Workbench

BUNDLED = "smollm2-135m-instruct"
LOAD_BUNDLED_BINDING = Binding(
    "b", "load_bundled", "Load SmolLM2", tooltip=f"Load the bundled {BUNDLED} as the session's model"
)


class BundledModelOffer:
    """Mixin for a SmolScreen (listed before it): the screen puts LOAD_BUNDLED_BINDING among its BINDINGS, answers
    check_action("load_bundled") with `can_load_bundled()`, hands the events of `_load_job` to `load_event`, and
    says in AFTER_LOADING what to do once the model is there."""

    AFTER_LOADING: ClassVar[str] = "it is the session's model."  # said after "loaded smollm2-135m-instruct; "
    NO_MODEL_EXTRA: ClassVar[str] = ""  # the screen's own way on without a model, before the hint's full stop

    # What the screen provides (SmolScreen and the screen's own status line).
    smol: Workbench
    refresh_bindings: Callable[[], None]
    _say: Callable[[str], None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bundled_available = any(model.name == BUNDLED and model.available for model in bundled_models())
        self._load_job: Job | None = None  # the bundled model's load, while it runs

    def no_model_hint(self) -> str:
        """The sentence that says how to get a model, or "" while one is loaded."""
        if self.smol.session_model is not None:
            return ""
        bundled = f", or press b to load the bundled {BUNDLED} here" if self.bundled_available else ""
        return f"No model is loaded: load one on the Model screen (key 2){bundled}{self.NO_MODEL_EXTRA}."

    def can_load_bundled(self) -> bool:
        return self.bundled_available and self.smol.session_model is None and self._load_job is None

    def action_load_bundled(self) -> None:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # tqdm bars on stderr would tear the screen
        session = self.smol.session
        self._load_job = session.load(BUNDLED, tag=self, device=self.smol.device, workspace=self.smol.workspace)
        self._say(f"loading {BUNDLED}…")
        self.refresh_bindings()

    def load_event(self, event: Any) -> None:
        """One event of `_load_job`: each step of the load in the status line, then how it ended."""
        if isinstance(event, JobProgressed):
            self._say(str(event.event))
            return
        if not isinstance(event, JobFinished | JobFailed | JobCancelled):
            return  # it started: its steps say the rest
        self._load_job = None
        if isinstance(event, JobFinished):
            recent = self.smol.recent_sources  # the model inputs offer it first from now on
            if BUNDLED in recent:
                recent.remove(BUNDLED)
            recent.insert(0, BUNDLED)
            self._say(f"loaded {BUNDLED}; {self.AFTER_LOADING}")
        elif isinstance(event, JobFailed):
            report_error(self, event.error)  # type: ignore[arg-type]  # the screen is the DOM node
            self._say(f"nothing loaded: {describe_error(event.error)}")
        else:
            self._say("loading was cancelled: another model was asked for.")
        self.refresh_bindings()
