"""The prompt convention the runtime and model plugins share.

The runtime ends every reply prompt with the incoming message under a header naming its sender
(`message_section`): a model that answers only the last message (the builtin ELIZA) finds it
with `message_in_prompt`, whatever comes before it. A character's prompt template that does not
place the message gets the same section appended.
"""

from __future__ import annotations

__all__ = ["MESSAGE_HEADER", "message_in_prompt", "message_section"]

MESSAGE_HEADER = "# Message from "
"""What opens the message section; the sender's name follows on the same line."""


def message_section(sender: str, text: str) -> str:
    """The prompt's message section: the header with `sender`, then the message `text`."""
    return f"{MESSAGE_HEADER}{sender}\n{text}"


def message_in_prompt(prompt: str) -> str | None:
    """The message text of `prompt`'s last message section (None when it has none)."""
    _, found, tail = prompt.rpartition(MESSAGE_HEADER)
    if not found:
        return None
    return tail.partition("\n")[2].strip() or tail.strip()
