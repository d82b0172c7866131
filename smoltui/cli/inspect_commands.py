"""Commands that describe things without changing them: `info` (a model) and `corpus` (a text source)."""

from __future__ import annotations

from typing import Annotated

import typer

from smoltui.cli import WorkspaceOption, app, console, error_console, reports_user_errors
from smoltui.formatting import format_bytes


@app.command()
@reports_user_errors
def info(
    source: Annotated[
        str,
        typer.Argument(help="Preset, bundled model (smollm2-135m-instruct), .gguf file, folder, Hub id or run:<id>."),
    ],
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="char, bpe:N, a tokenizer folder or Hub id.", show_default=False)
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, fp32, bf16 or fp16.")] = "auto",
    depth: Annotated[int, typer.Option("--depth", help="How deep the module table goes.")] = 3,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow a model folder's own Python code to run.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Describe a model: architecture, parameter counts, shape, memory, and its modules.

    A GGUF file (or the bundled model) is converted once into the user cache; the status line shows each step.
    """
    from rich.table import Table
    from transformers.utils import logging as hf_logging

    from smoltui.engine.models import GGUF_KINDS, load_model, module_table

    hf_logging.disable_progress_bar()  # the status line reports the steps; bars on stderr would garble it
    with console.status(f"loading {source}…") as status:
        loaded = load_model(
            source,
            tokenizer=tokenizer,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            workspace=workspace,
            progress=status.update,
        )
    summary = loaded.summary
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")  # paths whole, wrapped, rather than cut with an ellipsis
    rows = [
        ("source", f"{loaded.source} ({loaded.kind_label})"),
        *([("converted to", str(loaded.folder))] if loaded.kind in GGUF_KINDS else []),
        ("architecture", f"{summary.architecture} ({summary.family})"),
        ("parameters", f"{summary.total_params:,}"),
        ("  embedding", f"{summary.embedding_params:,}"),
        ("  non-embedding", f"{summary.non_embedding_params:,}"),
        ("layers", str(summary.layers)),
        ("heads / KV heads", f"{summary.heads} / {summary.kv_heads}"),
        ("hidden", str(summary.hidden)),
        ("context", str(summary.context)),
        ("vocab", f"{summary.vocab:,}"),
        ("dtype / device", f"{summary.dtype} / {summary.device}"),
        ("memory", format_bytes(summary.bytes)),
    ]
    for name, value in rows:
        facts.add_row(name, value)
    console.print(facts)
    modules = Table("module", "type", "parameters", box=None, title="modules", title_justify="left")
    for row in module_table(loaded.model, max_depth=depth):
        modules.add_row("  " * row.depth + (row.name.rsplit(".", 1)[-1] or "(model)"), row.kind, f"{row.params:,}")
    console.print(modules)


@app.command()
@reports_user_errors
def corpus(
    source: Annotated[str, typer.Argument(help="A .txt/.md file, a folder of them, a .jsonl, or builtin:pydocs.")],
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="char, bpe:N, a tokenizer folder or Hub id.")] = "char",
    context: Annotated[
        int | None, typer.Option("--context", help="Check that each split fits this context.", show_default=False)
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Count a corpus: characters, tokens, and the train/validation split (tokens cached for training)."""
    from rich.table import Table

    from smoltui.engine.batches import check_fits_context
    from smoltui.engine.data import read_corpus, tokenize_corpus
    from smoltui.engine.tokenizers import load_tokenizer
    from smoltui.engine.workspace import cache_dir, open_workspace

    text = read_corpus(source)
    for warning in text.warnings:
        error_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    tok = load_tokenizer(tokenizer, corpus_texts=lambda: [text.text])
    with console.status("tokenising…"):
        tokenized = tokenize_corpus(text, tok, cache_dir=cache_dir(open_workspace(workspace), "tokens"))
    if context is not None:
        check_fits_context(tokenized, context)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("source", source)
    facts.add_row("characters", f"{len(text.text):,}")
    facts.add_row("tokenizer", f"{tokenizer} (vocab {len(tok):,})")
    facts.add_row("tokens", f"{len(tokenized.ids):,}" + (" (from cache)" if tokenized.cache_hit else ""))
    facts.add_row("train / val", f"{len(tokenized.train):,} / {len(tokenized.val):,} tokens (last 5% is validation)")
    console.print(facts)
