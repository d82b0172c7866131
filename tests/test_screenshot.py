"""The palette's Screenshot saves into the workspace, where a server reached over SSH has no ~/Downloads."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import FIXED_NOW

from smoltui.app import SmolApp


async def test_the_palettes_screenshot_lands_in_the_workspace_and_says_where(workspace, tmp_path, monkeypatch):
    home = tmp_path / "home"  # a fresh account: no ~/Downloads, Textual's default folder
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    app = SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        said: list[str] = []
        for _ in range(100):  # the palette waits 0.1 s, then a thread writes the file
            await pilot.pause(0.05)
            said = [str(n.message) for n in app._notifications if n.title == "Screenshot"]
            if said:
                break
    assert len(said) == 1 and "Saved screenshot to" in said[0], said
    (shown,) = re.findall(r"'([^']+\.svg)'", said[0])
    saved = Path(shown)
    assert saved.is_absolute() and saved.parent == workspace / "screenshots"
    assert saved.read_text().lstrip().startswith("<svg") and "smoltui" in saved.read_text()
    assert (saved.parent.stat().st_mode & 0o777) == 0o700
    assert not (home / "Downloads").exists()
