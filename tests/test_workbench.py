"""The workbench engine on tiny random models of two families: import, edit, reinit, export, the history and undo,
the measured effect, bad input, and a kill in the middle of an operation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from tiny_lms import bpe_tokenizer, tiny_lm, tiny_lm_folder

from smoltui.engine.errors import UserError
from smoltui.engine.models import load_model
from smoltui.engine.operations import OPERATIONS, import_loaded, load_step, run_operation
from smoltui.engine.workbench import Workbench

FAMILIES = ("llama", "gpt2")
CORPUS_LINES = [f"Line {n}: the quick brown fox jumps over the lazy dog, {n % 7} times.\n" for n in range(600)]


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """A tiny saved model folder (with its byte-level BPE) per family, built once for the module."""
    return {family: tiny_lm_folder(family, tmp_path_factory.mktemp(family)) for family in FAMILIES}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(CORPUS_LINES))
    return path


@pytest.fixture
def bench(workspace, corpus):
    """A workbench with the corpus as its dataset and a small evaluation (256 tokens, an 8-token sample)."""
    workbench = Workbench.open(workspace)
    workbench.set("dataset", str(corpus))
    workbench.set("eval_tokens", "256")
    workbench.set("sample_tokens", "8")
    yield workbench
    workbench.close()


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def current_weights(workbench: Workbench) -> dict[str, torch.Tensor]:
    return {
        name: tensor.clone() for name, tensor in load_step(workbench, workbench.current()).model.state_dict().items()
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_import_edit_then_checkout_restores_the_exact_weights(bench, model_folders, family):
    imported = run_operation(bench, "import", {"source": str(model_folders[family])})
    original = current_weights(bench)
    edited = run_operation(bench, "edit", {"pattern": r"mlp", "zero": True})

    assert [step.operation for step in bench.history()] == ["import", "edit"]
    assert (edited.parent, bench.current_step) == (imported.step, edited.step)
    assert edited.params == {"pattern": "mlp", "zero": True, "random": False, "scale": None, "noise": None}
    assert edited.effect["before"] == imported.effect["after"]  # the parent's measurement, not taken again
    assert edited.effect["after"]["perplexity"] != imported.effect["after"]["perplexity"]
    assert edited.details["tensors"] > 0 and "mlp" in edited.summary
    zeroed = {name: tensor for name, tensor in weights(edited.folder).items() if "mlp" in name}
    assert zeroed and all(not tensor.any() for tensor in zeroed.values())

    assert not all(torch.equal(tensor, original[name]) for name, tensor in current_weights(bench).items())
    bench.checkout(imported.step)
    restored = current_weights(bench)
    assert restored.keys() == original.keys()
    assert all(torch.equal(restored[name], original[name]) for name in original)
    source = weights(model_folders[family])  # and those are the weights of the folder it was imported from
    assert all(torch.equal(restored[name], tensor) for name, tensor in source.items())


def test_the_loaded_model_imports_with_its_exact_weights_and_its_own_step_is_refused(bench, model_folders):
    run_operation(bench, "import", {"source": str(model_folders["llama"])})
    loaded = load_model("tiny", device="cpu", seed=123)  # a preset: fresh weights no `import tiny` would redraw
    originals = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}

    step = import_loaded(bench, loaded)

    assert (step.operation, step.params, step.parent) == ("import", {"source": "tiny"}, 1)
    assert bench.current_step == step.step and "the loaded tiny" in step.summary
    assert step.effect["before"] is not None and step.effect["after"]["perplexity"] > 0
    saved = current_weights(bench)
    assert all(torch.equal(saved[name], tensor) for name, tensor in originals.items())
    assert all(torch.equal(loaded.model.state_dict()[name], tensor) for name, tensor in originals.items())

    own = load_step(bench, bench.current())  # what the Surgery screen loads after a run
    with pytest.raises(UserError, match="already the current model"):
        import_loaded(bench, own)
    assert [entry.step for entry in bench.history()] == [1, 2]


def test_step_sources_load_a_steps_model_and_name_their_mistakes(bench, model_folders, workspace):
    with pytest.raises(UserError, match="no current model") as error:
        load_model("step:current", device="cpu", workspace=workspace)
    assert error.value.field == "model"
    imported = run_operation(bench, "import", {"source": str(model_folders["gpt2"])})
    run_operation(bench, "edit", {"pattern": "mlp", "zero": True}, evaluate=False)
    bench.checkout(imported.step)
    for source, step in (("step:1", 1), ("step:2", 2), ("step:current", 1)):
        loaded = load_model(source, device="cpu", workspace=workspace)
        assert (loaded.source, loaded.folder) == (source, bench.step(step).folder)
        saved = weights(bench.step(step).folder)
        state = loaded.model.state_dict()
        assert all(torch.equal(state[name], tensor) for name, tensor in saved.items())
    for source, words in (("step:7", "there is no step 7"), ("step:last", "write step:<number> or step:current")):
        with pytest.raises(UserError, match=words) as error:
            load_model(source, device="cpu", workspace=workspace)
        assert error.value.field == "model"


def test_a_workspace_without_a_history_says_how_to_make_one(tmp_path):
    with pytest.raises(UserError, match="no workbench history yet; make a step first"):
        load_model("step:current", device="cpu", workspace=tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()  # naming a step creates nothing


def test_undo_makes_the_parent_current_and_an_import_has_nothing_to_undo(bench, model_folders):
    first = run_operation(bench, "import", {"source": str(model_folders["llama"])})
    second = run_operation(bench, "edit", {"pattern": "norm", "scale": "2"}, evaluate=False)
    assert bench.undo().step == first.step and bench.current_step == first.step
    with pytest.raises(UserError, match="nothing to undo"):
        bench.undo()
    assert bench.checkout(second.step).step == second.step


@pytest.mark.parametrize("family", FAMILIES)
def test_scaling_by_one_leaves_perplexity_and_sample_as_they_were(bench, model_folders, family):
    run_operation(bench, "import", {"source": str(model_folders[family])})
    step = run_operation(bench, "edit", {"pattern": ".", "scale": 1.0})
    before, after = step.effect["before"], step.effect["after"]
    assert after["perplexity"] == pytest.approx(before["perplexity"], rel=1e-6)
    assert after["sample"] == before["sample"] and after["params"] == before["params"]
    assert after["scored_tokens"] == 256 and step.effect["delta"]["bytes"] == 0


def test_a_changed_evaluation_measures_the_model_before_again(bench, model_folders):
    run_operation(bench, "import", {"source": str(model_folders["gpt2"])})
    bench.set("eval_tokens", "128")
    step = run_operation(bench, "edit", {"pattern": "mlp", "scale": "1"})
    assert step.effect["before"]["scored_tokens"] == 128 == step.effect["after"]["scored_tokens"]
    assert step.effect["before"]["basis"]["eval_tokens"] == 128


@pytest.mark.parametrize("family", FAMILIES)
def test_reinit_gives_a_perplexity_near_the_vocabulary_size(bench, model_folders, family):
    run_operation(bench, "import", {"source": str(model_folders[family])})
    step = run_operation(bench, "reinit", {})
    vocab = len(bpe_tokenizer())
    assert vocab / 2 < step.effect["after"]["perplexity"] < vocab * 2
    deeper = run_operation(bench, "reinit", {"layers": "3"}, evaluate=False)
    assert deeper.details == {"layers_before": 2, "layers_after": 3, "seed": 0}
    assert "2 → 3 layers" in deeper.summary
    assert deeper.effect["after"]["params"] > step.effect["after"]["params"]
    assert load_step(bench, deeper).summary.layers == 3


def test_the_same_seed_gives_the_same_fresh_weights(bench, model_folders):
    run_operation(bench, "import", {"source": str(model_folders["llama"])})
    first = run_operation(bench, "reinit", {}, evaluate=False)
    second = run_operation(bench, "reinit", {}, evaluate=False)
    bench.set("seed", "1")
    third = run_operation(bench, "reinit", {}, evaluate=False)
    a, b, c = weights(first.folder), weights(second.folder), weights(third.folder)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not all(torch.equal(a[name], c[name]) for name in a)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_export_loads_with_transformers_and_generates(bench, model_folders, family, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_operation(bench, "import", {"source": str(model_folders[family])})
    run_operation(bench, "edit", {"pattern": "mlp", "noise": "0.01"}, evaluate=False)
    target = tmp_path / "exported"
    target.mkdir()  # an empty folder is fine
    assert run_operation(bench, "export", {"directory": str(target)}).step == bench.current_step
    model = AutoModelForCausalLM.from_pretrained(target).eval()
    tokenizer = AutoTokenizer.from_pretrained(target)
    ids = tokenizer("The quick", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + 4
    saved = weights(bench.current().folder)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in saved.items())
    with pytest.raises(UserError, match="exists and is not empty") as error:
        run_operation(bench, "export", {"directory": str(target)})
    assert error.value.field == "directory"


def test_a_tied_lm_head_is_saved_tied_and_counted_once(bench, tmp_path):
    folder = tmp_path / "tied"
    tiny_lm("llama", folder, tie_word_embeddings=True)
    bpe_tokenizer().save_pretrained(folder)
    step = run_operation(bench, "import", {"source": str(folder)}, evaluate=False)
    step = run_operation(bench, "edit", {"pattern": "embed", "scale": "2"}, evaluate=False)
    model = load_step(bench, step).model
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert step.effect["after"]["params"] == sum(p.numel() for p in model.parameters())
    assert step.details["tensors"] == 1  # the shared matrix, scaled once


@pytest.mark.parametrize(
    ("name", "params", "fragment", "field"),
    [
        ("edit", {"pattern": "no_such_weight", "zero": True}, "matches no parameter (they are named like", "pattern"),
        ("edit", {"pattern": "(", "zero": True}, "is not a valid regular expression", "pattern"),
        ("edit", {"pattern": "mlp", "zero": True, "scale": "2"}, "exactly one of --zero", None),
        ("edit", {"pattern": "mlp"}, "exactly one of --zero", None),
        ("edit", {"pattern": "mlp", "scale": "big"}, "--scale takes a number", "scale"),
        ("edit", {"pattern": "mlp", "noise": "-1"}, "--noise must be at least 0", "noise"),
        ("reinit", {"layers": "0"}, "--layers must be at least 1, not 0", "layers"),
        ("reinit", {"depth": "2"}, "unknown parameter 'depth'", "depth"),
        ("prune_everything", {}, "unknown operation", "operation"),
    ],
)
def test_bad_parameters_are_one_sentence_and_change_nothing(bench, model_folders, name, params, fragment, field):
    run_operation(bench, "import", {"source": str(model_folders["llama"])}, evaluate=False)
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")) as error:
        run_operation(bench, name, params, evaluate=False)
    assert error.value.field == field
    assert len(bench.history()) == 1 and bench.current_step == 1
    assert [path.name for path in bench.models_dir.iterdir()] == ["step_0001"]


def test_no_model_no_dataset_and_missing_steps_say_how_to_fix_them(workspace, model_folders):
    with Workbench.open(workspace) as workbench:
        with pytest.raises(UserError, match=r"no current model; import one with `smoltui import SOURCE`"):
            run_operation(workbench, "edit", {"pattern": "mlp", "zero": True}, evaluate=False)
        with pytest.raises(UserError, match=r"no dataset is set.*`smoltui set dataset FILE`") as error:
            run_operation(workbench, "import", {"source": str(model_folders["gpt2"])})
        assert error.value.field == "dataset"
        with pytest.raises(UserError, match="no step 3 in the history; it holds no steps yet"):
            workbench.checkout(3)
        run_operation(workbench, "import", {"source": str(model_folders["gpt2"])}, evaluate=False)
        with pytest.raises(UserError, match="no step 3 in the history; it holds steps 1 to 1"):
            workbench.checkout(3)
        with pytest.raises(UserError, match="no such file or folder"):
            workbench.set("dataset", str(workspace / "missing.txt"))
        with pytest.raises(UserError, match="unknown setting 'colour'"):
            workbench.set("colour", "red")
        with pytest.raises(UserError, match="only through an operation"):
            workbench.set("model", "tiny")


def test_settings_keep_their_values_and_init_restores_the_defaults(bench, corpus):
    assert bench.get("dataset") == str(corpus) and bench.get("eval_tokens") == 256
    bench.set("prompt", "Hello")
    with Workbench.open(bench.workspace) as again:  # another process would see the same
        assert again.settings()["prompt"] == "Hello" and again.get("model") is None
    bench.init()
    assert bench.get("eval_tokens") == 16384 and bench.get("dataset") is None and bench.current() is None


def test_reset_forgets_the_history_and_deletes_the_models(bench, model_folders):
    step = run_operation(bench, "import", {"source": str(model_folders["gpt2"])}, evaluate=False)
    assert step.folder.is_dir()
    bench.reset()
    assert bench.history() == [] and bench.current() is None and not step.folder.exists()


def test_opening_removes_what_a_killed_operation_left(bench, model_folders):
    run_operation(bench, "import", {"source": str(model_folders["gpt2"])}, evaluate=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftovers = [
        bench.models_dir / f".partial-{dead.stdout.strip()}-abcd",  # its process is gone
        bench.models_dir / "step_0002",  # renamed into place, its row never committed
    ]
    alive = bench.models_dir / f".partial-{os.getpid()}-abcd"  # an operation of a live process: left alone
    for folder in (*leftovers, alive):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    with Workbench.open(bench.workspace) as reopened:
        assert [step.step for step in reopened.history()] == [1]
    assert not any(folder.exists() for folder in leftovers) and alive.is_dir()
    step = run_operation(bench, "edit", {"pattern": "mlp", "zero": True}, evaluate=False)
    assert step.folder.name == "step_0002"


def test_every_operation_declares_what_the_cli_and_a_form_need():
    for operation in OPERATIONS.values():
        assert operation.help.endswith(".")
        for parameter in operation.parameters:
            assert parameter.help.endswith(".") and parameter.name.isidentifier()


@pytest.mark.slow
def test_a_kill_in_the_middle_of_an_operation_leaves_history_and_model_whole(workspace, tmp_path):
    """A real `smoltui edit` on a ~27M-parameter model, killed (SIGKILL) while it writes the new model."""
    import transformers

    folder = tmp_path / "big"
    config = transformers.LlamaConfig(
        vocab_size=len(bpe_tokenizer()), hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=128,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    bpe_tokenizer().save_pretrained(folder)
    with Workbench.open(workspace) as workbench:
        run_operation(workbench, "import", {"source": str(folder)}, evaluate=False)
        before = workbench.history()
        original = weights(workbench.current().folder)
    command = [
        sys.executable,
        "-m",
        "smoltui",
        "edit",
        "mlp",
        "--scale",
        "3",
        "--no-eval",
        "--workspace",
        str(workspace),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    models = workspace / "workbench" / "models"
    deadline = time.monotonic() + 120
    while not any(path.is_file() for path in models.glob(".partial-*/*")):  # it has begun to write the model
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the edit never began to write its model"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Workbench.open(workspace) as workbench:
        assert workbench.history() == before and workbench.current_step == 1
        restored = weights(workbench.current().folder)
        assert all(torch.equal(restored[name], original[name]) for name in original)
        assert [path.name for path in models.iterdir()] == ["step_0001"]
        step = run_operation(workbench, "edit", {"pattern": "mlp", "scale": 3}, evaluate=False)
    assert step.step == 2  # the history goes on as if the killed edit had never started


@pytest.mark.slow
def test_the_bundled_smollm2_imports_edits_and_exports(bench, tmp_path):
    from transformers import AutoModelForCausalLM

    from smoltui.engine.bundled import BUNDLED_MODELS

    if BUNDLED_MODELS["smollm2-135m-instruct"].path() is None:
        pytest.skip("the bundled SmolLM2 is not installed")
    bench.set("eval_tokens", "128")
    imported = run_operation(bench, "import", {"source": "smollm2-135m-instruct"})
    assert imported.effect["after"]["params"] == 134_515_008
    edited = run_operation(bench, "edit", {"pattern": r"layers\.2[0-9]\.mlp", "scale": "0"})
    assert edited.effect["after"]["perplexity"] > imported.effect["after"]["perplexity"]
    run_operation(bench, "export", {"directory": str(tmp_path / "smol")})
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smol")
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, as it came


@pytest.mark.slow
def test_every_operation_chains_on_the_bundled_smollm2_and_the_export_generates(bench, tmp_path):
    """The operations the other bundled tests leave out, one after the other on SmolLM2 as `smoltui` runs them:
    prune (unstructured, then layers), quantize to 4 bits, a tweak, reinit with another depth; the export loads
    with transformers and generates."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smoltui.engine.bundled import BUNDLED_MODELS
    from smoltui.engine.tweaks import compare_tweak

    if BUNDLED_MODELS["smollm2-135m-instruct"].path() is None:
        pytest.skip("the bundled SmolLM2 is not installed")
    bench.set("eval_tokens", "128")
    imported = run_operation(bench, "import", {"source": "smollm2-135m-instruct"})
    pruned = run_operation(bench, "prune", {"amount": "0.3"})
    assert 0.29 < pruned.details["sparsity"] < 0.31
    assert pruned.effect["after"]["perplexity"] > imported.effect["after"]["perplexity"]
    fewer = run_operation(bench, "prune", {"amount": "0.1", "kind": "layers"})
    assert AutoModelForCausalLM.from_pretrained(fewer.folder).config.num_hidden_layers == 27
    assert fewer.effect["after"]["params"] < pruned.effect["after"]["params"]
    quantized = run_operation(bench, "quantize", {"bits": "4"})
    assert quantized.details["bytes_after"] < quantized.details["bytes_before"] / 6

    loaded = load_step(bench, quantized)
    untouched = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    compared = compare_tweak(loaded, {"lm_head": 0.02}, prompt="The capital of France is", seed=3, max_tokens=8)
    assert compared.sample_before != compared.sample_after
    assert all(torch.equal(loaded.model.state_dict()[name], tensor) for name, tensor in untouched.items())

    exported = tmp_path / "quantized"
    run_operation(bench, "export", {"directory": str(exported)})
    tokenizer = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 6

    fresh = run_operation(bench, "reinit", {"layers": "2"})
    assert AutoModelForCausalLM.from_pretrained(fresh.folder).config.num_hidden_layers == 2
    assert fresh.effect["after"]["perplexity"] > 10_000  # about the 49,152-token vocabulary's, far from trained
    assert [step.operation for step in bench.history()] == ["import", "prune", "prune", "quantize", "reinit"]
