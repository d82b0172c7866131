"""Commands that open the dashboard: `demo` (a model learning at once), `watch` (one run, for SSH), `serve`
(the dashboard in a browser). `smoltui` with no command opens it too (see the root callback).

The app module is imported inside the commands, so `smoltui --help` stays light.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.engine.errors import UserError
from smoltui.engine.workspace import workspace_path

# The demo: nano-char on the built-in corpus. Of the shapes measured (context 64/128 x batch 8/16), 64 x 8 takes
# the most optimizer steps per second at about the same tokens per second, and its loss falls furthest per token
# early on, so the curve moves within seconds on a 2-core CPU (about 11 steps/s there). It ends by itself after
# 3000 steps (about one pass over the corpus) or 10 minutes. bench/bench_ui.py measures it.
DEMO_SETTINGS: dict[str, Any] = {
    "model": "nano-char",
    "corpus": "builtin:pydocs",
    "context": 64,
    "batch_size": 8,
    "lr": 2e-3,
    "warmup_steps": 20,
    "eval_every": 50,
    "eval_batches": 10,
    "sample_every": 50,
    "sample_length": 120,
    "checkpoint_every": 500,
    "max_steps": 3000,
    "time_budget_s": 600.0,
}
LOOPBACK_NAMES = ("localhost",)

FpsOption = Annotated[float, typer.Option("--fps", help="Screen refreshes per second; lower it over slow links.")]


def open_dashboard(
    workspace: Path | None = None,
    *,
    start_run: str | None = None,
    start_model: str | None = None,
    read_only: bool = False,
    fps: float = 4.0,
) -> None:
    """Run the dashboard in this terminal until the person quits it; runs keep going either way."""
    from smoltui.app import SmolApp

    start_mode = "home" if start_run is None else "train"
    SmolApp(
        workspace,
        start_mode=start_mode,
        start_run=start_run,
        start_model=start_model,
        read_only=read_only,
        refresh_fps=fps,
    ).run()


def _check_fps(fps: float) -> None:
    if not fps > 0 or fps > 60:
        raise typer.BadParameter(f"--fps must lie above 0 and at most 60, not {fps:g}.")


@app.command()
@reports_user_errors
def demo(workspace: WorkspaceOption = None, fps: FpsOption = 4.0) -> None:
    """Train the nano-char model on Python's own docstrings and watch it learn (it ends by itself), with the
    bundled SmolLM2-135M-Instruct loaded beside it to talk to (key 5) and look inside."""
    from smoltui.engine.bundled import bundled_models
    from smoltui.engine.config import TrainConfig
    from smoltui.engine.runs import launch_run

    _check_fps(fps)
    handle = launch_run(TrainConfig(**DEMO_SETTINGS), workspace)
    handle.close()
    bundled = next((model for model in bundled_models() if model.available), None)
    if bundled is None:
        error_console.print(f"[yellow]note:[/] {bundled_models()[0].hint}", highlight=False, soft_wrap=True)
    open_dashboard(workspace, start_run=handle.run_id, start_model=bundled and bundled.name, fps=fps)


@app.command()
@reports_user_errors
def watch(
    run: Annotated[str, typer.Argument(help="Run id, a unique part of it, or 'latest'.")] = "latest",
    fps: FpsOption = 4.0,
    read_only: Annotated[bool, typer.Option("--read-only", help="Hide the controls (pause, stop, delete…).")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """The dashboard of one run, for SSH: any number of terminals may watch; closing one never touches the run."""
    from smoltui.engine.runs import find_run

    _check_fps(fps)
    run_dir = find_run(run, workspace)
    inside = run_dir.parent == workspace_path(workspace) / "runs"
    open_dashboard(workspace, start_run=run_dir.name if inside else str(run_dir), read_only=read_only, fps=fps)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@reports_user_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 and tunnel over SSH.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SMOLTUI_TOKEN",
            help="The token the URL must carry (default: a new random one each time).",
            show_default=False,
        ),
    ] = None,
    no_token: Annotated[
        bool, typer.Option("--no-token", help="Serve without a token: anyone who reaches the port drives smoltui.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """The dashboard in a browser, through textual-serve: each browser tab gets its own dashboard process.

    Like Jupyter, it prints a URL with a random token; requests without the token are refused.
    """
    from smoltui.serve import DashboardServer, new_token, served_url

    if not 0 < port < 65536:
        raise typer.BadParameter(f"--port must lie between 1 and 65535, not {port}.")
    if no_token and token is not None:
        raise typer.BadParameter("--no-token contradicts the token given by --token or $SMOLTUI_TOKEN; give only one.")
    if token == "":
        raise typer.BadParameter("--token must not be empty; pass --no-token to serve without one.")
    if no_token:
        _warn_no_token(host, port)
    else:
        token = token or new_token()
        if not is_loopback(host):
            _warn(
                f"listening on {host} sends the token and the dashboard unencrypted to whoever reaches this machine "
                f"on port {port}; prefer 127.0.0.1 and an SSH tunnel."
            )
    command = shlex.join([sys.executable, "-m", "smoltui", "--workspace", str(workspace_path(workspace))])
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    console.print(
        f"smoltui dashboard on {served_url(host, port, token)} (ctrl+c stops serving; runs keep going)",
        highlight=False,
        soft_wrap=True,
    )
    server = DashboardServer(command, host=host, port=port, token=token)
    try:
        server.serve()
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise UserError(f"cannot listen on {host}:{port} ({reason}); choose another --port or --host.") from None


def _warn(message: str, *, loud: bool = False) -> None:
    label = "[bold red]WARNING:[/]" if loud else "[bold yellow]warning:[/]"
    error_console.print(f"{label} {message}", highlight=False, soft_wrap=True)


def _warn_no_token(host: str, port: int) -> None:
    if is_loopback(host):
        _warn(
            f"serving without a token: every user of this machine can open {host}:{port} and drive smoltui "
            "(stop and delete runs)."
        )
    else:
        _warn(
            f"serving on {host} without a token: anyone who reaches this machine on port {port} can drive smoltui "
            "(start, stop and delete runs); drop --no-token and listen on 127.0.0.1 behind an SSH tunnel.",
            loud=True,
        )
