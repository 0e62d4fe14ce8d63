"""Split a document into overlapping chunks at paragraph, sentence or word boundaries."""

from __future__ import annotations

import re

__all__ = ["chunk_text"]

_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))
"""Where a chunk may end, best first: a blank line, a sentence end, any space."""


def chunk_text(text: str, size: int = 1000, overlap: int = 150) -> list[str]:
    """`text` in pieces of at most `size` characters, each starting `overlap` characters (at a
    word boundary) before the previous one ended, so a sentence cut at a boundary is whole in
    one of the two. A piece ends at the latest paragraph break in its second half, else
    sentence end, else space; a word longer than `size` is cut."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunk size {size} and overlap {overlap}: need 0 <= overlap < size")
    text = text.strip()
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start:end]
            for pattern in _BREAKS:
                cuts = [m.start() for m in pattern.finditer(window) if m.start() >= size // 2]
                if cuts:
                    end = start + cuts[-1]
                    break
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        back = max(start + 1, end - overlap)
        space = text.find(" ", back, end)
        start = space + 1 if overlap and space != -1 else (back if overlap else end)
        while start < len(text) and text[start].isspace():
            start += 1
    return chunks
