"""The message section is one definition (contracts.prompts) that the runtime's prompts write
and the ELIZA plugin reads: whatever the character, state, template and message, ELIZA answers
the message's text."""

from __future__ import annotations

from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from builtin_plugins.eliza.plugin import last_message
from contracts.agent import Character, State
from contracts.memory import Content, Memory
from contracts.models import TextParams
from contracts.prompts import MESSAGE_HEADER, message_in_prompt, message_section
from host.prompt import reply_params
from host.templates import MESSAGE_TEMPLATE

_line = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200).filter(
    lambda t: t.strip() != "" and MESSAGE_HEADER not in t
)


def _message(text: str, sender: str) -> Memory:
    return Memory(
        agent_id=uuid4(),
        entity_id=uuid4(),
        room_id=uuid4(),
        content=Content(text=text, name=sender),
    )


@settings(max_examples=150, deadline=None)
@given(
    text=_text,
    sender=_line.filter(lambda s: s.strip() and MESSAGE_HEADER not in s),
    bio=st.lists(_line, max_size=3),
    state_text=st.text(max_size=100).filter(lambda t: MESSAGE_HEADER not in t),
    template=st.sampled_from([None, "You are {{agentName}}.", "{{providers}}\n\n{{message}}"]),
)
def test_eliza_answers_the_message_of_every_runtime_prompt(
    text: str, sender: str, bio: list[str], state_text: str, template: str | None
) -> None:
    character = Character(
        name="Ada", bio=bio, templates={MESSAGE_TEMPLATE: template} if template else {}
    )
    params = reply_params(character, State(text=state_text), _message(text, sender))
    assert params.prompt is not None
    if template == "{{providers}}\n\n{{message}}":  # placed by the template: no section
        assert MESSAGE_HEADER not in params.prompt
        return
    assert params.prompt.endswith(message_section(sender, text))
    assert message_in_prompt(params.prompt) == text.strip()
    assert last_message(params) == text.strip()


def test_a_prompt_without_the_section_is_answered_whole() -> None:
    assert message_in_prompt("just a question?") is None
    assert last_message(TextParams(prompt="  just a question? ")) == "just a question?"
    assert message_section("bo", "hi") == "# Message from bo\nhi"
