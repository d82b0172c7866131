"""SVG snapshots of the dashboard's screens at 120x40 and 80x24 (pytest-textual-snapshot).

Everything that would change between runs is fixed: the app's clock, the run ids and times (runs written
straight into the store), the workspace path (shown relative to the current folder), the device (cpu), the
cursor blink. The Train screen is the real one: the help panel lists its keys.
`uv run pytest tests/test_screens_snapshots.py --snapshot-update` rewrites them after a deliberate change.
"""

from __future__ import annotations

import sqlite3

import pytest
from conftest import FIXED_NOW, settle
from textual.widgets import Input

from smoltui.app import SmolApp

SIZES = pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])


@pytest.fixture(autouse=True)
def steady_screen(monkeypatch, tmp_path, workspace):
    """No blinking cursor, and the workspace shown as ./ws whatever the temporary folder is called."""
    mounted = Input._on_mount

    def mount_without_blink(self, event):
        mounted(self, event)
        self.cursor_blink = False

    monkeypatch.setattr(Input, "_on_mount", mount_without_blink)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def two_runs(write_run):
    write_run("20300101-120000-tiny", losses=(4.31, 3.82, 3.4, 3.02, 2.87), val_loss=2.95, started=FIXED_NOW - 7200)
    write_run(
        "20300101-133000-nano-char",
        status="stopped",
        model="nano-char",
        losses=(4.5, 3.9, 3.3),
        val_loss=None,
        tokens_per_s=2048.0,
        started=FIXED_NOW - 420,
        max_steps=3000,
    )


def make_app(workspace) -> SmolApp:
    return SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW)


@SIZES
def test_home(snap_compare, workspace, two_runs, size):
    """Home: the tabs with Home lit and "no run training" on top; the workspace panel (path ./ws, no model
    loaded, device auto, corpus notes.txt, 2 runs); the four quick actions with their keys; the recent runs,
    the stopped nano-char run first (7m ago), then the finished tiny run (2h ago); the footer's keys."""
    assert snap_compare(make_app(workspace), terminal_size=size, run_before=settle)


@SIZES
def test_model_with_a_loaded_tiny_model(snap_compare, workspace, size):
    """Model after loading the `tiny` preset: "tiny · cpu fp32" on the right of the top line; the source input
    holding "tiny" and the line "loaded tiny · preset (fresh weights) · on cpu"; the summary (GPT2LMHeadModel,
    30,688 parameters, 2 layers, 2 heads, hidden 32, context 64, vocab 99, fp32, cpu, 119.9 KiB, the LM head
    tied to the embedding); the module tree open on transformer (wte, wpe, drop, h collapsed, ln_f) and lm_head
    "tied to the embedding"."""

    async def load_tiny(pilot):
        await pilot.press("2", "l", *"tiny", "enter")
        await settle(pilot)

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=load_tiny)


@SIZES
def test_runs_with_finished_runs(snap_compare, workspace, two_runs, size):
    """Runs: the table of both runs, newest first, with status (stopped, finished), model, step (3/3000, 5/5),
    train and val loss, tokens/s and how long ago each started; the cursor on the first row, which is marked
    (● in the first column); the hint saying o opens it; the footer's Open, Mark, Compare, Delete, Refresh."""

    async def mark_first(pilot):
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("space")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=mark_first)


@SIZES
def test_help(snap_compare, workspace, size):
    """Help over Home: a framed "Keys" panel listing Everywhere (1-5 screens, ? keys, q quit, ^p palette),
    then the keys of the Home, Model, Train (pause and resume, stop, log y, +/- smoothing, zoom, new run,
    checkpoint, sample, start run, back to run), Runs and Sample screens with what each does; "esc closes this
    panel" below (the panel scrolls: the later screens are below the fold)."""

    async def open_help(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=open_help)


# -- the Sample screen: the tiny preset (weights drawn from seed 0), a fixed sampling seed ---------------------

CAT_TEXT = "the cat sat on the mat. "


async def open_sample_with_tiny(pilot, *keys: str) -> None:
    from smoltui.engine.models import load_model

    pilot.app.session.use(load_model("tiny", device="cpu"))
    await pilot.press("5", *keys)
    await settle(pilot)


async def generate(pilot, prompt: str, **fields: str) -> None:
    form = pilot.app.screen.query_one("SamplerForm")
    for name, text in {"max_new_tokens": "40", "seed": "7", **fields}.items():
        form.set_field(name, text)
    field = pilot.app.screen.query_one("#prompt", Input)
    field.value = prompt
    field.focus()
    await pilot.press("enter")
    await settle(pilot)


@SIZES
def test_sample_a_completion_with_the_token_cursor(snap_compare, workspace, size):
    """Sample after completing "Once upon a time" with the tiny model (balanced preset, seed 7, 40 tokens): the
    prompt dim and the 40 tokens after it, each in its probability colour, the fourth-last reversed under the
    cursor; "40 tokens · max tokens" under the text; the probability legend (<1% … ≥80%); "completion · preset
    balanced · seed 7"; the entropy sparkline; the side panel "Token" listing that token's probability, rank and
    entropy and its top 20 alternatives with their raw and sampled probabilities, the chosen one marked ▶."""

    async def complete(pilot):
        await open_sample_with_tiny(pilot, "c")
        await generate(pilot, "Once upon a time")
        await pilot.press("escape", "t", "left", "left", "left")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=complete)


@SIZES
def test_sample_without_a_model(snap_compare, workspace, size):
    """Sample with no model loaded: "Chat · no model" around the sentence that says to load one on the Model screen
    (key 2) or press b for the bundled smollm2-135m-instruct (where it is installed), the same sentence on the
    status line, the empty system prompt and message fields; the side panel "Samplers" with the presets (balanced
    lit), "preset balanced", the Output fields (max tokens 256, seed empty: random, stop strings, JSON output
    off, schema file) and the samplers' fields from temperature down; the footer's Generate and Load SmolLM2."""

    async def open_sample(pilot):
        await pilot.press("5")
        await settle(pilot)

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=open_sample)


@pytest.fixture
def second_tiny_model(tmp_path):
    """Model B in ./tiny-b (the current folder): a 2-layer, 32-wide GPT-2 with the char tokenizer and seeded
    weights, trained for 40 steps on "the cat sat on the mat." so that it clearly differs from A."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from smoltui.engine.tokenizers import char_tokenizer

    torch.manual_seed(1)
    model, tokenizer = (
        GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=99)),
        char_tokenizer(),
    )
    ids = torch.tensor([tokenizer(CAT_TEXT * 2)["input_ids"]])  # (1, T)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path / "tiny-b")
    tokenizer.save_pretrained(tmp_path / "tiny-b")
    return "tiny-b"


def test_sample_a_b_of_two_models(snap_compare, workspace, second_tiny_model):
    """A/B at 120x40: "Model B tiny-b" on top; two columns, "A · tiny" and "B · tiny-b", each "Once" (dim) then 24
    tokens in their probability colours (B, trained on one sentence, sure of more of its tokens), "24 tokens · max
    tokens" under each; "completion · preset balanced · seed 7 · sparkline: entropy (e)" and which colour is A's
    and B's; the sparkline with one line per model; the samplers' side panel."""

    async def a_b(pilot):
        await open_sample_with_tiny(pilot, "c", "a")
        pilot.app.screen.query_one("#b-source", Input).value = second_tiny_model
        await generate(pilot, "Once", max_new_tokens="24")
        pilot.app.screen.set_focus(None)
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=(120, 40), run_before=a_b)


def test_sample_a_b_against_a_tweak(snap_compare, workspace):
    """A/B at 120x40 with model B "tweak: mlp.c_proj=0.05 ln_f=-0.5" (the tiny model tweaked): two columns, "A ·
    tiny" and "B · A tweaked: mlp.c_proj +0.05 (2 params), ln_f -0.5 (1 param)" (cut at the border), each "Once"
    (dim) then 24 tokens drawn with seed 7, B's differing from A's; the sparkline with one line per model."""

    async def a_b(pilot):
        await open_sample_with_tiny(pilot, "c", "a")
        pilot.app.screen.query_one("#b-source", Input).value = "tweak: mlp.c_proj=0.05 ln_f=-0.5"
        await generate(pilot, "Once", max_new_tokens="24")
        pilot.app.screen.set_focus(None)
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=(120, 40), run_before=a_b)


def test_sample_surprise_diff(snap_compare, workspace, second_tiny_model):
    """The surprise diff at 120x40 of the typed "the cat sat on the mat." under A (tiny) and B (tiny-b, trained on
    that sentence): "Surprise diff · A tiny vs B tiny-b", the text's tokens shaded by log p(B) − log p(A), most of
    them blue (B finds them far likelier), the first one dim (unscored), "perplexity A … · B …" under them; the
    diverging legend (≤−2 … >+2); the sparkline of both models' surprise, B's lower; the side panel "Token" on the
    last token, with its probability, rank and surprise under A and under B and how many times likelier B finds
    it."""

    async def diff(pilot):
        await open_sample_with_tiny(pilot, "d")
        pilot.app.screen.query_one("#b-source", Input).value = second_tiny_model
        field = pilot.app.screen.query_one("#prompt", Input)
        field.value = CAT_TEXT.strip()
        field.focus()
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("escape", "t")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=(120, 40), run_before=diff)


# -- the Lens screen: model B of the Sample snapshots (trained on the cat sentence), greedy ---------------------


@SIZES
def test_lens_of_a_generation_with_the_cell_cursor(snap_compare, workspace, second_tiny_model, size):
    """Lens after "the cat sat" with tiny-b and 8 tokens generated, paused on the last frame: "Lens · tiny-b · 8/8
    +7 → …" over the grid (next tokens on top, layer 1, layer 0, embeddings, the input characters at the bottom),
    each cell its top token on its probability's colour, • where it came next, the last positions in sight (the
    subtitle says which at 80x24); the cursor reversed on layer 0 two columns from the end, its row label and input
    reversed too; the legend of the probability mode; "paused · 8 frames/s (+ -) · frame 8/8 (, .)"; the prompt
    and the generate (8), target and run fields; the side panel with that cell's top 10, bars, entropy, KL and
    p(next)."""

    async def lens(pilot):
        from smoltui.engine.models import load_model

        pilot.app.session.use(load_model(second_tiny_model, device="cpu"))
        await pilot.press("6")
        await settle(pilot)
        screen = pilot.app.screen
        screen.query_one("#generate", Input).value = "8"
        field = screen.query_one("#prompt", Input)
        field.value = "the cat sat"
        field.focus()
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("escape", "end", "left", "left", "down")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=lens)


@SIZES
def test_lens_without_a_model(snap_compare, workspace, size):
    """Lens with no model loaded: "Lens · no model" around the sentence that says to load one on the Model screen
    (key 2), or press b for the bundled smollm2-135m-instruct (where it is installed), or type a run id; the legend
    of the probability mode; "paused · 8 frames/s (+ -)"; the empty prompt, generate 16, target and run fields;
    the side panel "No grid yet"; the footer's Compute and Load SmolLM2."""

    async def open_lens(pilot):
        await pilot.press("6")
        await settle(pilot)

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=open_lens)


# -- the Attention screen: the tiny preset with four heads (weights drawn from seed 0), an 80-character prompt ---

ATTENTION_PROMPT = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. Hello!"


async def open_attention_with_tiny(pilot, *keys: str) -> None:
    from smoltui.engine.models import load_model

    pilot.app.session.use(load_model("tiny", device="cpu", overrides={"n_head": 4, "n_positions": 128}))
    await pilot.press("7", "i")
    pilot.app.screen.query_one("#attn-prompt", Input).value = ATTENTION_PROMPT
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press(*keys)
    await settle(pilot)


@SIZES
def test_attention_heatmap_of_an_80_character_prompt(snap_compare, workspace, size):
    """Attention, layer 1 head 1 of the tiny model on an 80-character prompt: "Layer 1/1 · head 1/3 · entropy … ·
    tiny" around the half-block heatmap, the last queries that fit (their characters on the left, two per line),
    the upper triangle blank, the position ticks and the keys along the bottom; "queries …–79 of 80 · ↑↓ scroll";
    the legend from 0 to the largest weight past the first query; the prompt; at 120x40 the Layers panel with
    layer 1 marked, each layer's entropy and norm bars; the footer's keys."""

    async def heatmap(pilot):
        await open_attention_with_tiny(pilot, "right_square_bracket", "right_curly_bracket")

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=heatmap)


def test_attention_head_grid(snap_compare, workspace):
    """The head grid at 120x40: "Layer 0/1 · 4 heads and their average", five triangular thumbnails titled "h0 H
    3.42"… "avg H 3.42", the cursor on h1 (reversed title), the grid's keys in the legend line."""

    async def grid(pilot):
        await open_attention_with_tiny(pilot, "g", "right")

    assert snap_compare(make_app(workspace), terminal_size=(120, 40), run_before=grid)


def test_attention_text_view(snap_compare, workspace):
    """The text view at 80x24: the prompt with each character's background the weight that character 74 ('H' of
    "Hello") of head 0 in layer 0 gives it, the characters after it unshaded, the chosen one reversed; the title
    names the token, the legend the scale from 0 to 1."""

    async def text(pilot):
        await open_attention_with_tiny(pilot, "t", *["left"] * 5)

    assert snap_compare(make_app(workspace), terminal_size=(80, 24), run_before=text)


def test_attention_without_a_model(snap_compare, workspace):
    """Attention with no model at 80x24: the sentence saying to load one on the Model screen (key 2) or to press b
    for the bundled SmolLM2; the empty prompt; the footer's Type and Load SmolLM2 with the rest greyed."""

    async def open_attention(pilot):
        await pilot.press("7")
        await settle(pilot)

    assert snap_compare(make_app(workspace), terminal_size=(80, 24), run_before=open_attention)


# -- the Surgery screen: the weights viewer on the tiny preset (weights drawn from seed 0) ----------------------


async def weights_settled(pilot) -> None:
    await settle(pilot)
    while pilot.app.screen.weights_busy or pilot.app.session.busy:
        await pilot.pause(0.05)
    await pilot.pause()


@SIZES
def test_surgery_weights_of_the_tiny_model(snap_compare, workspace, size):
    """Surgery with the tiny preset, filtered to "mlp": "mlp" in the filter line; "Tensors · tiny · 8 of 28" over
    the MLP weights and biases of both layers (name, shape, dtype f32, mean, std, min, max, zeros 100.0% for the
    zero biases, norm), the cursor on transformer.h.0.mlp.c_fc.weight, "by model order (o r) · filter (/)" below;
    its 32×128 heatmap of mean |w| per cell in half blocks (blue to yellow), the legend on the line under it
    ("|w|: 0 … √", short beside the workbench pane) and "|w| (a) · rows×cols block means" below; its
    histogram, a bell with zero's column in orange, the range -0.07636 … 0 … 0.06257 under it and the mean and std
    below; its top singular values as bars (σ1 0.3308 …); at 120x40 the workbench pane of an empty workspace on the
    right: "no current model: run import below, or m to import the loaded one", an empty dataset field, an empty
    History, an Effect panel ("Run an operation to see its effect here.") and the Operation form with edit selected,
    its fields (pattern, --zero, --random, --scale X, --noise STD) and help (at 80x24 the weights alone, w shows the
    workbench); the footer's Run, Undo, Import loaded, Dataset, Filter, Sort, Reverse, |w|/signed (at 80x24 Run, Switch
    pane, Undo, Import loaded)."""

    async def open_weights(pilot):
        from smoltui.engine.models import load_model

        pilot.app.session.use(load_model("tiny", device="cpu"))
        await pilot.press("8")
        await weights_settled(pilot)
        await pilot.press("slash", *"mlp", "enter")
        await weights_settled(pilot)

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=open_weights)


@pytest.fixture
def two_steps(workspace, tmp_path):
    """A workbench with the tiny preset imported (step 1) and pruned by 30% (step 2, current), its dataset
    ./corpus.txt: the steps written straight into the history with fixed effects and times, as the runs are."""
    from smoltui.engine.effects import Effect, EvalSettings, Measurement
    from smoltui.engine.models import load_model
    from smoltui.engine.operations import save_model
    from smoltui.engine.workbench import Workbench

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 50)
    with Workbench.open(workspace) as bench:
        bench.set("dataset", str(corpus))
        basis = EvalSettings.from_settings(bench.settings(), str(corpus)).to_json()
        measured = {"params": 72_896, "bytes": 291_584, "scored_tokens": 2048, "basis": basis}
        imported = Measurement(perplexity=271.4, tokens_per_s=812.0, sample=" the the the", **measured)
        pruned = Measurement(perplexity=288.9, tokens_per_s=805.0, sample=" the quick the", **measured)
        steps = [
            ("import", {"source": "tiny"}, None, "imported tiny (preset (fresh weights))", Effect(None, imported)),
            (
                "prune",
                {"amount": 0.3, "kind": "unstructured", "where": None},
                1,
                "pruned 30% of each of 8 weight matrices by magnitude",
                Effect(imported, pruned),
            ),
        ]
        for operation, params, parent, summary, effect in steps:
            folder = bench.partial_folder()
            save_model(load_model("tiny", device="cpu"), folder)
            bench.commit_step(
                operation=operation,
                params=params,
                parent=parent,
                folder=folder,
                summary=summary,
                effect=effect.to_json(),
            )
    with sqlite3.connect(workspace / "workbench" / "history.db") as history:
        history.execute("UPDATE steps SET time = ? - 3600 * (3 - step)", (FIXED_NOW,))  # 2h ago, 1h ago


@SIZES
def test_surgery_workbench_with_two_steps(snap_compare, workspace, two_steps, size):
    """Surgery with two steps in the history: the state "current: step 2 · prune", the dataset field
    "./corpus.txt"; the History table, step 1 "import source=tiny" (ppl 271.40, 2h ago) and step 2, marked * and
    bold, "prune amount=0.3 kind=unstructured" (ppl 288.90, Δ +17.50, 1h ago); the edit form; the Effect of step 2:
    perplexity 271.40 → 288.90 (+17.50), parameters and bytes unchanged, tokens/s 812 → 805, the samples " the the
    the" and " the quick the" side by side. At 120x40 beside the weights of the tiny model; at 80x24 alone (w)."""

    async def open_workbench(pilot):
        from smoltui.engine.models import load_model

        pilot.app.session.use(load_model("tiny", device="cpu"))
        await pilot.press("8")
        await weights_settled(pilot)
        if pilot.app.size.width < 100:
            await pilot.press("w")
            await weights_settled(pilot)

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=open_workbench)
