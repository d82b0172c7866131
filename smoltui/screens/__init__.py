"""The dashboard's screens, one module per mode, registered once in SCREENS.

The app's modes, its number keys, the tabs of the status line, the help panel and the command palette all read
SCREENS, so adding a screen is one line here plus its module. A screen's module is imported on its first visit:
the first frame needs only the start screen.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.screen import Screen


@dataclass(frozen=True)
class ScreenEntry:
    """One mode of the dashboard: its key, its title, and where its screen class lives."""

    mode: str
    key: str
    title: str
    module: str
    class_name: str

    def screen_class(self) -> type[Screen]:
        return getattr(importlib.import_module(self.module), self.class_name)

    def make(self) -> Screen:
        return self.screen_class()()


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("home", "1", "Home", "smoltui.screens.home", "HomeScreen"),
    ScreenEntry("model", "2", "Model", "smoltui.screens.model", "ModelScreen"),
    ScreenEntry("train", "3", "Train", "smoltui.screens.train", "TrainScreen"),
    ScreenEntry("runs", "4", "Runs", "smoltui.screens.runs", "RunsScreen"),
    ScreenEntry("sample", "5", "Sample", "smoltui.screens.sample", "SampleScreen"),
    ScreenEntry("lens", "6", "Lens", "smoltui.screens.lens", "LensScreen"),
    ScreenEntry("attention", "7", "Attention", "smoltui.screens.attention", "AttentionScreen"),
    ScreenEntry("surgery", "8", "Surgery", "smoltui.screens.surgery", "SurgeryScreen"),
)
