"""The workspace folder (`./.smoltui/` by default) holding runs, caches and session state, and atomic writes into it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from smoltui.engine.errors import UserError

WORKSPACE_ENV = "SMOLTUI_WORKSPACE"
DEFAULT_WORKSPACE = ".smoltui"


def workspace_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The workspace for this call: `explicit`, else $SMOLTUI_WORKSPACE, else ./.smoltui (not created)."""
    chosen = explicit or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Path(chosen).expanduser().absolute()


def ensure_private_dir(path: Path) -> Path:
    """Create `path` and any missing parents readable by their owner only; return it."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
    except NotADirectoryError:
        raise UserError(f"{path} cannot be created because a file stands in its way; move that file.") from None
    except PermissionError:
        raise UserError(f"no permission to create {path}; pass --workspace with a folder you own.") from None
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def open_workspace(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder, created owner-only if missing."""
    return ensure_private_dir(workspace_path(explicit))


def runs_dir(workspace: Path) -> Path:
    return ensure_private_dir(workspace / "runs")


def cache_dir(workspace: Path, kind: str) -> Path:
    """A cache folder under the workspace, e.g. cache_dir(ws, "tokens")."""
    return ensure_private_dir(workspace / "cache" / kind)


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: readers see all or nothing."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        fsync_dir(path.parent)  # the rename itself must reach the disk before the write counts as done
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
