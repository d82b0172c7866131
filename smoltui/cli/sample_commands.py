"""Commands that talk to a model: `sample` (stream a completion or a chat answer) and `score` (perplexity).

Every sampler has an option, generated from SamplerSettings (the Sample screen's fields come from the same
declarations); a preset is the starting point and the options change it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.engine.config import parse_number
from smoltui.engine.errors import UserError
from smoltui.engine.sampler_settings import PRESETS, SamplerSettings, parse_order

SOURCE_HELP = "Preset, bundled model (smollm2-135m-instruct), .gguf file, folder, Hub id or run:<id>[@step]."


def _option(help_text: str, *names: str, **details: Any) -> Any:
    return typer.Option(*names, help=help_text, show_default=False, **details)


def _sampler_parameter(setting: dataclasses.Field) -> inspect.Parameter:
    """The `smoltui sample` option of one sampler setting, from its declaration."""
    flag, help_text = setting.metadata["option"], setting.metadata["help"]
    if setting.type == "bool":
        annotation: Any = Annotated[bool, _option(help_text, flag)]
        return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=annotation)
    if setting.type.startswith("tuple"):
        metavar = "TOKEN" if setting.name == "banned_tokens" else "TEXT"
        annotation = Annotated[list[str] | None, _option(help_text + " (repeatable)", flag, metavar=metavar)]
    else:
        metavar = "INT" if setting.type == "int" else "NUMBER"
        annotation = Annotated[str | None, _option(help_text, flag, metavar=metavar)]
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def sampler_settings(preset: str, options: dict[str, Any], tokenizer) -> SamplerSettings:
    """The preset changed by the options given (text read as the form reads it; --ban through the tokenizer)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}.", field="preset")
    changes: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value == [] or value is False:
            continue
        if name == "banned_tokens":
            from smoltui.engine.samplers import parse_banned

            changes[name] = parse_banned(value, tokenizer)
        elif name == "order":
            changes[name] = parse_order(",".join(value))
        elif isinstance(value, list):
            changes[name] = tuple(value)
        elif isinstance(value, str):
            changes[name] = parse_number(value, whole=_whole(name))  # the settings say why text is no number
        else:
            changes[name] = value
    return PRESETS[preset].replace(**changes)


def _whole(name: str) -> bool:
    return next(f for f in dataclasses.fields(SamplerSettings) if f.name == name).type == "int"


def sample(
    *,
    source: str,
    prompt: str,
    chat: bool,
    system: str | None,
    max_tokens: int,
    preset: str,
    seed: int | None,
    stop: list[str] | None,
    json_schema: Path | None,
    top: int,
    as_json: bool,
    device: str,
    dtype: str,
    workspace: Path | None,
    **options: Any,
) -> None:
    """Stream a completion of --prompt (or, with --chat, the model's answer to it), each token coloured by how
    likely the model found it; plain text when piped, one JSON object per token with --json."""
    from smoltui.engine.decoder import DecodeFinished, PromptTruncated, TokenGenerated, decode, eos_token_ids
    from smoltui.engine.session import prompt_ids, schema_constraint

    loaded = load_with_status(source, device, dtype, workspace)
    settings = sampler_settings(preset, options, loaded.tokenizer)
    notes: list[Any] = []
    messages = [{"role": "user", "content": prompt}] if chat else None
    if system is not None and not chat:
        raise UserError("--system sets the system prompt of a chat; add --chat.", field="system")
    ids = prompt_ids(
        loaded.tokenizer, prompt=None if chat else prompt, messages=messages, system=system, emit=notes.append
    )
    for note in notes:
        error_console.print(f"[yellow]note:[/] {note.note}", highlight=False)
    constraint = schema_constraint(json_schema, loaded.tokenizer, loaded.model) if json_schema else None
    colour = sys.stdout.isatty() and not as_json
    ends = set(eos_token_ids(loaded.model, loaded.tokenizer))  # an end-of-text token ends the text, unprinted
    events = decode(
        loaded.model,
        loaded.tokenizer,
        ids,
        max_new_tokens=max_tokens,
        sampling=settings,
        seed=seed,
        stop_strings=stop or (),
        top_n=top,
        constraint=constraint,
    )
    try:
        for event in events:
            if isinstance(event, PromptTruncated):
                error_console.print(f"[yellow]note:[/] {event.message}", highlight=False)
            elif isinstance(event, TokenGenerated) and (as_json or event.token_id not in ends):
                _show_token(event, colour, as_json)
            elif isinstance(event, DecodeFinished):
                _show_end(event, colour, as_json)
    except KeyboardInterrupt:
        events.close()
        sys.stdout.write("\n")
        error_console.print("stopped.", highlight=False)


def _show_token(event, colour: bool, as_json: bool) -> None:
    if as_json:
        record = {
            "index": event.index,
            "id": event.token_id,
            "text": event.text,
            "probability": event.probability,
            "rank": event.rank,
            "entropy": event.entropy,
            "forced": event.forced,
            "top": [[c.text, c.probability] for c in event.top_raw],
            "top_after_samplers": [[c.text, c.probability] for c in event.top_sampled],
        }
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif colour:
        from rich.text import Text

        from smoltui.formatting import probability_colour

        console.print(Text(event.text, style=probability_colour(event.probability)), end="", soft_wrap=True)
    else:
        sys.stdout.write(event.text)
    sys.stdout.flush()


def _show_end(event, colour: bool, as_json: bool) -> None:
    if as_json:
        record = {key: getattr(event, key) for key in ("stop_reason", "text", "new_tokens", "tokens_per_s", "seed")}
        sys.stdout.write(json.dumps({"finished": record}, ensure_ascii=False) + "\n")
        return
    sys.stdout.write("\n")
    if colour:
        from smoltui.formatting import PROBABILITY_BANDS

        legend = "  ".join(f"[{shade}]■[/] {label}" for _, shade, label in PROBABILITY_BANDS)
        error_console.print(
            f"[dim]{event.new_tokens} tokens, {event.tokens_per_s:.1f} tokens/s, stopped by {event.stop_reason}; "
            f"probability:[/] {legend}",
            highlight=False,
        )


sample.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "source",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[str, typer.Argument(help=SOURCE_HELP)],
        ),
        *(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, annotation, default in (
                (
                    "prompt",
                    Annotated[str, _option("The text to continue, or with --chat your message.", "--prompt", "-p")],
                    ...,
                ),
                (
                    "chat",
                    Annotated[
                        bool, _option("Send --prompt as a chat message through the model's chat template.", "--chat")
                    ],
                    False,
                ),
                ("system", Annotated[str | None, _option("The system prompt of the chat.", "--system")], None),
                (
                    "max_tokens",
                    Annotated[
                        int, _option("Stop after this many new tokens (default 256).", "--max-tokens", metavar="INT")
                    ],
                    256,
                ),
                (
                    "preset",
                    Annotated[
                        str,
                        _option(f"Sampler preset to start from: {', '.join(PRESETS)} (default balanced).", "--preset"),
                    ],
                    "balanced",
                ),
                (
                    "seed",
                    Annotated[
                        int | None,
                        _option("Seed of the random draws, for the same text again.", "--seed", metavar="INT"),
                    ],
                    None,
                ),
                (
                    "stop",
                    Annotated[
                        list[str] | None, _option("Stop as soon as the text contains this (repeatable).", "--stop")
                    ],
                    None,
                ),
                (
                    "json_schema",
                    Annotated[
                        Path | None,
                        _option("Write JSON that fits this JSON schema file.", "--json-schema", metavar="FILE"),
                    ],
                    None,
                ),
                (
                    "top",
                    Annotated[int, _option("Alternatives per token in --json (default 20).", "--top", metavar="N")],
                    20,
                ),
                ("as_json", Annotated[bool, _option("One JSON object per token, for scripts.", "--json")], False),
                (
                    "device",
                    Annotated[str, _option("auto, cpu, cuda, cuda:N or mps (default auto).", "--device")],
                    "auto",
                ),
                ("dtype", Annotated[str, _option("auto, fp32, bf16 or fp16 (default auto).", "--dtype")], "auto"),
                ("workspace", WorkspaceOption, None),
            )
        ),
        *(_sampler_parameter(setting) for setting in dataclasses.fields(SamplerSettings)),
    ]
)
app.command()(reports_user_errors(sample))


@app.command()
@reports_user_errors
def score(
    source: Annotated[str, typer.Argument(help=SOURCE_HELP)],
    text: Annotated[Path, _option("The text file to score.", "--text", metavar="FILE")],
    as_json: Annotated[bool, _option("Every token's log-probability as JSON lines.", "--json")] = False,
    device: Annotated[str, _option("auto, cpu, cuda, cuda:N or mps (default auto).", "--device")] = "auto",
    dtype: Annotated[str, _option("auto, fp32, bf16 or fp16 (default auto).", "--dtype")] = "auto",
    workspace: WorkspaceOption = None,
) -> None:
    """The perplexity of a text under a model, and with --json the log-probability of every token."""
    from smoltui.engine.scoring import score_text

    if not text.is_file():
        raise UserError(f"no such file: {text}; pass a text file to --text.", field="text")
    try:
        content = text.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{text} is not UTF-8 text; pass a text file.", field="text") from None
    loaded = load_with_status(source, device, dtype, workspace)
    result = score_text(loaded.model, loaded.tokenizer, content)
    if as_json:
        for token in result.tokens:
            sys.stdout.write(json.dumps({"id": token.token_id, "text": token.text, "logprob": token.logprob}) + "\n")
    console.print(
        f"perplexity {result.perplexity:.3f} · {result.mean_nll:.4f} nats/token · {result.scored_tokens:,} tokens "
        f"scored · {loaded.source}",
        highlight=False,
    )


def load_with_status(source: str, device: str, dtype: str, workspace: Path | None):
    """load_model with its steps on a status line (no transformers progress bars), for the model commands."""
    from transformers.utils import logging as hf_logging

    from smoltui.engine.models import load_model

    hf_logging.disable_progress_bar()  # the status line reports the steps; bars on stderr would tear it
    with error_console.status(f"loading {source}…") as status:
        return load_model(
            source, device=device, dtype=dtype, workspace=workspace, progress=lambda line: status.update(line)
        )
