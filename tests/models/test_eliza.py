"""ELIZA answers the 1966 CACM conversation as published; the local embedding ranks similar
texts above unrelated ones."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from builtin_plugins.eliza import ElizaPlugin, Session
from builtin_plugins.eliza.embedding import embed
from builtin_plugins.eliza.engine import hollerith, memory_choice, slip_hash
from contracts.models import (
    TEXT_EMBEDDING,
    TEXT_LARGE,
    ChatMessage,
    EmbeddingParams,
    TextParams,
)
from host.models import ModelRegistry

# Weizenbaum, "ELIZA", CACM 9(1) 1966, the example conversation (his capitals, our casing).
TRANSCRIPT = [
    ("Men are all alike.", "In what way?"),
    ("They're always bugging us about something or other.", "Can you think of a specific example?"),
    ("Well, my boyfriend made me come here.", "Your boyfriend made you come here?"),
    ("He says I'm depressed much of the time.", "I am sorry to hear that you are depressed."),
    ("It's true. I am unhappy.", "Do you think that coming here will help you not to be unhappy?"),
    (
        "I need some help, that much seems certain.",
        "What would it mean to you if you got some help?",
    ),
    ("Perhaps I could learn to get along with my mother.", "Tell me more about your family."),
    ("My mother takes care of me.", "Who else in your family takes care of you?"),
    ("My father.", "Your father?"),
    ("You are like my father in some ways.", "What resemblance do you see?"),
    (
        "You are not very aggressive but I think you don't want me to notice that.",
        "What makes you think I am not very aggressive?",
    ),
    ("You don't argue with me.", "Why do you think I don't argue with you?"),
    ("You are afraid of me.", "Does it please you to believe I am afraid of you?"),
    (
        "My father is afraid of everybody.",
        "What else comes to mind when you think of your father?",
    ),
    # no keyword, the input counter at 4: the first memory, formed from the third input with
    # the MEMORY transformation HASH("HERE", 2) = 3 picks
    (
        "Bullies.",
        "Does that have anything to do with the fact that your boyfriend made you come here?",
    ),
]


def test_the_published_conversation() -> None:
    session = Session()
    for said, expected in TRANSCRIPT:
        assert session.respond(said) == expected, said


def test_the_slip_hash_of_the_paper_and_of_the_published_memory() -> None:
    # CACM p. 38: hashing "ALWAYS" to 7 bits "yields the integer 14"; the conversation's memory
    # reply is the 4th MEMORY transformation, so the 2-bit hash of "HERE" is 3.
    assert hollerith("ALWAYS") == 0o214366217062
    assert slip_hash(hollerith("ALWAYS"), 7) == 14
    assert slip_hash(hollerith("HERE"), 2) == 3
    assert memory_choice(["you", "come", "here"], 4) == 3
    # a word longer than six characters is hashed by its last six-character cell
    assert memory_choice(["invented"], 4) == memory_choice(["ed"], 4)


def test_memory_waits_for_the_input_counter_when_no_keyword_matches() -> None:
    session = Session()
    assert session.respond("My dog ran away.") == "Your dog ran away?"
    assert session.respond("Hmm.") == "I am not sure I understand you fully."  # counter at 3
    assert session.respond("Hmm.") == "But your dog ran away."  # at 4: HASH("AWAY", 2) = 2
    assert session.respond("Hmm.") == "Please go on."  # the memory was used up
    assert Session().respond("Hmm.") == "I am not sure I understand you fully."


async def test_through_the_registry_with_chat_history_and_prompts() -> None:
    plugin = ElizaPlugin()
    registry = ModelRegistry()
    for handler in plugin.models():
        registry.register(handler, owner="eliza")
    history = tuple(
        ChatMessage(role=role, content=text)
        for said, answer in TRANSCRIPT[:2]
        for role, text in (("user", said), ("assistant", answer))
    )
    params = TextParams(messages=(*history, ChatMessage(role="user", content="Hmm.")))
    result = await registry.use_model(TEXT_LARGE, params)
    assert result.text == "I am not sure I understand you fully."
    prompt = "# About Eliza\nA therapist.\n\n# Message from alice\nI feel tired"
    answer = await registry.use_model(TEXT_LARGE, TextParams(prompt=prompt))
    assert answer.text == "Tell me more about such feelings."
    assert answer.usage is not None and answer.usage.input_tokens == 3
    chunks = [
        c async for c in registry.stream_model(TEXT_LARGE, TextParams(prompt="Men are all alike."))
    ]
    assert "".join(c.text for c in chunks) == "In what way?"
    assert chunks[-1].finish_reason == "stop"


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_are_unit_vectors_and_similar_texts_score_higher() -> None:
    registry = ModelRegistry()
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    texts = ("my mother takes care of me", "my mother cares for me", "quarterly revenue grew")
    result = await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text=texts))
    a, b, c = result.vectors
    assert len(a) == 384 and a.array.dtype == np.float32  # a float32 Vector
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-6)
    assert _cosine(a, b) > _cosine(a, c) + 0.2


@given(st.text(max_size=200))
def test_embedding_is_deterministic_and_normalised(text: str) -> None:
    vector = embed(text, 64)
    assert vector == embed(text, 64)
    assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-6)


@given(st.text(min_size=1, max_size=200))
def test_eliza_always_answers_something(text: str) -> None:
    reply = Session().respond(text)
    assert reply and reply[0].isupper()


@pytest.mark.parametrize("word", ["computer", "machine", "computers"])
def test_the_computer_keyword_outranks_the_others(word: str) -> None:
    assert Session().respond(f"I think my {word} hates me") == "Do computers worry you?"
