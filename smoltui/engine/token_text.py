"""Token ids to text: each id on its own (remembered), and a growing sequence piece by piece."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TokenTexts:
    """Each token id's text on its own, decoded once per id and remembered."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.decode = text_decoder(tokenizer)
        self._texts: dict[int, str] = {}

    def get(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self.decode([token_id])
        return text


def text_decoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[int]], str]:
    """ids → text with special tokens kept and no clean-up: the Rust backend's own decode where there is one
    (the transformers wrapper costs ~8 us a call, and the decoder makes dozens a token)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return lambda ids: backend.decode(ids, skip_special_tokens=False)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


class IncrementalDetokenizer:
    """Text pieces for a growing list of token ids, right across multi-byte characters and BPE merges.

    Decoding one id at a time breaks characters whose bytes span tokens and drops the spaces some tokenizers
    attach when a token follows another. So each new token is decoded together with the few before it, and the
    piece is what that adds to the text of those few alone; while the text ends in an incomplete character
    (U+FFFD), the piece is empty and the bytes wait for the next token.
    """

    CONTEXT = 4  # prompt tokens decoded before the first new one, for the tokenizers that need a left neighbour

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt: Sequence[int] = ()) -> None:
        self.decode = text_decoder(tokenizer)
        self.ids = list(prompt[-self.CONTEXT :])
        self.prefix_start = 0
        self.read_start = len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self.decode(self.ids[self.prefix_start : self.read_start])
        after = self.decode(self.ids[self.prefix_start :])
        # A character has at most 4 bytes: 4 waiting tokens that still end mid-character are broken bytes
        # (a model can emit any), shown as they are rather than holding back the text for ever.
        if after.endswith("\ufffd") and len(self.ids) - self.read_start < 4:
            return ""
        self.prefix_start, self.read_start = self.read_start, len(self.ids)
        return after[len(before) :]
