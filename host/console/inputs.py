"""What the console's routes read from the browser: form bodies, ids and redirect targets,
parsed so that bad input becomes a default or None (a page saying so) rather than an error."""

from __future__ import annotations

from urllib.parse import parse_qs
from uuid import UUID

from fastapi import Request

__all__ = ["MAX_VERSION", "as_uuid", "local_target", "read_form", "version_after"]

MAX_VERSION = 2**63 - 1
"""The largest version an event store holds (a signed 64-bit integer)."""


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form body (what htmx and plain forms post), last value of each field."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def as_uuid(text: str | None) -> UUID | None:
    """`text` as an id; None when it is empty or not one."""
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


def local_target(target: str) -> str:
    """`target` if it is a path on this server, else ``/`` (no open redirect from ``next``).

    Browsers read ``\\`` as ``/`` and drop tabs and newlines from URLs, so ``/\\evil.example``
    or ``/<tab>/evil.example`` would lead off-site: a target holding those is refused too."""
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return target


def version_after(text: str) -> int | None:
    """The ``after`` of a timeline link: a version >= 0; None when it is not one."""
    text = text.strip()
    if not text:
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= MAX_VERSION else None
