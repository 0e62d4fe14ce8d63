"""The ``eliza`` plugin: TEXT_SMALL / TEXT_LARGE by classic ELIZA, TEXT_EMBEDDING locally.

It answers with the lowest priority, so any other model plugin that is installed and working
takes precedence, and ELIZA remains the fallback when those fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.models import (
    TEXT_EMBEDDING,
    TEXT_LARGE,
    TEXT_SMALL,
    EmbeddingParams,
    EmbeddingResult,
    ModelHandler,
    TextChunk,
    TextParams,
    TextResult,
    Usage,
)
from contracts.plugin import Manifest, Plugin
from contracts.prompts import message_in_prompt

from .embedding import DEFAULT_DIMENSION, embed
from .engine import Session

__all__ = ["ElizaPlugin", "ElizaSettings", "last_message"]


class ElizaSettings(BaseModel):
    """Config section ``plugins.eliza``."""

    model_config = ConfigDict(extra="forbid")

    priority: int = -100
    """Model handler priority: below any other provider, so ELIZA is the fallback."""
    dimension: int = Field(default=DEFAULT_DIMENSION, ge=8, le=4096)
    """Embedding dimension."""


def last_message(params: TextParams) -> str:
    """What ELIZA answers: the last user message, or the prompt's message section (the runtime
    ends its prompts with one, `contracts.prompts.message_section`), or the whole prompt."""
    if params.prompt is not None:
        found = message_in_prompt(params.prompt)
        return found if found is not None else params.prompt.strip()
    users = [m.content for m in params.messages if m.role == "user"]
    return users[-1] if users else ""


class ElizaPlugin(Plugin):
    """Weizenbaum's DOCTOR, offline, plus local hashing embeddings."""

    manifest: ClassVar[Manifest] = Manifest(
        name="eliza",
        description="Classic ELIZA (DOCTOR script) for text, hashed n-gram embeddings",
        settings=ElizaSettings,
    )

    def __init__(self, settings: ElizaSettings | None = None) -> None:
        self.settings = settings or ElizaSettings()
        self._counters: dict[int, int] = {}

    def _session(self, params: TextParams) -> tuple[Session, str]:
        """A session for this call. With chat history the earlier user turns are replayed, so
        ELIZA's memory is that conversation's; a bare prompt shares only the reply counters
        (never the memory, which holds a user's words)."""
        if params.prompt is None and params.messages:
            session = Session()
            users = [m.content for m in params.messages if m.role == "user"]
            for earlier in users[:-1]:
                session.respond(earlier)
            return session, users[-1] if users else ""
        return Session(counters=self._counters), last_message(params)

    async def reply(self, params: TextParams) -> TextResult:
        session, text = self._session(params)
        answer = session.respond(text) if text.strip() else Session.greeting()
        if params.max_tokens is not None:
            answer = " ".join(answer.split()[: params.max_tokens])
        usage = Usage(input_tokens=len(text.split()), output_tokens=len(answer.split()))
        return TextResult(text=answer, usage=usage, finish_reason="stop", model="eliza-doctor")

    async def stream(self, params: TextParams) -> AsyncIterator[TextChunk]:
        result = await self.reply(params)
        words = result.text.split(" ")
        for index, word in enumerate(words):
            last = index == len(words) - 1
            yield TextChunk(
                text=word if last else word + " ",
                index=index,
                finish_reason="stop" if last else None,
                usage=result.usage if last else None,
            )

    async def embed(self, params: EmbeddingParams) -> EmbeddingResult:
        vectors = [embed(text, self.settings.dimension) for text in params.texts]
        words = sum(len(text.split()) for text in params.texts)
        return EmbeddingResult(
            vectors=vectors, usage=Usage(input_tokens=words), model="hashed-ngrams"
        )

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        priority = self.settings.priority
        return (
            ModelHandler(TEXT_LARGE, self.reply, self.stream, priority=priority),
            ModelHandler(TEXT_SMALL, self.reply, self.stream, priority=priority),
            ModelHandler(TEXT_EMBEDDING, self.embed, priority=priority),
        )
