"""The workbench commands as a smolbox user types them: a chain of operations, the history, undo, one line for
every mistake, and a tool script run end to end through `uv run`."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file
from tiny_lms import tiny_lm_folder
from typer.testing import CliRunner

from smoltui.cli import app

CORPUS = "".join(f"Line {n}: the quick brown fox jumps over the lazy dog, {n % 7} times.\n" for n in range(600))


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and len(message.splitlines()) == 1, message
    assert fragment in message, message


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return tiny_lm_folder("llama", tmp_path_factory.mktemp("llama"))


@pytest.fixture
def ready(workspace, tmp_path):
    """A workspace with a dataset and a small evaluation set, as `smoltui set` leaves it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    ok("set", "dataset", str(corpus))
    ok("set", "eval_tokens", "200")
    ok("set", "sample_tokens", "6")
    ok("set", "prompt", "The quick")
    return workspace


def test_a_smolbox_style_chain_import_edit_history_checkout(ready, model_folder):
    imported = ok("import", str(model_folder))
    assert "step 1" in imported.stdout and "import" in imported.stdout and "perplexity" in imported.stdout
    edited = ok("edit", "mlp", "--scale", "0.5")
    for fragment in ("step 2", "scaled by 0.5", "before", "after", "delta", "parameters", "tokens/s", "The quick"):
        assert fragment in edited.stdout, edited.stdout
    table = ok("history").stdout
    assert "import" in table and "scale=0.5" in table
    steps = json.loads(ok("history", "--json").stdout)
    assert [(s["step"], s["operation"], s["parent"], s["current"]) for s in steps] == [
        (1, "import", None, False),
        (2, "edit", 1, True),
    ]
    assert steps[1]["effect"]["before"]["perplexity"] == steps[0]["effect"]["after"]["perplexity"]
    ok("checkout", "1")
    assert ok("get", "model").stdout.strip() == steps[0]["folder"]
    state = json.loads(ok("state", "--json").stdout)
    assert state["current"]["step"] == 1 and state["steps"] == 2 and state["settings"]["eval_tokens"] == 200
    assert "step 1 (import)" in ok("state").stdout
    reinit = json.loads(ok("reinit", "--layers", "1", "--no-eval", "--json").stdout)
    assert reinit["parent"] == 1 and reinit["details"]["layers_after"] == 1 and reinit["effect"]["before"]
    ok("undo")
    assert json.loads(ok("state", "--json").stdout)["current"]["step"] == 1


def test_prune_quantize_sample_chain_with_their_effects_and_a_checkout_restores_the_weights(
    ready, model_folder, tmp_path
):
    ok("import", str(model_folder), "--no-eval")
    pruned = json.loads(ok("prune", "--amount", "0.5", "--json").stdout)
    assert pruned["operation"] == "prune" and pruned["details"]["sparsity"] >= 0.49
    before, after = pruned["effect"]["before"], pruned["effect"]["after"]
    assert before["perplexity"] != after["perplexity"] and after["params"] == before["params"]
    quantized = ok("quantize", "--bits", "4")
    assert "4 bits" in quantized.stdout and "perplexity" in quantized.stdout
    sampled = [
        json.loads(line)
        for line in ok(
            "sample", "step:current", "-p", "The quick", "--max-tokens", "5", "--temperature", "0", "--json"
        ).stdout.splitlines()
    ]
    assert len([event for event in sampled if "id" in event]) == 5  # the quantized model, as smolbox samples
    steps = json.loads(ok("history", "--json").stdout)
    assert [(step["operation"], step["parent"]) for step in steps] == [("import", None), ("prune", 1), ("quantize", 2)]
    one_line_error(run("prune", "--amount", "1.5"), "--amount")
    one_line_error(run("quantize", "--bits", "6"), "8 or 4")
    ok("checkout", "1")
    ok("export", str(tmp_path / "back"))
    saved = load_file(tmp_path / "back" / "model.safetensors")
    original = load_file(model_folder / "model.safetensors")
    assert all(torch.equal(saved[name], original[name]) for name in original)  # undo gives the exact weights


def test_set_model_imports_and_export_writes_a_folder(ready, model_folder, tmp_path):
    ok("set", "model", str(model_folder), "--no-eval")
    assert json.loads(ok("history", "--json").stdout)[0]["params"] == {"source": str(model_folder)}
    exported = ok("export", str(tmp_path / "out"))
    assert "exported step 1" in exported.stdout
    saved = load_file(tmp_path / "out" / "model.safetensors")
    original = load_file(model_folder / "model.safetensors")
    assert all(torch.equal(saved[name], original[name]) for name in original)
    one_line_error(run("export", str(tmp_path / "out")), "exists and is not empty")


def test_mistakes_are_one_line_with_the_fix(ready, model_folder, tmp_path):
    one_line_error(run("edit", "mlp", "--zero"), "there is no current model; import one")
    ok("import", str(model_folder), "--no-eval")
    one_line_error(run("edit", "nothing_like_this", "--zero"), "matches no parameter (they are named like model.")
    one_line_error(run("edit", "mlp", "--zero", "--random"), "exactly one of --zero, --random, --scale X or --noise")
    one_line_error(run("edit", "mlp", "--scale", "lots"), "--scale takes a number such as 0.5, not 'lots'")
    one_line_error(run("reinit", "--layers", "0"), "--layers must be at least 1, not 0")
    one_line_error(run("checkout", "7"), "there is no step 7 in the history; it holds steps 1 to 1")
    one_line_error(run("set", "sample_tokens", "0"), "sample_tokens must be at least 1, not 0")
    one_line_error(run("set", "eval_tokens", "lots"), "eval_tokens takes a number such as 3, not 'lots'")
    one_line_error(run("get", "colour"), "unknown setting 'colour'")
    one_line_error(run("tool", "run", "nothing.py"), "no such tool: nothing.py")
    ok("set", "dataset", "")
    one_line_error(run("edit", "mlp", "--zero"), "no dataset is set to measure perplexity on; set one with")
    assert len(json.loads(ok("history", "--json").stdout)) == 1


def test_init_keeps_the_history_and_reset_asks_first(ready, model_folder):
    ok("import", str(model_folder), "--no-eval")
    ok("init")
    assert ok("get", "model").stdout.strip() == "" and ok("get", "eval_tokens").stdout.strip() == "16384"
    ok("checkout", "1")
    declined = run("reset", input="n\n")
    assert declined.exit_code == 1 and "nothing changed" in declined.stdout
    assert len(json.loads(ok("history", "--json").stdout)) == 1
    assert "forgot 1 steps" in ok("reset", "--yes").stdout
    assert json.loads(ok("history", "--json").stdout) == []
    assert "no steps yet" in ok("history").stdout


def test_ls_lists_the_operations_and_the_workspace_tools(workspace):
    (workspace / "tools").mkdir(parents=True)
    (workspace / "tools" / "halve.py").write_text('"""Halve every weight."""\n')
    listing = ok("ls").stdout
    for fragment in ("import", "export", "edit", "PATTERN [--zero] [--random] [--scale X]", "reinit", "halve"):
        assert fragment in listing
    assert "Halve every weight." in listing


# A tool that needs nothing but the standard library: it copies the model and zeroes, in the safetensors file
# itself, every tensor whose name holds --name. It also checks what smoltui handed it.
ZERO_TOOL = '''\
# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
"""Zero the tensors whose names hold --name (standard library only)."""
import argparse, json, os, shutil, struct, sys

parser = argparse.ArgumentParser()
for flag in ("--model", "--dataset", "--output", "--name"):
    parser.add_argument(flag)
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
assert args.model == os.environ["SMOLTUI_MODEL"] and args.output == os.environ["SMOLTUI_OUTPUT"]
assert args.dataset == os.environ["SMOLTUI_DATASET"]
if args.fail:
    sys.exit("the tool gave up on purpose")
for name in os.listdir(args.model):
    if not name.startswith("tokenizer"):  # the workbench adds the tokenizer where a tool leaves it out
        shutil.copy(os.path.join(args.model, name), args.output)
path = os.path.join(args.output, "model.safetensors")
with open(path, "r+b") as weights:
    size = struct.unpack("<Q", weights.read(8))[0]
    header = json.loads(weights.read(size))
    zeroed = 0
    for tensor, entry in header.items():
        if tensor != "__metadata__" and args.name in tensor:
            start, end = entry["data_offsets"]
            weights.seek(8 + size + start)
            weights.write(bytes(end - start))
            zeroed += 1
print(f"zeroed {zeroed} tensors")
'''


@pytest.mark.slow
def test_a_tool_runs_through_uv_and_its_model_becomes_a_step(ready, model_folder, monkeypatch):
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    monkeypatch.setenv("UV_OFFLINE", "1")  # a tool that declares no dependencies needs no network
    monkeypatch.setenv("UV_PYTHON", sys.executable)
    tools = ready / "tools"
    tools.mkdir()
    (tools / "zero_tool.py").write_text(ZERO_TOOL)
    ok("import", str(model_folder), "--no-eval")

    result = ok("tool", "run", "zero_tool", "--name", "mlp")
    assert "zeroed 6 tensors" in result.stderr and "step 2" in result.stdout and "perplexity" in result.stdout
    steps = json.loads(ok("history", "--json").stdout)
    assert steps[1]["operation"] == "tool:zero_tool" and steps[1]["params"]["args"] == ["--name", "mlp"]
    assert steps[1]["current"] and steps[1]["effect"]["after"]["perplexity"] > 0
    weights = load_file(os.path.join(steps[1]["folder"], "model.safetensors"))
    assert all(not tensor.any() for name, tensor in weights.items() if "mlp" in name)
    assert (ready / "workbench" / "models" / "step_0002" / "tokenizer.json").is_file()

    failed = run("tool", "run", "zero_tool", "--fail")
    one_line_error_tail = failed.stderr.strip().splitlines()[-1]
    assert (
        failed.exit_code == 2 and "failed with exit status 1; the current model is still step 2" in one_line_error_tail
    )
    assert "the tool gave up on purpose" in failed.stderr
    steps = json.loads(ok("history", "--json").stdout)
    assert steps[2]["status"] == "failed" and steps[2]["folder"] is None and steps[1]["current"]
    assert "failed:" in ok("history").stdout


def test_help_lists_the_workbench_commands():
    listing = ok("--help").stdout
    for command in ("state", "set", "get", "history", "checkout", "import", "export", "edit", "reinit", "ls", "tool"):
        assert command in listing
    edit_help = ok("edit", "--help").stdout
    assert "--scale" in edit_help and "--noise" in edit_help and "--no-eval" in edit_help


def test_tweak_samples_both_models_with_one_seed_and_changes_nothing(ready, model_folder):
    ok("import", str(model_folder))
    folder = json.loads(ok("history", "--json").stdout)[-1]["folder"]
    weights = load_file(os.path.join(folder, "model.safetensors"))

    large = json.loads(ok("tweak", "mlp=2.5", "--seed", "3", "--max-tokens", "12", "--json").stdout)
    assert large["deltas"] == {"mlp": 2.5} and large["matches"]["mlp"]
    assert large["sample"]["before"] != large["sample"]["after"]
    assert large["perplexity"]["after"] != large["perplexity"]["before"] and large["scored_tokens"] > 0
    zero = json.loads(ok("tweak", "mlp=0", "--seed", "3", "--max-tokens", "12", "--json").stdout)
    assert zero["sample"]["before"] == zero["sample"]["after"] == large["sample"]["before"]
    assert zero["perplexity"]["after"] == zero["perplexity"]["before"] == large["perplexity"]["before"]

    shown = ok("tweak", "mlp=2.5", "--prompt", "The lazy").stdout
    for fragment in ("+2.5 to", "perplexity", "untouched", "tweaked", "The lazy"):
        assert fragment in shown, shown
    after = load_file(os.path.join(folder, "model.safetensors"))
    assert all(torch.equal(weights[name], after[name]) for name in weights) and weights.keys() == after.keys()
    assert len(json.loads(ok("history", "--json").stdout)) == 1  # no step recorded


def test_tweak_mistakes_are_one_line(ready, model_folder):
    ok("import", str(model_folder))
    one_line_error(run("tweak", "mlp"), "is not PARAM=DELTA")
    one_line_error(run("tweak", "mlp=big"), "is not a number")
    one_line_error(run("tweak", "no_such_layer=0.1"), "no_such_layer")
