"""Tiny random causal LMs of every family the architecture adapter reads, and a byte-level BPE to go with them.

Shared by the decoder, scoring and chat tests. Each model is built from a transformers config, saved with
`save_pretrained` and loaded back with `AutoModelForCausalLM`, as a user's folder would be.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import transformers

from smoltui.engine.tokenizers import train_bpe

COMMON = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
    "bos_token_id": 0,
    "eos_token_id": 0,
}
# model_type → what that family spells differently (as in tests/test_architecture.py).
FAMILIES = {
    "gpt2": {"n_inner": 64},
    "llama": {"num_key_value_heads": 2},
    "qwen2": {"num_key_value_heads": 2},
    "qwen3": {"num_key_value_heads": 2, "head_dim": 8},
    "mistral": {"num_key_value_heads": 2},
    "gpt_neox": {},
    "opt": {"ffn_dim": 64, "word_embed_proj_dim": 32},
    "phi": {},
    "phi3": {},
    "gemma": {"head_dim": 8, "num_key_value_heads": 1},
    "gemma2": {"head_dim": 8, "num_key_value_heads": 2},
    "gemma3_text": {"head_dim": 8, "num_key_value_heads": 2},
    "smollm3": {"num_key_value_heads": 2, "no_rope_layers": [1, 0]},
    # Not pinned in the adapter's table: found by its generic search.
    "falcon": {},
    "olmo2": {"num_key_value_heads": 2},
    "starcoder2": {"num_key_value_heads": 2},
    "mpt": {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_seq_len": 64},
    "gptj": {"n_inner": 64, "rotary_dim": 4},
}
FAST_FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "smollm3")
TRAINING_TEXT = (
    "The quick brown fox jumps over the lazy dog. A stitch in time saves nine.\n" * 20
    + "Ünïcödé wörds, 日本語のテキスト and 🤖🚀 emoji.\n" * 5
)


@lru_cache(maxsize=1)
def bpe_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE small enough that characters of two or more bytes span several tokens."""
    return train_bpe([TRAINING_TEXT], 300)


def tiny_lm(family: str, folder: Path, *, vocab_size: int | None = None, seed: int = 0, **overrides):
    """A 2-layer, 32-wide random `family` model saved into `folder` and loaded back, in eval mode.

    Norm weights and biases are drawn at random too (they start at 1 and 0), so a forward that skipped or
    misplaced one would give different numbers.
    """
    vocab_size = vocab_size or len(bpe_tokenizer())
    config = transformers.AutoConfig.for_model(family, **(COMMON | FAMILIES[family] | {"vocab_size": vocab_size}))
    for name, value in overrides.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.add_(torch.randn_like(parameter) * 0.3)
            elif "embed" in name or "wte" in name or "lm_head" in name:
                parameter.normal_(0.0, 1.0)  # peaked next-token distributions, as a trained model has
    model.save_pretrained(folder)
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


class TinyModels:
    """One tiny model per family, built on first use into `folders` (a pytest tmp_path_factory)."""

    def __init__(self, folders) -> None:
        self.folders = folders
        self.built: dict[str, object] = {}

    def __call__(self, family: str):
        if family not in self.built:
            self.built[family] = tiny_lm(family, self.folders.mktemp(family))
        return self.built[family]


def tiny_lm_folder(family: str, folder: Path, *, seed: int = 0) -> Path:
    """A tiny `family` model with the byte-level BPE saved beside it: a folder any model source reads."""
    tiny_lm(family, folder, seed=seed)
    bpe_tokenizer().save_pretrained(folder)
    return folder


def write_checkpoints(run_dir: Path, model, tokenizer, steps: tuple[int, ...] = (10, 20)) -> Path:
    """Checkpoints of `model` at `steps` in `run_dir`, each one's weights moved a little from the one before."""
    from smoltui.engine.checkpoints import save_checkpoint

    for index, step in enumerate(steps):
        moved = type(model)(model.config).eval()
        moved.load_state_dict({name: value + 0.05 * index for name, value in model.state_dict().items()})
        save_checkpoint(run_dir, step, moved, tokenizer, {"step": step})
    return run_dir
