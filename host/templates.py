"""A character's ElizaOS ``messageHandlerTemplate`` as the reply prompt.

ElizaOS templates are Handlebars-style text with ``{{name}}`` placeholders. The runtime's
prompt (`host.prompt.build_prompt`) is replaced by the template with these filled in:

- ``agentName``, ``bio``, ``system``, ``adjectives``, ``topics``, ``style`` from the character;
- ``providers`` (every provider's text, as in the default prompt), ``recentMessages`` (the
  ``recent_messages`` provider's text);
- ``actions`` (the available actions, one ``- NAME: description`` line each), ``actionNames``;
- ``senderName``, ``message`` / ``text`` (the incoming message);
- any other name from ``state.values`` (what providers put there).

Unknown names become empty text (as in ElizaOS). When the template does not place the
incoming message (``{{message}}`` / ``{{text}}``), it is appended as the default prompt ends
(`contracts.prompts.message_section`), so every model, ELIZA included, sees what to answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from contracts.agent import Action, Character, State
from contracts.memory import Memory
from contracts.prompts import message_section

__all__ = ["HONOURED_TEMPLATES", "MESSAGE_TEMPLATE", "render_message_template"]

MESSAGE_TEMPLATE = "messageHandlerTemplate"
HONOURED_TEMPLATES = frozenset({MESSAGE_TEMPLATE})
"""Template names agenthost uses; the character loader warns about the others."""

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_message_template(
    template: str,
    character: Character,
    state: State,
    message: Memory,
    actions: Sequence[Action] = (),
) -> str:
    """The reply prompt from `template` (see the module doc)."""
    sender = str((message.content.model_extra or {}).get("name") or "user")
    recent = state.providers.get("recent_messages")
    style = character.style.get("all", []) + character.style.get("chat", [])
    values: dict[str, Any] = {
        **state.values,
        "agentName": character.name,
        "bio": "\n".join(character.bio),
        "system": character.system or "",
        "adjectives": ", ".join(character.adjectives),
        "topics": ", ".join(character.topics),
        "style": "\n".join(f"- {rule}" for rule in style),
        "providers": state.text,
        "recentMessages": recent.text if recent is not None else "",
        "actions": "\n".join(f"- {a.name}: {a.description}" for a in actions),
        "actionNames": ", ".join(a.name for a in actions),
        "senderName": sender,
        "message": message.content.text,
        "text": message.content.text,
    }
    placed = {match.group(1) for match in _PLACEHOLDER.finditer(template)}

    def fill(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return "" if value is None else str(value)

    prompt = _PLACEHOLDER.sub(fill, template).strip()
    if not placed & {"message", "text"}:
        prompt += "\n\n" + message_section(sender, message.content.text)
    return prompt
