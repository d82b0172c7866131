"""Chat prompts: a system prompt and a conversation through the tokenizer's chat template, or plain text without one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
NO_TEMPLATE_NOTE = "This model's tokenizer has no chat template, so the conversation is continued as plain text."


@dataclass(frozen=True)
class ChatPrompt:
    """The token ids to decode from, the text they spell, and a note for the user when there was no template."""

    ids: list[int]
    text: str
    note: str | None = None


def chat_prompt(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, str]],
    *,
    system: str | None = None,
    add_generation_prompt: bool = True,
) -> ChatPrompt:
    """The prompt for `messages` ({"role", "content"} each, oldest first) after an optional `system` prompt.

    With a chat template the conversation goes through it, ending with the assistant's turn opened (unless
    `add_generation_prompt` is False). Without one, the contents are joined by newlines for plain completion
    and the result carries NO_TEMPLATE_NOTE.
    """
    conversation = _checked(messages, system)
    if getattr(tokenizer, "chat_template", None) is None:
        text = "\n".join(message["content"] for message in conversation)
        return ChatPrompt(ids=_encode(tokenizer, text), text=text, note=NO_TEMPLATE_NOTE)
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError as error:
        raise UserError(f"this model's chat template refused the conversation ({error}); change the turns.") from None
    return ChatPrompt(ids=_encode(tokenizer, text), text=text)


def _checked(messages: Sequence[Mapping[str, str]], system: str | None) -> list[dict[str, str]]:
    conversation = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise UserError(f"a chat message has role {role!r}; use one of {', '.join(ROLES)}.", field="messages")
        if not isinstance(content, str):
            raise UserError("every chat message needs text content; fill in the empty one.", field="messages")
        if role == "system" and conversation:
            raise UserError("a system prompt can only open the conversation; give it once, first.", field="system")
        conversation.append({"role": role, "content": content})
    if not any(message["role"] != "system" for message in conversation):
        raise UserError("the conversation has no message yet; type one.", field="messages")
    return conversation


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # A template writes its own special tokens; the plain text gets what the tokenizer adds by itself (a BOS).
    return list(tokenizer(text, add_special_tokens=getattr(tokenizer, "chat_template", None) is None)["input_ids"])
