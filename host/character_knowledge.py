"""The ElizaOS character ``knowledge`` field, added to the knowledge base when the agent starts.

Items are texts, file or directory paths (relative to the characters directory, else to the
working directory), or ``{"path": ..., "shared": bool}`` / ``{"directory": ...}`` objects.
Texts are documents named ``character:<sha256 prefix>``; those the character no longer lists
are removed. Files are added like ``agenthost knowledge add`` adds them (unchanged ones are
skipped by their hash, so a restart costs a read of each file, not an embedding).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from uuid import UUID

from loguru import logger

from contracts.agent import Character
from contracts.events import AGENT_STARTED, AgentPayload
from contracts.knowledge import KNOWLEDGE, KnowledgeBase
from host.agents import AgentManager
from host.di import Container
from host.events import EventBus

__all__ = ["ingest_character_knowledge", "subscribe"]

TEXT_PREFIX = "character:"
INGEST_TIMEOUT = 3600.0
"""Seconds an agent start may spend on its knowledge (a big directory, the first time)."""

_log = logger.bind(component="knowledge")


def subscribe(events: EventBus, container: Container, agents: AgentManager, base: Path) -> None:
    """Add each starting agent's character knowledge (before the start is reported done)."""

    async def on_started(payload: AgentPayload) -> None:
        runtime = agents.find(payload.agent_id)
        if runtime is None or not container.has(KNOWLEDGE):
            return
        knowledge = await container.aresolve(KNOWLEDGE)
        await ingest_character_knowledge(knowledge, runtime.character, runtime.agent_id, base)

    events.on(AGENT_STARTED, on_started, owner="host", timeout=INGEST_TIMEOUT)


async def ingest_character_knowledge(
    knowledge: KnowledgeBase, character: Character, agent_id: UUID, base: Path
) -> None:
    items = character.settings.get("knowledge") or []
    if not isinstance(items, list):
        items = [items]
    texts: set[str] = set()
    for item in items:
        path, shared = _path_of(item, base)
        owner = None if shared else agent_id
        if path is not None:
            outcomes = await knowledge.add_paths([path], owner)
            for outcome in outcomes:
                if outcome.status == "skipped":
                    _log.warning(
                        "character {}: knowledge {} skipped: {}",
                        character.name,
                        outcome.source,
                        outcome.reason,
                    )
        elif isinstance(item, str) and item.strip():
            source = TEXT_PREFIX + hashlib.sha256(item.encode()).hexdigest()[:16]
            texts.add(source)
            await knowledge.add_text(item, source, agent_id)
        else:
            _log.warning(
                "character {}: knowledge item {!r} is neither a text nor a path; ignored",
                character.name,
                str(item)[:80],
            )
    for document in await knowledge.documents(agent_id):
        if document.source.startswith(TEXT_PREFIX) and document.source not in texts:
            await knowledge.remove(document.source, agent_id)


def _path_of(item: Any, base: Path) -> tuple[Path | None, bool]:
    """The path an item names (None: a text), and whether it is shared knowledge."""
    shared = False
    if isinstance(item, dict):
        shared = bool(item.get("shared", False))
        item = item.get("path") or item.get("directory")
        if not isinstance(item, str):
            return None, shared
    if not isinstance(item, str) or "\n" in item or len(item) > 4096:
        return None, shared
    for candidate in (base / item, Path(item)):
        try:
            if candidate.exists():
                return candidate, shared
        except OSError:  # a text too odd to be a path
            return None, shared
    return None, shared
