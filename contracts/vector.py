"""`Vector`: an embedding as a read-only float32 array, the form every vector takes in the host.

`Memory.embedding`, `MemoryUpdate.embedding` and `EmbeddingResult.vectors` hold `Vector`s, and
the stores keep and return them as they are: 384 floats travel as one 1.5 KB array instead of
384 Python floats (which cost ~10 us to make from a stored blob and ~30 KB of objects). A
`Vector` is immutable (its array is read-only), compares by value, and:

- validates from a list/tuple of numbers, a 1-d numpy array or another `Vector` (copied to
  float32; empty, non-finite or float32-overflowing values are a ValueError naming the index);
- serializes to JSON as a list of numbers (HTTP, recorded events) and reads back from one;
- is a ``Sequence[float]`` (``len``, indexing, iteration) and a numpy array-like:
  ``np.asarray(vector)`` is the array itself, no copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, SupportsIndex, overload

import numpy as np
import numpy.typing as npt
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["Vector", "VectorLike"]

_F32 = np.dtype("<f4")
_F32_MAX = float(np.finfo(np.float32).max)
_new = object.__new__
_frombuffer = np.frombuffer


class Vector(Sequence[float]):
    """An immutable float32 vector (an embedding). ``Vector([0.1, 0.2])``; ``np.asarray(v)``
    gives its read-only array without a copy; ``v.tolist()`` Python floats."""

    __slots__ = ("_array",)
    _array: npt.NDArray[np.float32]

    def __init__(self, values: VectorLike) -> None:
        self._array = _checked(values)

    @classmethod
    def wrap(cls, array: npt.NDArray[np.float32]) -> Vector:
        """A `Vector` over `array` itself, unchecked and uncopied: for a store or a model handing
        over a 1-d float32 array nothing else will write to (it is made read-only here)."""
        if array.flags.writeable:
            array.flags.writeable = False
        vector = _new(cls)
        vector._array = array
        return vector

    @classmethod
    def from_bytes(cls, data: bytes) -> Vector:
        """The vector stored as little-endian float32 `data` (a store's blob), without a copy."""
        vector = _new(cls)
        vector._array = array = _frombuffer(data, _F32)
        # over bytes the array is read-only already (reading its flags costs a third of this)
        if type(data) is not bytes and array.flags.writeable:  # a bytearray or memoryview
            array.flags.writeable = False
        return vector

    @classmethod
    def rows(cls, matrix: npt.ArrayLike) -> list[Vector]:
        """One `Vector` per row of a 2-d `matrix` (a batch of embeddings), checked like a single
        one; the rows share one float32 copy of it."""
        array = np.array(matrix, dtype=np.float64 if _wide(matrix) else np.float32, ndmin=2)
        if array.ndim != 2:
            raise ValueError(f"a batch of embeddings is a 2-d matrix, got {array.ndim}-d")
        if array.size:
            _check_values(array.reshape(-1), array.shape[1])
        array = array.astype(_F32, copy=False)
        array.flags.writeable = False
        return [cls.wrap(row) for row in array]

    @property
    def array(self) -> npt.NDArray[np.float32]:
        """The read-only float32 array."""
        return self._array

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return len(self._array)

    def tolist(self) -> list[float]:
        """The values as Python floats (what JSON carries)."""
        values: list[float] = self._array.tolist()
        return values

    def tobytes(self) -> bytes:
        """Little-endian float32 bytes, as every store keeps a vector."""
        return self._array.tobytes()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        if dtype is None or np.dtype(dtype) == self._array.dtype:
            return self._array.copy() if copy else self._array
        return self._array.astype(dtype)

    def __len__(self) -> int:
        return len(self._array)

    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> Vector: ...
    def __getitem__(self, index: SupportsIndex | slice) -> float | Vector:
        if isinstance(index, slice):
            return Vector.wrap(self._array[index])
        return float(self._array[index])

    def __iter__(self) -> Iterator[float]:
        return iter(self._array.tolist())

    def __eq__(self, other: object) -> bool:
        """Equal to a `Vector`, list, tuple or array holding the same float32 values (a list
        of Python floats is rounded to float32 first: ``Vector([0.1]) == [0.1]``)."""
        if isinstance(other, Vector):
            theirs = other._array
        elif isinstance(other, list | tuple | np.ndarray):
            try:
                with np.errstate(over="ignore"):
                    theirs = np.asarray(other, dtype=_F32)
            except (TypeError, ValueError):
                return False
        else:
            return NotImplemented
        return self._array.shape == theirs.shape and bool(np.array_equal(self._array, theirs))

    def __hash__(self) -> int:
        return hash(self._array.tobytes())

    def __repr__(self) -> str:
        head = ", ".join(f"{x:.4g}" for x in self._array[:4].tolist())
        more = ", ..." if len(self._array) > 4 else ""
        return f"Vector({len(self._array)}-d: [{head}{more}])"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Vector.from_bytes, (self._array.tobytes(),))

    def __copy__(self) -> Vector:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Vector:
        return self

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from_json = core_schema.no_info_after_validator_function(
            _from_floats, core_schema.list_schema(core_schema.float_schema())
        )
        return core_schema.json_or_python_schema(
            json_schema=from_json,
            python_schema=core_schema.no_info_plain_validator_function(_validate),
            serialization=core_schema.plain_serializer_function_ser_schema(
                Vector.tolist,
                return_schema=core_schema.list_schema(core_schema.float_schema()),
                when_used="json",
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "array", "items": {"type": "number"}, "minItems": 1}


VectorLike = Vector | Sequence[float] | npt.NDArray[np.floating[Any]]
"""What a `Vector` is made from (and what searches take)."""


def _wide(values: Any) -> bool:
    """Whether `values` must be checked in float64 first (float32 would hide an overflow)."""
    return not (isinstance(values, np.ndarray) and values.dtype == _F32)


def _checked(values: Any) -> npt.NDArray[np.float32]:
    if isinstance(values, Vector):
        return values._array
    if isinstance(values, str | bytes | dict):
        raise ValueError(f"an embedding is a list of numbers, got {type(values).__name__}")
    try:
        array = np.array(values, dtype=np.float64 if _wide(values) else _F32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"an embedding is a list of numbers: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"an embedding is one-dimensional, got shape {array.shape}")
    _check_values(array, len(array))
    out: npt.NDArray[np.float32] = array.astype(_F32, copy=False)
    out.flags.writeable = False
    return out


def _check_values(flat: npt.NDArray[Any], dim: int) -> None:
    if dim == 0:
        raise ValueError("embedding must not be empty (use None for no embedding)")
    finite = np.isfinite(flat)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"embedding[{i % dim}] is {flat[i]}: values must be finite")
    if flat.dtype != _F32:
        big = np.abs(flat) > _F32_MAX
        if big.any():
            i = int(np.argmax(big))
            raise ValueError(
                f"embedding[{i % dim}] is {flat[i]}: values overflow float32 (|x| > {_F32_MAX:.4g})"
            )


def _validate(value: Any) -> Vector:
    if type(value) is Vector:
        return value
    vector = _new(Vector)
    vector._array = _checked(value)
    return vector


def _from_floats(values: list[float]) -> Vector:
    return _validate(values)
