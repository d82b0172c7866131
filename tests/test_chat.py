"""Chat prompts through the tokenizer's template, and plain text with a note where there is none."""

from __future__ import annotations

import pytest
from tiny_lms import bpe_tokenizer, tiny_lm
from transformers import AutoTokenizer

from smoltui.engine.chat import NO_TEMPLATE_NOTE, chat_prompt
from smoltui.engine.decoder import DecodeFinished, decode
from smoltui.engine.errors import UserError

CHATML = (
    "{% for message in messages %}<|endoftext|>{{ message['role'] }}\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}"
)
CONVERSATION = [
    {"role": "user", "content": "Hello there."},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "Name a fox."},
]


@pytest.fixture
def templated(tmp_path):
    """A tokenizer with a chat template, saved and loaded back as a model folder's would be."""
    tokenizer = bpe_tokenizer()
    tokenizer.chat_template = CHATML
    try:
        tokenizer.save_pretrained(tmp_path)
    finally:
        tokenizer.chat_template = None
    return AutoTokenizer.from_pretrained(tmp_path)


def test_system_prompt_and_turns_go_through_the_template(templated):
    prompt = chat_prompt(templated, CONVERSATION, system="Be brief.")

    expected = templated.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *CONVERSATION], add_generation_prompt=True, tokenize=False
    )
    assert prompt.text == expected
    assert prompt.text.endswith("<|endoftext|>assistant\n")
    assert prompt.ids == templated(expected, add_special_tokens=False)["input_ids"]
    assert templated.decode(prompt.ids) == expected
    assert prompt.note is None
    assert not chat_prompt(templated, CONVERSATION, add_generation_prompt=False).text.endswith("assistant\n")


def test_without_a_template_the_text_is_continued_plainly_with_a_note():
    tokenizer = bpe_tokenizer()
    assert tokenizer.chat_template is None
    prompt = chat_prompt(tokenizer, CONVERSATION, system="Be brief.")
    assert prompt.text == "Be brief.\nHello there.\nHi! How can I help?\nName a fox."
    assert prompt.ids == tokenizer(prompt.text)["input_ids"]
    assert prompt.note == NO_TEMPLATE_NOTE and prompt.note.count(".") == 1


def test_a_chat_prompt_decodes(templated, tmp_path):
    model = tiny_lm("llama", tmp_path / "m")
    events = list(decode(model, templated, chat_prompt(templated, CONVERSATION).ids, max_new_tokens=5))
    assert isinstance(events[-1], DecodeFinished) and events[-1].new_tokens >= 1


@pytest.mark.parametrize(
    ("messages", "system", "field"),
    [
        ([{"role": "narrator", "content": "x"}], None, "messages"),
        ([{"role": "user", "content": None}], None, "messages"),
        ([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], "c", "system"),
        ([], "only a system prompt", "messages"),
    ],
)
def test_malformed_conversations_are_user_errors(messages, system, field, templated):
    with pytest.raises(UserError) as error:
        chat_prompt(templated, messages, system=system)
    assert error.value.field == field


def test_a_template_that_refuses_the_turns_is_a_user_error(templated):
    templated.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(UserError, match="alternate"):
        chat_prompt(templated, CONVERSATION)
