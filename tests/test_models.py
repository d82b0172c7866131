"""Model sources: saved folders (single and sharded), Hub ids, registered prefixes, every bad input, summaries."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from smoltui.engine.errors import UserError
from smoltui.engine.models import load_model, module_table, summarize

transformers = pytest.importorskip("transformers")

CORPUS = "def add(a, b):\n    return a + b\n\nclass Stack:\n    def push(self, item):\n        pass\n" * 40
HUB_MESSAGE = (
    "could not reach the Hugging Face Hub for 'HuggingFaceTB/SmolLM2-135M'; download it where the Hub is "
    "reachable and pass the local folder instead."
)


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    return message


def logits(model: nn.Module) -> torch.Tensor:
    ids = torch.arange(3, 19).unsqueeze(0)  # (1, 16)
    with torch.no_grad():
        return model(ids).logits  # (1, 16, vocab)


@pytest.fixture
def saved_tiny(tmp_path):
    """A tiny preset saved the way a user's folder is: model and tokenizer side by side."""
    loaded = load_model("tiny", device="cpu", seed=3)
    folder = tmp_path / "tiny-model"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return loaded, folder


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache of our own, so what the machine has cached never changes a test."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


# ---- sources and tokenizers ---------------------------------------------------------------------------------


def test_vocab_follows_a_trained_bpe_which_is_cached_per_corpus(workspace):
    messages: list[str] = []
    bpe = {"tokenizer": "bpe:300", "corpus_texts": lambda: [CORPUS], "device": "cpu", "progress": messages.append}
    first = load_model("tiny", **bpe)
    assert first.summary.vocab == len(first.tokenizer) <= 300
    assert first.model.config.eos_token_id == first.tokenizer.eos_token_id is not None
    assert sum("training a byte-level BPE" in m for m in messages) == 1
    cached = list((workspace / "cache" / "tokenizers").iterdir())
    assert [path.name.split("-")[0] for path in cached] == ["bpe300"]

    messages.clear()
    again = load_model("tiny", **bpe)
    assert not any("training" in m for m in messages)
    assert again.tokenizer.get_vocab() == first.tokenizer.get_vocab()

    load_model("tiny", tokenizer="bpe:300", corpus_texts=lambda: [CORPUS + "x = 1\n"], device="cpu")
    assert len(list((workspace / "cache" / "tokenizers").iterdir())) == 2


def test_bpe_trains_on_the_builtin_corpus_when_none_is_given(workspace, monkeypatch):
    from smoltui.engine import data

    asked: list[str] = []

    class Corpus:
        text = CORPUS

    monkeypatch.setattr(data, "read_corpus", lambda source: asked.append(source) or Corpus())
    loaded = load_model("tiny", tokenizer="bpe:280", device="cpu")
    assert asked == ["builtin:pydocs"]
    assert loaded.summary.vocab == len(loaded.tokenizer)


@pytest.mark.parametrize("name", ["nano", "smollm2", "nanochar", "Tiny", "smollm2-instruct"])
def test_preset_lookalikes_list_the_presets(name):
    with pytest.raises(UserError) as error:
        load_model(name, device="cpu")
    assert one_sentence(error) == (
        f"unknown model {name!r}; known presets: nano-char, smollm2-135m, gpt2-small, tiny; bundled: "
        "smollm2-135m-instruct — or pass a .gguf file, a folder or a Hub id."
    )


def test_an_empty_source_gets_a_sentence():
    with pytest.raises(UserError, match="no model given") as error:
        load_model("  ", device="cpu")
    one_sentence(error)


# ---- folders ------------------------------------------------------------------------------------------------------


def test_a_saved_folder_gives_the_same_logits(saved_tiny):
    original, folder = saved_tiny
    loaded = load_model(str(folder), device="cpu")
    assert (loaded.kind, loaded.summary) == ("folder", original.summary)
    assert not loaded.model.training
    assert torch.equal(logits(loaded.model), logits(original.model))
    assert loaded.tokenizer.get_vocab() == original.tokenizer.get_vocab()


def test_a_sharded_folder_gives_the_same_logits(tmp_path):
    original = load_model("tiny", device="cpu", seed=5)
    folder = tmp_path / "sharded"
    original.model.save_pretrained(folder, max_shard_size="20KB")
    original.tokenizer.save_pretrained(folder)
    assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("model-*.safetensors"))) > 1
    loaded = load_model(str(folder), device="cpu")
    assert torch.equal(logits(loaded.model), logits(original.model))


def test_pickled_weights_load_too(saved_tiny):
    original, folder = saved_tiny
    (folder / "model.safetensors").unlink()
    torch.save(original.model.state_dict(), folder / "pytorch_model.bin")
    loaded = load_model(str(folder), device="cpu")
    assert torch.equal(logits(loaded.model), logits(original.model))


def test_a_folder_loads_in_the_asked_dtype(saved_tiny):
    _, folder = saved_tiny
    assert load_model(str(folder), device="cpu", dtype="bf16").summary.dtype == "bf16"


def test_an_explicit_tokenizer_overrides_the_folders(saved_tiny, workspace):
    _, folder = saved_tiny
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(UserError, match="has no tokenizer files; pass a tokenizer") as error:
        load_model(str(folder), device="cpu")
    one_sentence(error)
    assert len(load_model(str(folder), tokenizer="char", device="cpu").tokenizer) == 99
    with pytest.raises(UserError, match="the tokenizer has 2.. tokens but the model's vocabulary has 99") as error:
        load_model(str(folder), tokenizer="bpe:280", corpus_texts=lambda: [CORPUS], device="cpu")
    one_sentence(error)


def test_overrides_do_not_apply_to_a_folder(saved_tiny):
    _, folder = saved_tiny
    with pytest.raises(UserError, match="overrides change a preset's architecture") as error:
        load_model(str(folder), device="cpu", overrides={"n_layer": 3})
    one_sentence(error)


@pytest.mark.parametrize("written", ["/no/such/model", "./no-such-model", "~/no-such-model-here", "a/b/c"])
def test_a_missing_path(written):
    with pytest.raises(UserError) as error:
        load_model(written, device="cpu")
    assert one_sentence(error) == f"no such folder: {written}; check the path."


def test_a_file_instead_of_a_folder(saved_tiny):
    _, folder = saved_tiny
    with pytest.raises(UserError, match="is a file; pass the folder that holds config.json") as error:
        load_model(str(folder / "model.safetensors"), device="cpu")
    one_sentence(error)


def test_a_folder_without_config(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(UserError) as error:
        load_model(str(tmp_path / "weights"), device="cpu")
    assert one_sentence(error) == (
        f"{tmp_path / 'weights'} has no config.json; point at a folder saved with save_pretrained."
    )


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_a_broken_safetensors_file(saved_tiny, how):
    _, folder = saved_tiny
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) * 2 // 3], "garbage": b"not weights " * 500, "empty": b""}[how])
    with pytest.raises(UserError) as error:
        load_model(str(folder), device="cpu")
    message = one_sentence(error)
    assert message.startswith(f"{weights} is truncated or corrupt (")
    assert message.endswith("); re-save or re-download it.")


def test_a_truncated_shard(tmp_path):
    original = load_model("tiny", device="cpu")
    folder = tmp_path / "sharded"
    original.model.save_pretrained(folder, max_shard_size="20KB")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(UserError, match=f"^{shard} is truncated or corrupt") as error:
        load_model(str(folder), device="cpu")
    one_sentence(error)


def test_a_missing_shard(tmp_path):
    original = load_model("tiny", device="cpu")
    folder = tmp_path / "sharded"
    original.model.save_pretrained(folder, max_shard_size="20KB")
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(UserError, match=f"lacks {shard.name}, which model.safetensors.index.json lists") as error:
        load_model(str(folder), device="cpu")
    one_sentence(error)


def test_a_truncated_pickle(saved_tiny):
    original, folder = saved_tiny
    (folder / "model.safetensors").unlink()
    torch.save(original.model.state_dict(), folder / "pytorch_model.bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="are truncated or corrupt") as error:
        load_model(str(folder), device="cpu")
    one_sentence(error)


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda f: (f / "model.safetensors").unlink(), "has no weights (model.safetensors)"),
        (lambda f: (f / "config.json").write_text("{not json"), "config.json is not readable JSON"),
        (lambda f: edit_config(f, model_type="no_such_family"), "does not know ('no_such_family')"),
        (lambda f: edit_config(f, n_layer=3), "lacks 12 tensors its config.json describes"),
        (lambda f: edit_config(f, n_embd=64), "do not fit its config.json (tensor shapes differ)"),
        (lambda f: edit_config(f, auto_map={"AutoConfig": "x.Y"}, model_type="x"), "ships its own model code"),
    ],
)
def test_a_broken_folder_gets_a_sentence(saved_tiny, change, fragment):
    _, folder = saved_tiny
    change(folder)
    with pytest.raises(UserError) as error:
        load_model(str(folder), device="cpu")
    assert fragment in one_sentence(error)


def test_a_model_that_is_not_a_causal_lm(tmp_path):
    folder = tmp_path / "vit"
    transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(folder)
    with pytest.raises(UserError) as error:
        load_model(str(folder), device="cpu")
    assert one_sentence(error) == (
        f"{folder} holds a vit model, which is not a causal language model; smoltui loads decoder-only models "
        "such as GPT-2, Llama or Qwen2."
    )


def test_a_causal_lm_we_cannot_read_yet(tmp_path):
    config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, is_decoder=True
    )
    folder = tmp_path / "bert"
    transformers.BertLMHeadModel(config).save_pretrained(folder)
    with pytest.raises(UserError, match=r"^not supported yet: BertLMHeadModel\b") as error:
        load_model(str(folder), device="cpu")
    one_sentence(error)


# ---- the Hub and registered sources -------------------------------------------------------------------------------


def test_an_unreachable_hub_fails_at_once(empty_hub_cache):
    from smoltui.engine.tokenizers import hub_reachable

    if hub_reachable():
        pytest.skip("the Hugging Face Hub is reachable here; this test is about a closed network")
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        load_model("HuggingFaceTB/SmolLM2-135M", device="cpu")
    assert time.monotonic() - started < 10
    assert one_sentence(error) == HUB_MESSAGE


def test_a_refused_hub_connection_fails_at_once(empty_hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        load_model("HuggingFaceTB/SmolLM2-135M", device="cpu")
    assert time.monotonic() - started < 10
    assert one_sentence(error) == HUB_MESSAGE


def test_offline_mode_fails_without_trying(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        load_model("HuggingFaceTB/SmolLM2-135M", device="cpu")
    assert time.monotonic() - started < 2
    assert one_sentence(error) == HUB_MESSAGE


def test_a_bare_name_that_is_not_a_preset_goes_to_the_hub(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not reach the Hugging Face Hub for 'gpt2'"):
        load_model("gpt2", device="cpu")


def test_a_hub_id_in_the_local_cache_loads_offline(saved_tiny, empty_hub_cache, monkeypatch):
    original, folder = saved_tiny
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = empty_hub_cache / "models--someone--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    folder.rename(repo / "snapshots" / commit)
    loaded = load_model("someone/tiny", device="cpu")
    assert loaded.kind == "hub"
    assert torch.equal(logits(loaded.model), logits(original.model))


# ---- summaries ----------------------------------------------------------------------------------------------------


def test_tied_embeddings_count_once():
    model = load_model("tiny", device="cpu").model
    summary = summarize(model)
    vocab_rows = 99 * 32
    assert summary.total_params == model.num_parameters()
    assert summary.embedding_params == vocab_rows + 64 * 32  # tokens and positions
    assert summary.non_embedding_params == model.num_parameters(exclude_embeddings=True)
    assert summary.bytes == summary.total_params * 4


def test_a_head_sharing_memory_with_the_embedding_counts_once():
    model = load_model("tiny", device="cpu").model
    counted = summarize(model).total_params
    model.lm_head.weight = nn.Parameter(model.transformer.wte.weight.data)  # another Parameter, same memory
    assert summarize(model).total_params == counted


def test_module_table_adds_up():
    model = load_model("nano-char", device="cpu").model
    rows = module_table(model)
    total = summarize(model).total_params
    assert rows[0].name == "" and rows[0].depth == 0 and rows[0].params == total
    assert sum(row.own_params for row in rows) == total
    by_name = {row.name: row for row in rows}
    for row in rows:
        children = [r for r in rows if r.depth == row.depth + 1 and r.name.startswith(f"{row.name}.".lstrip("."))]
        assert row.params == row.own_params + sum(child.params for child in children), row.name
    assert by_name["lm_head"].params == 0  # tied: counted at transformer.wte
    assert by_name["transformer.h.0.attn"].kind == "GPT2Attention"
    shallow = module_table(model, max_depth=2)
    assert max(row.depth for row in shallow) == 2 and [r.name for r in shallow] == [
        r.name for r in rows if r.depth <= 2
    ]


@pytest.mark.gpu
def test_presets_and_folders_load_onto_the_gpu(saved_tiny):
    original, folder = saved_tiny
    preset = load_model("tiny", device="cuda", dtype="bf16")
    assert (preset.summary.device, preset.summary.dtype) == ("cuda:0", "bf16")
    loaded = load_model(str(folder), device="cuda", dtype="fp32")
    assert loaded.summary.device == "cuda:0"
    assert torch.allclose(logits(loaded.model.cpu()), logits(original.model))
