"""Commands that look inside a model: `lens` (the logit-lens grid, animated as the model generates, or across a
run's checkpoints) and `attention` (one layer's attention heatmap)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.cli.sample_commands import SOURCE_HELP, load_with_status
from smoltui.engine.errors import UserError

DeviceOption = Annotated[
    str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (default auto).", show_default=False)
]
DtypeOption = Annotated[
    str, typer.Option("--dtype", help="auto, fp32, bf16 or fp16 (default auto).", show_default=False)
]
PromptOption = Annotated[str, typer.Option("--prompt", "-p", help="The text to look at.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON for scripts instead of the picture.")]


@app.command()
@reports_user_errors
def lens(
    source: Annotated[str, typer.Argument(help=SOURCE_HELP)],
    prompt: PromptOption,
    generate: Annotated[
        int,
        typer.Option(
            "--generate",
            help="Generate this many tokens (greedy), one new column each (default 0: none).",
            metavar="N",
            min=0,
            show_default=False,
        ),
    ] = 0,
    target: Annotated[
        str | None,
        typer.Option("--target", help="A token whose rank every layer gives (e.g. ' Paris').", metavar="TOKEN"),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", help="Top tokens per cell in --json (default 5).", metavar="K", show_default=False)
    ] = 5,
    checkpoints: Annotated[
        bool, typer.Option("--checkpoints", help="One grid per checkpoint of a run:<id> source.")
    ] = False,
    as_json: JsonOption = False,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    workspace: WorkspaceOption = None,
) -> None:
    """The logit lens: what each layer would predict at each position (layers as rows, the final one on top;
    each cell its top token, its background the probability). With --json, one object per position."""
    colour = sys.stdout.isatty() and not as_json
    if checkpoints:
        _lens_across_checkpoints(source, prompt, generate, target, top, as_json, colour, device, dtype, workspace)
        return
    from smoltui.engine.lens import lens_while_generating, logit_lens, target_token

    loaded = load_with_status(source, device, dtype, workspace)
    target_id = target_token(loaded.tokenizer, target).token_id if target is not None else None
    if not generate:
        grid = logit_lens(loaded.model, loaded.tokenizer, prompt, target=target_id, top_k=top)
        _note(grid.truncation)
        if as_json:
            _write_columns(grid, range(grid.positions))
        else:
            _print_grid(grid, colour)
        return
    events = lens_while_generating(
        loaded.model, loaded.tokenizer, prompt, max_new_tokens=generate, target=target_id, top_k=top
    )
    try:
        _follow_generation(events, as_json, colour)
    except KeyboardInterrupt:
        events.close()
        error_console.print("stopped.", highlight=False)


def _follow_generation(events, as_json: bool, colour: bool) -> None:
    """Draw (or write as JSON) each grid as the generation grows it; a terminal sees it animate."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from smoltui.cli.lens_views import lens_caption, lens_lines
    from smoltui.engine.decode_events import DecodeFinished, PromptTruncated
    from smoltui.engine.lens import LensGrown

    grid = None
    screen = Console()  # Live needs a console of its own to enter, not the CLI's lazy one
    live = Live(console=screen, auto_refresh=False) if colour else None
    with live or contextlib.nullcontext():
        for event in events:
            if isinstance(event, PromptTruncated):
                _note(event)
            elif isinstance(event, LensGrown):
                grid = event.grid
                if as_json:  # each position once its next token is known
                    _write_columns(grid, range(grid.positions - 1) if event.token is None else [grid.positions - 1])
                elif live is not None:
                    width = screen.width
                    lines = [
                        *lens_lines(grid, width, colour=True),
                        Text.from_markup(lens_caption(grid, width, colour=True)),
                    ]
                    live.update(Group(*lines), refresh=True)
            elif isinstance(event, DecodeFinished):
                if as_json:
                    record = {key: getattr(event, key) for key in ("stop_reason", "text", "new_tokens")}
                    sys.stdout.write(json.dumps({"finished": record}, ensure_ascii=False) + "\n")
                elif live is None and grid is not None:
                    _print_grid(grid, colour=False)


def _lens_across_checkpoints(source, prompt, generate, target, top, as_json, colour, device, dtype, workspace):
    from smoltui.engine.lens_checkpoints import checkpoint_lenses

    reference, run_colon, rest = source.partition(":")
    if not run_colon or reference != "run" or "@" in rest:
        raise UserError(
            "--checkpoints reads every checkpoint of a run; pass the run as run:<id> (without @step).",
            field="checkpoints",
        )
    if generate:
        raise UserError("--generate does not go with --checkpoints; drop one of them.", field="generate")
    with error_console.status("reading checkpoints…") as status:
        lenses = list(
            checkpoint_lenses(
                rest or "latest", prompt, target=target, top_k=top, workspace=workspace, device=device, dtype=dtype,
                progress=status.update,
            )
        )  # fmt: skip
    _note(lenses[0].grid.truncation)
    for found in lenses:
        grid = found.grid
        if as_json:
            columns = [_column(grid, position) for position in range(grid.positions)]
            sys.stdout.write(json.dumps({"step": found.step, "cached": found.cached, "columns": columns}) + "\n")
        else:
            console.print(f"[bold]step {found.step}[/]" + (" [dim](cached)[/]" if found.cached else ""))
            _print_grid(grid, colour)


def _print_grid(grid, colour: bool) -> None:
    from smoltui.cli.lens_views import lens_caption, lens_lines

    width = console.width
    for line in lens_lines(grid, width, colour=colour):
        console.print(line, soft_wrap=True, highlight=False)
    console.print(lens_caption(grid, width, colour=colour), highlight=False, markup=colour, soft_wrap=True)


def _column(grid, position: int) -> dict[str, Any]:
    from smoltui.cli.lens_views import lens_column_record

    return lens_column_record(grid, position)


def _write_columns(grid, positions) -> None:
    for position in positions:
        sys.stdout.write(json.dumps(_column(grid, position), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _note(truncation) -> None:
    if truncation is not None:
        error_console.print(f"[yellow]note:[/] {truncation.message}", highlight=False)


@app.command()
@reports_user_errors
def attention(
    source: Annotated[str, typer.Argument(help=SOURCE_HELP)],
    prompt: PromptOption,
    layer: Annotated[
        int, typer.Option("--layer", help="The layer (block index, default 0).", metavar="L", show_default=False)
    ] = 0,
    head: Annotated[
        int | None, typer.Option("--head", help="One head (default: the average of all heads).", metavar="H")
    ] = None,
    as_json: JsonOption = False,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    workspace: WorkspaceOption = None,
) -> None:
    """One layer's attention as a heatmap: queries as rows, keys as columns, two query rows per line."""
    from smoltui.cli.lens_views import attention_record, heatmap_lines
    from smoltui.engine.attention import attention_maps, check_layer_and_head
    from smoltui.heatmap import heat_legend

    loaded = load_with_status(source, device, dtype, workspace)
    check_layer_and_head(loaded.model, layer, head)
    maps = attention_maps(loaded.model, loaded.tokenizer, prompt, layers=[layer])
    _note(maps.truncation)
    if as_json:
        sys.stdout.write(json.dumps(attention_record(maps, layer, head), ensure_ascii=False) + "\n")
        return
    colour = sys.stdout.isatty()
    matrix = maps.layer(layer)[head] if head is not None else maps.head_average[0]  # (T, T)
    which = f"head {head}" if head is not None else f"the average of {maps.heads} heads"
    from rich.text import Text

    entropies = " ".join(f"{value:.2f}" for value in maps.head_entropy[0])
    title = Text.assemble(
        (f"layer {layer}, {which}", "bold"), f" · rows: queries, columns: keys · entropy per head (nats): {entropies}"
    )
    console.print(title, highlight=False, soft_wrap=True)
    for line in heatmap_lines(matrix, maps.tokens, console.width, colour=colour):
        console.print(line, soft_wrap=True, highlight=False)
    console.print(heat_legend(colour=colour), highlight=False)
