"""A deterministic local text embedding: hashed word and character n-grams, L2-normalised.

No weights and no download: each word and each character trigram of the padded words is
hashed (BLAKE2b, stable across processes, unlike ``hash()``) to one of `dimension` buckets with
a sign, so texts sharing words and word pieces get similar vectors. It is a lexical similarity,
not a semantic one, which is what an offline default can honestly offer.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from contracts.vector import Vector

__all__ = ["DEFAULT_DIMENSION", "embed"]

DEFAULT_DIMENSION = 384
_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=65_536)
def _bucket(feature: str, dimension: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dimension, (1.0 if (value >> 63) & 1 else -1.0)


def embed(text: str, dimension: int = DEFAULT_DIMENSION) -> Vector:
    """The embedding of `text` (the zero vector's direction is undefined: empty text gets a
    fixed unit vector so every result can be compared by cosine), a float32 `Vector`."""
    vector = np.zeros(dimension, dtype=np.float64)
    for word in _WORD.findall(text.lower()):
        index, sign = _bucket(f"w:{word}", dimension)
        vector[index] += 2.0 * sign
        padded = f"<{word}>"
        for start in range(len(padded) - 2):
            index, sign = _bucket(f"c:{padded[start : start + 3]}", dimension)
            vector[index] += sign
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        vector[0] = 1.0
    else:
        vector /= norm
    return Vector.wrap(vector.astype(np.float32))
