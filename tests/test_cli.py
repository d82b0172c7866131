"""The `smoltui` command as a user types it: output, exit codes, and one line for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from smoltui import __version__
from smoltui.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    assert fragment in message
    assert "Traceback" not in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"smoltui {__version__}"


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "smoltui", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"smoltui {__version__}"


def test_info_describes_a_preset(workspace):
    result = run("info", "nano-char", "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    for fragment in ("GPT2LMHeadModel", "3,250,432", "layers", "256", "vocab", "99", "transformer", "lm_head"):
        assert fragment in result.stdout


def test_info_reads_a_saved_folder(tmp_path, workspace):
    from transformers import LlamaConfig, LlamaForCausalLM

    from smoltui.engine.tokenizers import char_tokenizer

    model = LlamaForCausalLM(
        LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=99,
            max_position_embeddings=64,
        )
    )
    model.save_pretrained(tmp_path / "llama")
    char_tokenizer().save_pretrained(tmp_path / "llama")
    result = run("info", str(tmp_path / "llama"), "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    assert "LlamaForCausalLM" in result.stdout and "4 / 2" in result.stdout


def test_corpus_counts_a_file_and_then_reads_the_cache(tmp_path, workspace):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n" * 200)
    first = run("corpus", str(text), "--workspace", str(workspace))
    assert first.exit_code == 0, first.output
    assert "2,400" in first.stdout and "2,280 / 120" in first.stdout
    second = run("corpus", str(text), "--workspace", str(workspace))
    assert "(from cache)" in second.stdout


def test_a_non_utf8_corpus_is_read_with_a_warning(tmp_path, workspace):
    text = tmp_path / "latin1.txt"
    text.write_bytes("café au lait\n".encode("latin-1") * 50)
    result = run("corpus", str(text), "--workspace", str(workspace))
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "not UTF-8" in result.stderr


def _corrupt_folder(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "broken"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=99)).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


@pytest.mark.parametrize(
    ("make_args", "fragment"),
    [
        (lambda tmp: ["info", str(tmp / "nowhere")], "no such folder"),
        (lambda tmp: ["info", "nano"], "known presets: nano-char"),
        (lambda tmp: ["info", "HuggingFaceTB/SmolLM2-135M"], "could not reach the Hugging Face Hub"),
        (lambda tmp: ["info", str(_corrupt_folder(tmp))], "truncated or corrupt"),
        (lambda tmp: ["info", str(tmp)], "config.json"),
        (lambda tmp: ["info", "tiny", "--device", "tpu"], "unknown device"),
        (lambda tmp: ["corpus", str(tmp / "missing.txt")], "missing.txt"),
        (lambda tmp: ["corpus", str(_write(tmp / "empty.txt", b""))], "empty"),
        (lambda tmp: ["corpus", str(_write(tmp / "blob.txt", bytes(range(256)) * 64))], "binary"),
        (lambda tmp: ["corpus", str(_write(tmp / "short.txt", b"tiny text")), "--context", "256"], "256"),
        (lambda tmp: ["corpus", str(_write(tmp / "ok.txt", b"x" * 100)), "--tokenizer", "bpe:abc"], "bpe:"),
        (lambda tmp: ["train", "--lr", "-1", "--detach"], "lr must be above 0"),
        (lambda tmp: ["train", "--schedule", "wavy", "--detach"], "schedule 'wavy' is not one of"),
        (lambda tmp: ["train", "--hook", "magic", "--detach"], "unknown hook 'magic'"),
        (lambda tmp: ["train", "--set", "n_layer", "--detach"], "overrides take name=value pairs"),
        (lambda tmp: ["stop", "no-such-run"], "smoltui train"),
        (lambda tmp: ["export-metrics", "latest", "--format", "xml"], "--format 'xml' is not csv or jsonl"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, workspace, monkeypatch, make_args, fragment):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    args = make_args(tmp_path)
    result = run(*args, "--workspace", str(workspace))
    assert_one_line_error(result, fragment)
    assert len(result.stderr.strip().splitlines()) <= 2  # one sentence, maybe soft-wrapped once by rich


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_train_detach_then_runs_stop_and_export(tmp_path, workspace):
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat and the dog ran far away\n" * 400)
    common = ["--workspace", str(workspace)]
    started = run(
        "train",
        "--model",
        "tiny",
        "--corpus",
        str(corpus),
        "--context",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        "100000",
        "--eval-every",
        "50",
        "--sample-every",
        "0",
        "--detach",
        *common,
    )
    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip()
    from smoltui.engine.runs import attach

    handle = attach(run_id, workspace)
    deadline = time.monotonic() + 60
    while not handle.metrics_since("train/loss") and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = run("runs", "--json", *common)
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["run_id"] == run_id and row["status"] == "running" and row["model"] == "tiny"
    table = run("runs", *common)
    (line,) = [line for line in table.stdout.splitlines() if run_id in line]  # one line per run, even at 80 wide
    assert "running" in line and "tiny" in line and line.rstrip().endswith("ago")
    assert run("pause", run_id, *common).exit_code == 0
    assert run("resume", run_id, *common).exit_code == 0
    stopped = run("stop", run_id, *common)
    assert stopped.exit_code == 0 and "asked to stop" in stopped.stdout
    assert handle.wait(timeout=60) == "stopped"
    again = run("stop", run_id, *common)
    assert_one_line_error(again, f"is stopped; `smoltui train --resume {run_id}` continues it")

    csv_out = run("export-metrics", run_id, "--format", "csv", *common)
    header = csv_out.stdout.splitlines()[0].split(",")
    assert header[:2] == ["step", "time"] and "train/loss" in header
    jsonl_out = run("export-metrics", run_id, "--format", "jsonl", "--output", str(tmp_path / "m.jsonl"), *common)
    assert jsonl_out.exit_code == 0
    first = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
