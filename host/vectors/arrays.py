"""Vectors as float32 arrays: conversion, normalisation, the query vector and exact top-k.

The array helpers every store and index shares (a `Vector` passes through without a copy);
faiss is not needed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

import numpy as np
import numpy.typing as npt

from contracts.storage import InvalidQueryError
from contracts.vector import Vector, VectorLike

__all__ = [
    "F32",
    "F64",
    "I64",
    "above_threshold",
    "as_vector",
    "exact_top_k",
    "float32_array",
    "float32_bytes",
    "normalize",
    "query_vector",
    "stored_vector",
    "to_float32",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def to_float32(vectors: Sequence[Sequence[float]] | npt.ArrayLike) -> F32:
    """A C-contiguous 2-d float32 copy of `vectors`."""
    arr = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    return np.ascontiguousarray(arr)


def normalize(vectors: F32) -> F32:
    """Rows scaled to unit length in place (zero rows stay zero: their cosine is 0)."""
    # np.linalg.norm's own arithmetic (the same bits), without its checks: a store normalises
    # each row it writes while an index is kept
    norms = np.sqrt(np.add.reduce(vectors * vectors, axis=1, keepdims=True))
    if norms.all():
        np.divide(vectors, norms, out=vectors)
    else:
        np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def above_threshold(
    labels: list[int], scores: list[float], threshold: float | None
) -> tuple[list[int], list[float]]:
    """The (labels, scores) of a search scoring at least `threshold` (all when None)."""
    if threshold is None:
        return labels, scores
    kept = [(label, s) for label, s in zip(labels, scores, strict=True) if s >= threshold]
    return [label for label, _ in kept], [s for _, s in kept]


def stored_vector(embedding: VectorLike) -> Vector:
    """`embedding` as a `Vector` (itself when it is one, the usual case: `Memory` validated it);
    ValueError for values a Vector refuses (a list put in by ``model_copy``, which validates
    nothing: non-finite, overflowing float32, empty)."""
    return embedding if type(embedding) is Vector else Vector(embedding)


def float32_bytes(embedding: VectorLike) -> bytes:
    """float32 little-endian bytes of `embedding`, as every backend stores it (ValueError as
    `stored_vector`). A `Vector` hands over its array's bytes: 0.2 us for 384 values."""
    if type(embedding) is Vector:
        return embedding.tobytes()
    return Vector(embedding).tobytes()


def float32_array(embedding: VectorLike) -> F32:
    """`embedding` as a read-only float32 array (ValueError as `stored_vector`), no copy for a
    `Vector`."""
    return stored_vector(embedding).array


def as_vector(embedding: VectorLike | npt.ArrayLike) -> F64:
    """A 1-d float64 copy of `embedding` (exact for Python floats: nothing overflows yet)."""
    if type(embedding) is Vector:
        return embedding.array.astype(np.float64)
    return np.array(embedding, dtype=np.float64).reshape(-1)


def query_vector(embedding: Sequence[float] | npt.ArrayLike, dim: int) -> F32:
    """The normalised 1 x dim float32 query; `InvalidQueryError` for a zero or non-finite vector.

    Normalised in float64, so values beyond float32's range still give a unit vector."""
    q = embedding if _is_f64(embedding) else as_vector(embedding)
    if len(q) != dim:
        raise InvalidQueryError(f"query embedding has {len(q)} dimensions, expected {dim}")
    # vdot: a norm beyond float64 becomes inf (refused below) without the overflow warning
    # `@` and np.dot give, so no np.errstate (which cost more than the rest of this function)
    norm = math.sqrt(float(np.vdot(q, q)))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidQueryError("query embedding must be finite and non-zero")
    return (q * (1.0 / norm)).astype(np.float32).reshape(1, dim)


def _is_f64(value: object) -> TypeGuard[F64]:
    """A 1-d float64 array (`as_vector`'s result: `query_vector` need not copy it again)."""
    return isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim == 1


def exact_top_k(query: F32, matrix: F32, labels: I64, k: int) -> tuple[list[int], list[float]]:
    """Exact cosine top-k of normalised `query` over normalised `matrix` rows (ties by label)."""
    if len(labels) == 0:
        return [], []
    scores = matrix @ query.reshape(-1)
    take = min(k, len(labels))
    # lexsort: last key is primary; sort by score desc then label asc.
    order = np.lexsort((labels, -scores))[:take]
    return labels[order].tolist(), scores[order].astype(float).tolist()
