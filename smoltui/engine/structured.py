"""Structured output: a JSON-schema constraint that forces the JSON skeleton and lets the model fill the values.

"Schema scaffolding": at each step llguidance computes, from the schema, the tokens the schema fixes from here on
(braces, keys, separators, the rest of an enum value once it is unambiguous), which the decoder appends without
sampling, and otherwise the mask of the tokens allowed next, which the decoder applies to the logits before it
samples. The result always parses and fits the schema, whatever the model. JSON is written compact (no
whitespace between tokens), or a weak model pads it with spaces and newlines; object properties come in the
order the schema lists them.

llguidance needs its own view of the tokenizer (every token's bytes, in a trie); building it takes around half a
second to a second for a 49k vocabulary, so it is built once per tokenizer and cached (`_llg_tokenizer`). torch,
transformers and llguidance are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smoltui.engine.errors import UserError
from smoltui.engine.tokenizers import describe_tokenizer, tokenizer_fingerprint

if TYPE_CHECKING:
    import llguidance
    import torch
    from transformers import PreTrainedTokenizerBase

SCHEMA_FIELD = "json_schema"  # the setting a schema mistake is about: --json-schema, the Sample screen's field
# Applied after the schema's own "x-guidance" options, so a schema cannot turn them back: compact JSON, and
# every keyword enforced (lenient would ignore the ones llguidance lacks, coerce_one_of would loosen oneOf).
_COMPILE_OPTIONS = {"whitespace_flexible": False, "lenient": False, "coerce_one_of": False}
_STRING_FORMATS = "date-time, time, date, duration, email, hostname, ipv4, ipv6, uuid, uri"
_CACHED_TOKENIZERS = 4  # a session holds one model; a few more cover switching back and forth
_cache: OrderedDict[str, llguidance.LLTokenizer] = OrderedDict()
_cache_lock = threading.Lock()


class JsonSchemaConstraint:
    """Keeps one generation inside a JSON schema: forced tokens, the allowed-token mask, and when it is done.

    The decoder's loop: append `forced_tokens()` and `consume` each; if not `done`, mask the logits with
    `allowed_tokens()`, sample, and `consume` the sample; stop once `done`. The end-of-text token (the
    tokenizer's EOS, else its pad token) is allowed only where the JSON may end, and consuming it makes `done`
    true; for an object or array the closing bracket already does. `vocab_size` is the mask's length.
    """

    def __init__(self, schema: dict | str, tokenizer: PreTrainedTokenizerBase, *, vocab_size: int | None = None):
        """`vocab_size`: the model's vocabulary (its logits' width) when it pads the tokenizer's."""
        import llguidance

        schema = _parse_schema(schema) if isinstance(schema, str) else schema
        if not isinstance(schema, dict):
            raise UserError(
                'a JSON schema must be an object, such as {"type": "object", "properties": {...}}; '
                "write the schema as one.",
                field=SCHEMA_FIELD,
            )
        self._tokenizer = tokenizer
        self._llg_tokenizer = _llg_tokenizer(tokenizer)
        if _tokens_are_their_text(tokenizer):
            _check_writable(schema, tokenizer)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_COMPILE_OPTIONS)
        self._matcher = llguidance.LLMatcher(self._llg_tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise UserError(_schema_problem(self._matcher.get_error()), field=SCHEMA_FIELD)
        self._tokenizer_size = self._llg_tokenizer.vocab_size
        self.vocab_size = max(vocab_size or 0, self._tokenizer_size)
        self._consumed: list[int] = []  # for error messages: what was written before a dead end
        self._bitmask = np.zeros((1, (self._tokenizer_size + 31) // 32), dtype=np.int32)

    @classmethod
    def from_file(
        cls, path: str | Path, tokenizer: PreTrainedTokenizerBase, *, vocab_size: int | None = None
    ) -> JsonSchemaConstraint:
        """The constraint for the schema in a JSON file (`--json-schema FILE`)."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise UserError(
                f"cannot read the JSON schema file {path} ({reason}); pass a readable UTF-8 .json file.",
                field=SCHEMA_FIELD,
            ) from None
        return cls(_parse_schema(text, source=str(path)), tokenizer, vocab_size=vocab_size)

    @property
    def done(self) -> bool:
        """The JSON is complete: nothing may follow it (the decoder stops here)."""
        return self._matcher.is_stopped()

    def forced_tokens(self) -> list[int]:
        """The tokens the schema fixes from here on (the skeleton), possibly none; not yet consumed."""
        if self.done:
            return []
        forced = self._matcher.compute_ff_tokens()
        # llguidance tokenizes the forced text with the tokenizer itself, and the char tokenizer writes a character
        # it lacks as <UNK> (or normalizes a curly quote to a straight one): keep only the part that really fits,
        # and let `allowed_tokens` report the character that cannot be written.
        return forced[: self._matcher.validate_tokens(forced)]

    def allowed_tokens(self) -> torch.Tensor | None:
        """A (vocab_size,) bool mask of the tokens allowed next; None once `done`."""
        import torch
        from llguidance.numpy import fill_next_token_bitmask

        if self.done:
            return None
        fill_next_token_bitmask(self._matcher, self._bitmask)
        # Token i is bit i % 32 of word i // 32, least significant first: little-endian bytes, little bit order.
        bits = np.unpackbits(self._bitmask.astype("<i4", copy=False).view(np.uint8), bitorder="little")
        allowed = np.zeros(self.vocab_size, dtype=bool)  # ids past the tokenizer's (model padding) stay False
        allowed[: self._tokenizer_size] = bits[: self._tokenizer_size]
        only = np.flatnonzero(allowed)
        if len(only) == 1 and self._matcher.validate_tokens([int(only[0])]) != 1:
            # Where the text is fixed, llguidance puts the tokenizer's own first token for it in the mask; for a
            # character the char tokenizer lacks, that is <UNK>, which the schema then refuses: a dead end.
            allowed[only[0]] = False
        if not allowed.any():
            written = self._llg_tokenizer.decode_str(self._consumed)[-40:]
            raise UserError(
                f"the schema needs a character that the tokenizer {describe_tokenizer(self._tokenizer)} cannot write "
                f"after {written!r}; write the schema's patterns with characters that the tokenizer has.",
                field=SCHEMA_FIELD,
            )
        return torch.from_numpy(allowed)  # (vocab_size,)

    def consume(self, token_id: int) -> None:
        """Advance by one token, sampled or forced; a token the schema does not allow here is refused."""
        token_id = int(token_id)
        if self.done or not 0 <= token_id < self._tokenizer_size or self._matcher.validate_tokens([token_id]) != 1:
            raise UserError(
                f"token {token_id} ({self._describe(token_id)}) does not fit the JSON schema here; "
                "take the next token from forced_tokens() or from the allowed_tokens() mask."
            )
        if not self._matcher.consume_token(token_id):  # validated above, so only a resource limit lands here
            reason = self._matcher.get_error().splitlines()[0]
            raise UserError(
                f"structured output had to stop ({reason}); simplify the JSON schema.",
                field=SCHEMA_FIELD,
            )
        self._consumed.append(token_id)

    def _describe(self, token_id: int) -> str:
        if self.done:
            return "after the end of the JSON"
        if not 0 <= token_id < self._tokenizer_size:
            return "outside the tokenizer's vocabulary"
        return repr(self._llg_tokenizer.decode_str([token_id]))


def _parse_schema(text: str, source: str = "the JSON schema") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"{source} is not JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "fix the JSON or pass a .json schema file.",
            field=SCHEMA_FIELD,
        ) from None


def _schema_problem(message: str) -> str:
    """llguidance's complaint about a schema as one sentence that names the fix."""
    unimplemented = re.match(r"Unimplemented keys: \[(.*)\]", message)
    if unimplemented:
        keys = unimplemented.group(1).replace('"', "")
        return f"structured output does not support the JSON schema keyword(s) {keys}; remove them from the schema."
    if message.startswith("Unknown format: "):
        name = message.removeprefix("Unknown format: ").strip()
        return (
            f'structured output does not support the string format "{name}" (it knows {_STRING_FORMATS}); '
            "remove the format or write a pattern instead."
        )
    if message.startswith("oneOf constraints are not supported"):
        return (
            "structured output supports oneOf only where its branches cannot overlap; "
            "make the branches disjoint or write anyOf."
        )
    if "look-around" in message:
        return "structured output does not support look-around, (?=...) or (?<=...), in a pattern; rewrite it without."
    if "not present in a registry" in message:
        return "structured output cannot fetch a $ref to another document; copy that schema under $defs, refer to it."
    if message.startswith("Unsatisfiable schema: "):
        reason = message.removeprefix("Unsatisfiable schema: ")
        return f"no JSON value fits the schema ({reason}); loosen the constraints that conflict."
    detail = " ".join(message.split())  # regex errors come on several lines
    return f"the JSON schema is not valid or not supported ({detail}); fix the schema."


def _check_writable(schema: dict, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse a key, constant or enum value with a character the (char) tokenizer lacks, before generating.

    llguidance would let the model start such a value and then find no token for the missing character.
    """
    special = set(tokenizer.all_special_tokens)
    writable = {text for text in tokenizer.get_vocab() if len(text) == 1 and text not in special}
    for text in _fixed_texts(schema):
        missing = next((char for char in text if char not in writable), None)
        if missing is not None:
            raise UserError(
                f"the schema's text {text!r} has {missing!r}, which the tokenizer {describe_tokenizer(tokenizer)} "
                "cannot write; use only characters that the tokenizer has in keys, constants and enums.",
                field=SCHEMA_FIELD,
            )


def _fixed_texts(node: Any) -> list[str]:
    """Property names and the strings inside const and enum values, anywhere in a schema."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            found += node["properties"]
        for keyword in ("const", "enum"):
            if keyword in node:
                found += _strings_in(node[keyword])
        for value in node.values():
            found += _fixed_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += _fixed_texts(value)
    return found


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *_strings_in(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings_in(item)]
    return []


def _llg_tokenizer(tokenizer: PreTrainedTokenizerBase) -> llguidance.LLTokenizer:
    """llguidance's view of `tokenizer`, built once per distinct tokenizer (about a second for 49k tokens)."""
    key = tokenizer_fingerprint(tokenizer)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        built = _build_llg_tokenizer(tokenizer)
        _cache[key] = built
        if len(_cache) > _CACHED_TOKENIZERS:
            _cache.popitem(last=False)
        return built


def _build_llg_tokenizer(tokenizer: PreTrainedTokenizerBase) -> llguidance.LLTokenizer:
    import llguidance

    name = describe_tokenizer(tokenizer)
    end_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    if end_id is None:
        raise UserError(
            f"the tokenizer {name} has neither an end-of-text nor a padding token, so a generation could not end "
            "after the JSON; give it an eos_token."
        )
    if _tokens_are_their_text(tokenizer):
        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_LiteralTokenizer(tokenizer, end_id)))
    if not tokenizer.is_fast:
        raise UserError(
            f"structured output cannot use the Python tokenizer {name}; load the model's fast tokenizer "
            "(tokenizer.json) instead."
        )
    import llguidance.hf

    try:
        return llguidance.hf.from_tokenizer(tokenizer, eos_token=end_id)
    except ValueError as error:
        raise UserError(
            f"structured output cannot read the tokenizer {name} ({str(error).strip()}); "
            "use a byte-level BPE, SentencePiece or char tokenizer."
        ) from None


def _tokens_are_their_text(tokenizer: PreTrainedTokenizerBase) -> bool:
    """A WordLevel tokenizer that decodes by concatenation (the char policy): each entry is its own text.

    llguidance reads a tokenizer's bytes from its decoder, and knows byte-level and byte-fallback ones only.
    """
    if not tokenizer.is_fast:
        return False
    from tokenizers import decoders, models

    backend = tokenizer.backend_tokenizer
    return isinstance(backend.model, models.WordLevel) and isinstance(backend.decoder, decoders.Fuse)


class _LiteralTokenizer:
    """What llguidance's TokenizerWrapper reads from a tokenizer whose every entry is the text it stands for."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, end_id: int) -> None:
        text_of = {index: text for text, index in tokenizer.get_vocab().items()}
        self.tokens = [text_of[index].encode("utf-8") for index in range(len(tokenizer))]
        self.eos_token_id = end_id
        self.bos_token_id = tokenizer.bos_token_id
        # Special tokens (<PAD>, <UNK>) are never text: llguidance keeps them out of every string it allows.
        self.special_token_ids = sorted(set(tokenizer.all_special_ids))
        self._tokenizer = tokenizer

    def __call__(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError("pass text, not bytes")  # TokenizerWrapper probes with bytes, then sends str
        return self._tokenizer.encode(text, add_special_tokens=False)
