"""Read a document's text: plain text and Markdown (UTF-8), PDF (pypdf); refuse the rest."""

from __future__ import annotations

import io
from pathlib import Path

__all__ = ["SUFFIXES", "UnreadableError", "read_document"]

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".text"})
SUFFIXES = TEXT_SUFFIXES | {".pdf"}
"""What a directory is searched for (a file named explicitly is tried as text whatever its
suffix)."""


class UnreadableError(Exception):
    """A file that cannot be ingested; the message is the reason (the caller names the file)."""


def read_document(path: Path, max_bytes: int) -> tuple[str, bytes]:
    """(text, raw bytes) of the file at `path`; `UnreadableError` saying why not."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UnreadableError(f"{size:,} bytes, over the {max_bytes:,}-byte limit")
        raw = path.read_bytes()
    except OSError as exc:
        raise UnreadableError(exc.strerror or str(exc)) from None
    if path.suffix.lower() == ".pdf" or raw.startswith(b"%PDF-"):
        return _pdf(raw), raw
    if b"\0" in raw[:8192]:
        raise UnreadableError("a binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableError(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    return text, raw


def _pdf(raw: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise UnreadableError("an encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise UnreadableError(f"a broken PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise UnreadableError("a PDF without extractable text (scanned images?)")
    return text
