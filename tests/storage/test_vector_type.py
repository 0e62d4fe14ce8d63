"""`contracts.vector.Vector`: what it accepts and refuses, how it compares, copies and travels."""

from __future__ import annotations

import copy
import json
import pickle
import re
from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.memory import Memory, MemoryUpdate
from contracts.models import EmbeddingResult
from contracts.vector import Vector

IDS = {"agent_id": uuid4(), "entity_id": uuid4(), "room_id": uuid4()}


def test_made_from_lists_tuples_arrays_and_vectors_as_read_only_float32() -> None:
    for values in ([1, 2.5, -3], (1.0, 2.5, -3.0), np.array([1, 2.5, -3]), Vector([1, 2.5, -3])):
        vector = Vector(values)
        assert vector.array.dtype == np.float32 and vector.dim == 3 and len(vector) == 3
        assert vector == [1.0, 2.5, -3.0] and vector.tolist() == [1.0, 2.5, -3.0]
        assert not vector.array.flags.writeable
    source = np.array([0.5, 0.25], dtype=np.float32)
    vector = Vector(source)
    source[0] = 9.0  # the caller's array is copied: the vector does not change with it
    assert vector == [0.5, 0.25]
    assert np.asarray(vector) is vector.array  # no copy for numpy
    assert np.asarray(vector, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "must not be empty"),
        ([0.0, float("nan")], r"embedding\[1\] is nan: values must be finite"),
        ([float("-inf")], r"embedding\[0\] is -inf"),
        ([1.0, 2.0, 1e39], r"embedding\[2\] is 1e\+39: values overflow float32"),
        ([[1.0, 2.0]], "one-dimensional"),
        ("0.5", "a list of numbers, got str"),
        (["x"], "a list of numbers"),
        ({"a": 1.0}, "a list of numbers, got dict"),
    ],
)
def test_bad_values_are_refused_naming_the_field_and_index(values: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vector(values)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        Memory(**IDS, embedding=values)  # type: ignore[arg-type]
    assert info.value.errors()[0]["loc"] == ("embedding",)
    with pytest.raises(ValidationError):
        MemoryUpdate(id=uuid4(), embedding=values)  # type: ignore[arg-type]


def test_json_is_a_list_of_numbers_and_reads_back() -> None:
    memory = Memory(**IDS, embedding=[0.1, -2.0])
    text = memory.model_dump_json()
    assert json.loads(text)["embedding"] == [float(np.float32(0.1)), -2.0]
    again = Memory.model_validate_json(text)
    assert again == memory and isinstance(again.embedding, Vector)
    assert isinstance(memory.model_dump()["embedding"], Vector)  # python mode keeps the array
    assert memory.model_dump(mode="json")["embedding"] == json.loads(text)["embedding"]
    with pytest.raises(ValidationError, match="finite"):
        Memory.model_validate_json(text.replace("-2.0", "NaN"))
    schema = Memory.model_json_schema()["properties"]["embedding"]["anyOf"][0]
    assert schema == {"type": "array", "items": {"type": "number"}, "minItems": 1}


def test_embedding_results_hold_vectors_and_rows_share_one_copy() -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    rows = Vector.rows(matrix)
    assert [r.tolist() for r in rows] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert rows[0].array.base is rows[1].array.base is not matrix
    result = EmbeddingResult(vectors=[[1.0, 0.0], rows[0][:2]])
    assert all(isinstance(v, Vector) for v in result.vectors) and result.vector == [1.0, 0.0]
    with pytest.raises(ValueError, match="finite"):
        Vector.rows([[1.0, float("nan")]])
    assert Vector.rows(np.zeros((0, 0))) == []


def test_compares_hashes_copies_and_pickles_by_value() -> None:
    a, b = Vector([1.0, 2.0]), Vector(np.array([1.0, 2.0]))
    assert a == b and hash(a) == hash(b) and a != Vector([1.0, 2.0, 0.0]) and a != [2.0, 1.0]
    memory = Memory(**IDS, embedding=a)
    assert a != "12" and memory == Memory(**(memory.__dict__ | {"embedding": b}))
    assert memory != memory.model_copy(update={"embedding": Vector([2.0, 1.0])})
    assert copy.copy(a) is a and copy.deepcopy(a) is a
    assert pickle.loads(pickle.dumps(a)) == a
    assert a[1] == 2.0 and list(a) == [1.0, 2.0] and 2.0 in a
    assert repr(Vector(range(1, 7))) == "Vector(6-d: [1, 2, 3, 4, ...])"


floats32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(floats32, min_size=1, max_size=64))
def test_any_finite_float32_list_travels_through_json_unchanged(values: list[float]) -> None:
    memory = Memory(**IDS, embedding=values)
    assert memory.embedding is not None and memory.embedding.tolist() == values
    assert Memory.model_validate_json(memory.model_dump_json()) == memory
    assert Vector.from_bytes(memory.embedding.tobytes()) == memory.embedding


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=3), st.none()), max_size=8))
def test_anything_else_is_a_validation_error_never_a_crash(values: list[object]) -> None:
    try:
        memory = Memory(**IDS, embedding=values)  # type: ignore[arg-type]
    except ValidationError as exc:
        assert exc.errors()[0]["loc"] == ("embedding",)
    else:
        assert memory.embedding is not None
        assert np.isfinite(memory.embedding.array).all()


def test_the_storage_docs_vector_example_runs() -> None:
    """docs/storage.md's note for plugin authors: its example block runs as written."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "storage.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "Vector.rows" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/storage.md", "exec"), {})
