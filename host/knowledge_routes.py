"""HTTP routes of the knowledge base (the ``knowledge`` plugin's `KNOWLEDGE` service):

- ``POST   /knowledge``          add a text document ``{source, text, agent?}``
- ``GET    /knowledge``          the documents (``?agent=`` an agent's, else the shared ones)
- ``GET    /knowledge/search``   the chunks most similar to ``?q=`` (``&agent=``, ``&k=``)
- ``DELETE /knowledge``          remove the document ``?source=`` (``&agent=``)

Mounted by `Host.start_http` behind the API key like every route; 503 naming the plugin when
the knowledge plugin is not loaded.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.knowledge import KNOWLEDGE, AddOutcome, Chunk, Document, KnowledgeBase
from host.agents import AgentManager, character_for
from host.di import Container
from host.http_deps import Agents
from host.runtime import agent_id_for

__all__ = ["KnowledgeIn", "knowledge_base", "router"]


class KnowledgeIn(BaseModel):
    """A text document to add (a new version of a `source` replaces the earlier one)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=1000)
    """The document's name (what the prompt cites and what removes it)."""
    text: str = Field(min_length=1, max_length=5_000_000)
    agent: str | None = Field(default=None, min_length=1, max_length=200)
    """The agent it belongs to (None: shared by every agent)."""


AgentParam = Annotated[
    str | None, Query(min_length=1, max_length=200, description="agent name (default: shared)")
]


def _agent(agents: AgentManager, name: str | None) -> UUID | None:
    """The id of the configured agent `name` names (None: shared); 404 if there is none: a
    document filed under a mistyped name would be stored where no agent reads it."""
    return None if name is None else agent_id_for(character_for(agents.characters, name).name)


router = APIRouter(tags=["knowledge"])
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "the knowledge plugin is not loaded"}
}
_MISSING: dict[int | str, dict[str, Any]] = {
    **_UNAVAILABLE,
    404: {"description": "no such document"},
}


async def knowledge_base(request: Request) -> KnowledgeBase:
    """The `KNOWLEDGE` service of the host's container (``app.state.container``); 503 without."""
    container: Container = request.app.state.container
    if not container.has(KNOWLEDGE):
        raise HTTPException(503, "the knowledge plugin is not loaded")
    return await container.aresolve(KNOWLEDGE)


Base = Annotated[KnowledgeBase, Depends(knowledge_base)]


@router.post("/knowledge", responses=_UNAVAILABLE)
async def add(base: Base, agents: Agents, body: KnowledgeIn) -> AddOutcome:
    """Add (or replace) a text document; an unchanged one is left as it is."""
    return await base.add_text(body.text, body.source, _agent(agents, body.agent))


@router.get("/knowledge", responses=_UNAVAILABLE)
async def documents(base: Base, agents: Agents, agent: AgentParam = None) -> list[Document]:
    return await base.documents(_agent(agents, agent))


@router.get("/knowledge/search", responses=_UNAVAILABLE)
async def search(
    base: Base,
    agents: Agents,
    q: Annotated[str, Query(min_length=1, max_length=10_000)],
    agent: AgentParam = None,
    k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> list[Chunk]:
    """The chunks most similar to `q` among the agent's and the shared documents."""
    return await base.search(q, _agent(agents, agent), k)


@router.delete("/knowledge", responses=_MISSING)
async def remove(
    base: Base,
    agents: Agents,
    source: Annotated[str, Query(min_length=1, max_length=1000)],
    agent: AgentParam = None,
) -> dict[str, bool]:
    if not await base.remove(source, _agent(agents, agent)):
        raise HTTPException(404, f"no document {source!r} ({agent or 'shared'})")
    return {"removed": True}
