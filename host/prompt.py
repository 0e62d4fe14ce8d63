"""The reply prompt: who the agent is, the composed state, the actions, then the message.

`reply_params` is what the runtime sends as ``TEXT_LARGE`` for a message: the character's
ElizaOS ``messageHandlerTemplate`` when it has one (`host.templates`), else `build_prompt`, and
the system prompt. Both end with the message section of `contracts.prompts`, which simple
models (ELIZA) answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Final

from contracts.agent import Action, Character, State
from contracts.memory import Memory
from contracts.models import TextParams
from contracts.prompts import message_section
from host.pydantic_slots import constructed
from host.templates import MESSAGE_TEMPLATE, render_message_template

__all__ = ["PROMPT_EXAMPLES", "build_prompt", "reply_params", "system_prompt"]

_GIVEN: Final = frozenset({"prompt", "system"})
PROMPT_EXAMPLES = 3
"""At most this many of the character's message examples go into the prompt."""


def reply_params(
    character: Character, state: State, message: Memory, actions: Sequence[Action] = ()
) -> TextParams:
    """The ``TEXT_LARGE`` call for `message`: the character's template or `build_prompt`."""
    template = character.templates.get(MESSAGE_TEMPLATE)
    if template:
        prompt = render_message_template(template, character, state, message, actions)
    else:
        prompt = build_prompt(character, state, message, actions)
    system = system_prompt(character)
    # both strings: what validation would keep as they are (the prompt given: its check holds)
    if type(prompt) is not str or type(system) is not str:
        return TextParams(prompt=prompt, system=system)
    values = {
        "prompt": prompt,
        "messages": (),
        "system": system,
        "temperature": None,
        "max_tokens": None,
        "stop": (),
        "model": None,
    }
    return constructed(TextParams, values, set(_GIVEN))


def build_prompt(
    character: Character, state: State, message: Memory, actions: Sequence[Action] = ()
) -> str:
    """The TEXT_LARGE prompt: who the agent is, the composed state, the actions, the message.

    The message text is the last line so that simple models (ELIZA) can answer just it.
    """
    parts: list[str] = []
    if character.bio:
        parts.append(f"# About {character.name}\n" + "\n".join(character.bio))
    if character.adjectives:
        parts.append(f"{character.name} is " + ", ".join(character.adjectives) + ".")
    style = character.style.get("all", []) + character.style.get("chat", [])
    if style:
        parts.append("# Style\n" + "\n".join(f"- {rule}" for rule in style))
    if character.topics:
        parts.append(f"{character.name} likes to talk about " + ", ".join(character.topics) + ".")
    # on every message: format only the examples the prompt takes, not all of them
    formatted = (_example(character, conversation) for conversation in character.message_examples)
    examples = list(itertools.islice(filter(None, formatted), PROMPT_EXAMPLES))
    if examples:
        parts.append("# Example conversations\n" + "\n\n".join(examples))
    if state.text:
        parts.append(state.text)
    if actions:
        lines = [f"- {a.name}: {a.description}" for a in actions]
        parts.append(
            "# Available actions (name them on a line `ACTIONS: NAME` to use them)\n"
            + "\n".join(lines)
        )
    sender = str((message.content.model_extra or {}).get("name") or "user")
    parts.append(message_section(sender, message.content.text))
    return "\n\n".join(parts)


def system_prompt(character: Character) -> str:
    """The character's ``system``, or one made from its name and bio."""
    if character.system:
        return character.system
    return f"You are {character.name}." + (" " + " ".join(character.bio) if character.bio else "")


def _example(character: Character, conversation: list[dict[str, Any]]) -> str:
    """One ElizaOS message example (``[{name, content: {text}}, ...]``) as ``name: text`` lines;
    ``{{user1}}``-style placeholders read as ``user``."""
    lines = []
    for turn in conversation:
        content = turn.get("content")
        text = content.get("text") if isinstance(content, dict) else None
        if not isinstance(text, str) or not text:
            continue
        name = str(turn.get("name") or turn.get("user") or "user")  # ElizaOS v1 said "user"
        if name.startswith("{{"):
            name = "user"
        lines.append(f"{name}: {text}")
    return "\n".join(lines)
