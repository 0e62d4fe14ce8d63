"""`PayloadEncoder` (the audit trail's serializer) against `payload_data` (the plain Python walk):
the same data for any payload, secrets never in the text, and the one-pass path actually taken
for ordinary payloads."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Annotated, Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    SerializeAsAny,
    WrapSerializer,
    model_serializer,
)

from builtin_plugins.audit.recorder import EMBEDDING_KEYS
from contracts.events import MemoryPayload, MessagePayload, ModelUsedPayload
from contracts.memory import Content, Memory
from contracts.models import EmbeddingResult
from host.eventstore.keyscan import CLEAN, OPAQUE, scan
from host.eventstore.recording import MASK, SECRET_KEYS, PayloadEncoder, payload_data

KEYS = st.sampled_from(
    [
        "text",
        "name",
        "tokens",
        "max_tokens",
        "input_tokens",
        "token",
        "hf_token",
        "Access-Token",
        "api_key",
        "OPENAI_API_KEY",
        "apiKey",
        "db_password",
        "Authorization",
        "cookie",
        "embedding",
        "vectors",
        "note",
        "private-key",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["my password is hunter2", "secret plan", "token", "\u212aey"])
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


class Inner(BaseModel):
    embedding: list[float] | None = None
    extra: dict[str, Any] = {}
    secret_value: SecretStr | None = None


class Outer(BaseModel):
    model_config = ConfigDict(extra="allow")

    inner: Inner | None = None
    anything: SerializeAsAny[BaseModel] | None = None
    items: list[Inner] = []
    data: Any = None


@dataclasses.dataclass
class Settings:
    name: str
    password: str


class Renamed(BaseModel):
    visible: str

    @model_serializer
    def _dump(self) -> dict[str, str]:
        return {"visible": self.visible, "api_key": "sk-hidden"}


class MoreInner(Inner):
    vectors: list[list[float]] = [[1.0, 2.0]]


_SQLITE = sqlite3.connect(":memory:", check_same_thread=False)


def _same(payload: object, drop: frozenset[str]) -> str:
    encoder = PayloadEncoder(SECRET_KEYS, drop)
    text = encoder(payload)
    assert json.loads(text) == json.loads(encoder.slow(payload))
    # the audit trail appends the text without SQLite's JSON check (json_checked=True)
    assert _SQLITE.execute("SELECT json_valid(?)", (text,)).fetchone() == (1,)
    return text


@settings(max_examples=300, deadline=None)
@given(data=JSONISH, drop=st.sampled_from([frozenset(), EMBEDDING_KEYS]))
def test_plain_data_encodes_like_the_python_walk(data: object, drop: frozenset[str]) -> None:
    _same(data, drop)


@settings(max_examples=150, deadline=None)
@given(
    embedding=st.none() | st.lists(st.floats(allow_nan=False, width=32), max_size=5),
    extra=st.dictionaries(KEYS, JSONISH, max_size=4),
    data=JSONISH,
    nested=st.sampled_from(["inner", "sub", "none"]),
    drop=st.sampled_from([frozenset(), EMBEDDING_KEYS]),
)
def test_models_encode_like_the_python_walk(
    embedding: list[float] | None,
    extra: dict[str, Any],
    data: object,
    nested: str,
    drop: frozenset[str],
) -> None:
    inner = Inner(embedding=embedding, extra=extra, secret_value=SecretStr("s3cr3t-value"))
    anything = {"inner": inner, "sub": MoreInner(embedding=embedding), "none": None}[nested]
    payload = Outer(inner=inner, anything=anything, items=[inner], data=data, api_key="sk-live")
    text = _same(payload, drop)
    assert "s3cr3t-value" not in text and "sk-live" not in text
    if drop:
        assert '"embedding":' not in text and '"vectors":' not in text


def test_secrets_anywhere_are_masked() -> None:
    payload = {"settings": {"OPENAI_API_KEY": "sk-1", "nested": [{"hf_token": "hf-2"}]}}
    text = _same(payload, EMBEDDING_KEYS)
    assert json.loads(text) == {
        "settings": {"OPENAI_API_KEY": MASK, "nested": [{"hf_token": MASK}]}
    }
    assert json.loads(_same({"max_tokens": 5, "tokens": [1]}, frozenset())) == {
        "max_tokens": 5,
        "tokens": [1],
    }
    assert json.loads(_same("plain", frozenset())) == {"value": "plain"}
    opaque = json.loads(_same(Settings(name="x", password="hunter2"), frozenset()))
    assert opaque == {"name": "x", "password": MASK}  # a dataclass: found in the text
    serialized = json.loads(_same(Renamed(visible="v"), frozenset()))
    assert serialized == {"visible": "v", "api_key": MASK}  # a custom serializer's own keys
    assert json.loads(_same({"x": float("inf")}, frozenset())) == {"x": None}


class Annotated_(BaseModel):
    note: Annotated[str, PlainSerializer(lambda v: {"api_key": v})] = "sk-note"
    notes: list[Annotated[str, WrapSerializer(lambda v, nxt: {"password": nxt(v)})]] = ["pw"]


def test_keys_output_by_annotated_serializers_are_masked() -> None:
    # The field annotations say str; the serializers put secret keys around the values.
    data = json.loads(_same(Annotated_(), frozenset()))
    assert data == {"note": {"api_key": MASK}, "notes": [{"password": MASK}]}
    held = json.loads(_same(Outer(data=Annotated_()), frozenset()))
    assert held["data"] == {"note": {"api_key": MASK}, "notes": [{"password": MASK}]}


@dataclasses.dataclass
class Box:
    data: Any


def test_keys_in_an_opaque_payload_are_masked_as_the_python_walk_masks_them() -> None:
    # A dataclass is searched as text; a key ending in "token" and a newline is a secret to
    # the walk (``$`` matches before a final newline), so the text search must see it too.
    for key in ("TOKEN\n", "hf_token\n", "api_key\n"):
        assert json.loads(_same(Box({key: "v"}), frozenset())) == {"data": {key: MASK}}


def created(memory: Memory) -> MemoryPayload:
    """The memory:created payload of `memory` (table messages)."""
    return MemoryPayload(
        agent_id=memory.agent_id,
        room_id=memory.room_id,
        entity_id=memory.entity_id,
        memory_id=memory.id,
        table_name="messages",
        memory=memory,
    )


def test_embeddings_are_left_out_of_models_and_dicts() -> None:
    memory = Memory(
        agent_id=uuid4(),
        entity_id=uuid4(),
        room_id=uuid4(),
        content=Content(text="hi"),
        embedding=[0.5] * 8,
    )
    payload = created(memory)
    data = json.loads(_same(payload, EMBEDDING_KEYS))
    assert "embedding" not in data["memory"] and data["memory"]["content"] == {"text": "hi"}
    assert Memory.model_validate(data["memory"]).embedding is None
    used = ModelUsedPayload(
        model_type="text_embedding",
        provider="p",
        duration=0.1,
        output=EmbeddingResult(vectors=[[1.0, 2.0]]),
    )
    assert "vectors" not in json.loads(_same(used, EMBEDDING_KEYS))["output"]
    kept = json.loads(_same(used, frozenset()))
    assert kept["output"]["vectors"] == [[1.0, 2.0]]
    assert payload_data({"embedding": [1], "a": 1}, drop=EMBEDDING_KEYS) == {"a": 1}


def test_ordinary_payloads_take_the_one_pass_path(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = PayloadEncoder(SECRET_KEYS, EMBEDDING_KEYS)

    def walk(payload: object) -> str:
        raise AssertionError("took the Python walk")

    monkeypatch.setattr(encoder, "slow", walk)
    memory = Memory(
        agent_id=uuid4(),
        entity_id=uuid4(),
        room_id=uuid4(),
        content=Content(text="hello"),
        embedding=[0.1, 0.2],
    )
    encoder(created(memory))
    encoder(
        ModelUsedPayload(
            model_type="text_embedding",
            provider="p",
            duration=0.1,
            input_tokens=3,
            output=EmbeddingResult(vectors=[[1.0]]),
        )
    )
    with pytest.raises(AssertionError, match="Python walk"):
        encoder({"password": "x"})


def test_payloads_holding_vectors_are_told_clean_from_their_classes() -> None:
    # A `Vector`'s serializer outputs a list of numbers: a Memory (its ``embedding``) must not
    # send every message and memory payload to the text search (issue 20: 10 us an event).
    encoder = PayloadEncoder(SECRET_KEYS, EMBEDDING_KEYS)
    memory = Memory(
        agent_id=uuid4(),
        entity_id=uuid4(),
        room_id=uuid4(),
        content=Content(text="hello"),
        embedding=[0.1, 0.2],
    )
    message = MessagePayload(
        agent_id=memory.agent_id,
        room_id=memory.room_id,
        entity_id=memory.entity_id,
        message=memory,
        timings={"total": 0.1},
    )
    used = ModelUsedPayload(
        model_type="text_embedding",
        provider="p",
        duration=0.1,
        output=EmbeddingResult(vectors=[[1.0]]),
    )
    for payload in (created(memory), message, used, memory):
        assert scan(payload, encoder._is_secret, encoder.drop) == CLEAN, type(payload).__name__
    # a serializer of the payload's own still makes it opaque (its keys are searched as text)
    assert scan(Renamed(visible="x"), encoder._is_secret, encoder.drop) == OPAQUE
