"""Numbers, times and statuses as people read them, shared by the command line and the screens, so that both say
the same thing the same way (neither torch nor textual here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from smoltui.engine.run_contract import STATUS_LOOKS

# A status's colour role (run_contract.STATUS_LOOKS) as a terminal colour, for the command line; the screens use
# their theme's `$text-<role>` instead.
TERMINAL_COLOURS = {
    "muted": "bright_black",
    "success": "green",
    "warning": "yellow",
    "primary": "cyan",
    "secondary": "blue",
    "error": "red",
}


def format_bytes(count: float) -> str:
    """512 -> "512 B", 1536 -> "1.5 KiB", 3 * 2**30 -> "3.0 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable: GiB ends the loop")


def format_count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def format_step(step: int | None, max_steps: int | None) -> str:
    if step is None:
        return "-"
    return f"{step}/{max_steps}" if max_steps else str(step)


def format_compact(value: float) -> str:
    """1234 -> "1,234", 1234567 -> "1.23M"."""
    if abs(value) < 100_000:
        return f"{value:,.0f}"
    for unit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= unit:
            return f"{value / unit:.3g}{suffix}"
    return f"{value:.0f}"


def format_ago(timestamp: float | None, now: float | None = None) -> str:
    """How long ago `timestamp` was, in its largest whole unit: 5s ago, 3m ago, 1h ago (for 1 h 40 min), 4d ago."""
    if timestamp is None:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def format_duration(seconds: float) -> str:
    """3 -> "3s", 192 -> "3m12s", 3840 -> "1h04m", 200000 -> "2d07h"."""
    seconds = int(max(0, round(seconds)))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_clock(seconds: float) -> str:
    """Time since the start of a run as m:ss or h:mm:ss."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3_600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# How likely a token was, as a colour: the Sample screen and `smoltui sample` shade each token with it, and both
# show this legend. Mid-tones that read on dark and light backgrounds; the bands are upper bounds.
PROBABILITY_BANDS: tuple[tuple[float, str, str], ...] = (
    (0.01, "#e5484d", "<1%"),
    (0.05, "#f28e2b", "<5%"),
    (0.20, "#d4a017", "<20%"),
    (0.50, "#a3b83f", "<50%"),
    (0.80, "#3fb37f", "<80%"),
    (1.01, "#4c9be8", "≥80%"),
)


def probability_colour(probability: float) -> str:
    """The colour of a token chosen with this probability (see PROBABILITY_BANDS)."""
    return next(colour for bound, colour, _ in PROBABILITY_BANDS if probability < bound)


def status_look(status: str) -> tuple[str, str]:
    """(glyph, colour role) of a run status."""
    return STATUS_LOOKS.get(status, ("·", "foreground"))


def status_markup(status: str) -> str:
    """A status in rich markup for the terminal, coloured as the dashboard colours it."""
    _, role = status_look(status)
    return f"[{TERMINAL_COLOURS.get(role, 'default')}]{status}[/]"


def last_line(message: str) -> str:
    """The line of a multi-line message worth a glance: a traceback's last line names the exception."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def visible(text: str) -> str:
    """A token's text with its invisible characters drawn: newline ↵, tab ⇥, carriage return ␍, others ·."""
    drawn = text.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    return "".join(char if char.isprintable() else "·" for char in drawn)


def fit_text(text: str, width: int) -> str:
    """`text` cut to `width` characters, an ellipsis marking the cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def display_path(path: Path) -> str:
    """`path` as a person would type it: relative to the current folder when inside it, else with ~."""
    try:
        relative = path.relative_to(Path.cwd())
        return f"./{relative}" if str(relative) != "." else "."
    except ValueError:
        home = Path.home()
        return f"~{os.sep}{path.relative_to(home)}" if path.is_relative_to(home) else str(path)
