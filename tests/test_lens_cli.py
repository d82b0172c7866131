"""`smoltui lens` and `smoltui attention` as a script or a person uses them, and how they draw."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from smoltui.cli import app as cli_app

TINY_LAYERS = 2  # the "tiny" preset: 2 layers, 2 heads, a char tokenizer


def run(*args: str):
    return CliRunner().invoke(cli_app, list(args))


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ")


def test_lens_json_is_one_object_per_position_with_every_layer(workspace):
    result = run("lens", "tiny", "--prompt", "abc", "--top", "3", "--target", "a", "--json")
    assert result.exit_code == 0, result.output
    columns = [json.loads(line) for line in result.stdout.splitlines()]
    assert [column["position"] for column in columns] == [0, 1, 2]
    assert [column["token"]["text"] for column in columns] == ["a", "b", "c"]
    assert [column["next"] and column["next"]["text"] for column in columns] == ["b", "c", None]
    for column in columns:
        layers = column["layers"]
        assert [layer["layer"] for layer in layers] == ["embeddings", "layer 0", "layer 1"]
        assert all(len(layer["top"]) == 3 and layer["target_rank"] >= 0 for layer in layers)
        assert layers[-1]["kl_to_final"] == 0
    assert columns[-1]["layers"][0]["next_probability"] is None  # nothing came after the last position


def test_lens_generate_json_gives_each_position_once_then_the_end(workspace):
    result = run("lens", "tiny", "--prompt", "abc", "--generate", "4", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    columns, end = lines[:-1], lines[-1]["finished"]
    assert [column["position"] for column in columns] == list(range(3 + 4 - 1))
    assert end["new_tokens"] == 4
    generated = "".join(column["next"]["text"] for column in columns[2:])
    assert generated == end["text"]
    assert all(column["layers"][-1]["top"][0][0] == column["next"]["text"] for column in columns[2:])  # greedy


def test_lens_without_a_terminal_prints_the_plain_grid(workspace):
    result = run("lens", "tiny", "--prompt", "hello", "--generate", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[: TINY_LAYERS + 3]] == ["next", "layer", "layer", "embeddings", "input"]
    assert lines[1].startswith("layer 1") and lines[2].startswith("layer 0")
    assert lines[4].startswith("input".ljust(12) + "".join(char.ljust(8) for char in "hello"))
    assert lines[0].startswith("next".ljust(12) + "".join(char.ljust(8) for char in "ello"))
    assert "*: the top token came next" in lines[-1] and "\x1b[" not in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--target", "ab"], "the target 'ab' is not one token of this tokenizer but 2 ('a' + 'b')"),
        (["--top", "0"], "the number of top tokens must be at least 1"),
        (["--generate", "-1"], "Invalid value for '--generate': Input should be greater than or equal to 0"),
        (["--checkpoints"], "--checkpoints reads every checkpoint of a run; pass the run as run:<id>"),
    ],
)
def test_bad_lens_input_is_one_line(workspace, args, fragment):
    one_line_error(run("lens", "tiny", "--prompt", "abc", *args), fragment)


def test_an_architecture_the_adapter_does_not_know_is_one_line(workspace, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from smoltui.engine.tokenizers import char_tokenizer

    folder = tmp_path / "bert"
    BertForMaskedLM(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               vocab_size=120, is_decoder=True)).save_pretrained(folder)  # fmt: skip
    char_tokenizer().save_pretrained(folder)
    result = run("lens", str(folder), "--prompt", "abc")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output


def test_lens_across_checkpoints_of_a_run_without_any(write_run, workspace):
    write_run("20300101-000000-bare")
    one_line_error(
        run("lens", "run:20300101-000000-bare", "--prompt", "ab", "--checkpoints"),
        "run 20300101-000000-bare has no checkpoints yet",
    )


def test_attention_json_has_every_head_and_rows_that_sum_to_one(workspace):
    result = run("attention", "tiny", "--prompt", "hello", "--layer", "1", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["layer"] == 1 and [token["text"] for token in record["tokens"]] == list("hello")
    assert [head["head"] for head in record["heads"]] == [0, 1]
    for head in record["heads"]:
        weights = np.array(head["weights"])
        assert weights.shape == (5, 5) and np.allclose(weights.sum(1), 1.0, atol=1e-5)
        assert len(head["entropy"]) == 5 and head["mean_entropy"] >= 0
    assert np.allclose(np.array(record["average"]), np.mean([h["weights"] for h in record["heads"]], 0), atol=1e-5)
    only = json.loads(run("attention", "tiny", "-p", "hello", "--head", "1", "--json").stdout)
    assert [head["head"] for head in only["heads"]] == [1]


def test_attention_without_a_terminal_draws_shades_with_both_axes_labelled(workspace):
    result = run("attention", "tiny", "--prompt", "abcd", "--head", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("layer 0, head 0 · rows: queries, columns: keys")
    assert lines[1].strip() == "abcd"  # the keys, written downwards (one character each here)
    assert [line.split()[0] for line in lines[2:6]] == ["0:a", "1:b", "2:c", "3:d"]
    assert lines[2].endswith("█   ")  # the first query attends to itself only
    assert lines[-1].startswith("weight: 0 ░▒▓█ 1")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--layer", "2"], "layer 2 does not exist; this model has layers 0 to 1"),
        (["--head", "-1"], "head -1 does not exist; this model has heads 0 to 1"),
    ],
)
def test_bad_attention_input_is_one_line(workspace, args, fragment):
    one_line_error(run("attention", "tiny", "--prompt", "abc", *args), fragment)


# -- the pictures a terminal gets ------------------------------------------------------------------------------


def test_the_coloured_heatmap_puts_two_queries_on_a_line():
    from smoltui.cli.lens_views import heatmap_lines

    matrix = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]  # (5, 5) uniform causal attention
    lines = heatmap_lines(matrix, ("a", " b", "c", "d", "e"), 80, colour=True)
    keys, rows = lines[:2], lines[2:]
    assert [line.plain[14:] for line in keys] == ["a·cde", " b   "]  # " b" written downwards, its space drawn
    # The keys after each query stay blank: ▄ where only the lower query sees the key, ▀ where both do.
    assert [row.plain[14:] for row in rows] == ["▀▄   ", "▀▀▀▄ ", "▀▀▀▀▀"]
    assert rows[0].plain.startswith("0:a 1:·b")
    styles = {str(span.style) for span in rows[0].spans}
    assert any(" on #" in style for style in styles)  # the lower query is the background


def test_the_coloured_lens_grid_marks_the_cells_whose_top_token_came_next(workspace):
    from smoltui.cli.lens_views import lens_lines
    from smoltui.engine.lens import logit_lens
    from smoltui.engine.models import load_model

    loaded = load_model("tiny", device="cpu")
    grid = logit_lens(loaded.model, loaded.tokenizer, "hello world")
    lines = lens_lines(grid, 60, colour=True)
    shown = (60 - 12) // 8
    assert len(lines) == TINY_LAYERS + 3
    for row, line in zip(range(grid.rows - 1, -1, -1), lines[1:-1], strict=True):
        marked = [("underline" in str(span.style)) for span in line.spans if "on #" in str(span.style)]
        assert marked == grid.top_is_next[row, -shown:].tolist()


def test_a_prompt_longer_than_the_context_is_cut_with_a_note(workspace):
    result = run("lens", "tiny", "--prompt", "ab" * 50, "--json")  # the tiny preset reads 64 characters
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 64
    assert "note: The prompt has 100 tokens but this model reads 64 at most" in result.stderr
