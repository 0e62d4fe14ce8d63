"""The agents page: every configured character, running or not, started and stopped from
its card."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from loguru import logger

from host.agents import AgentManager, UnknownAgentError
from host.http_deps import Agents
from host.http_manage import character_name
from host.runtime import agent_id_for

from .deps import Authed, ConsoleDep

__all__ = ["router"]

_log = logger.bind(component="console")
router = APIRouter(include_in_schema=False)


@router.get("/console/agents")
async def agents_page(
    request: Request, console: ConsoleDep, found: Authed, agents: Agents
) -> HTMLResponse:
    return console.render(request, found, "agents.html", cards=_cards(agents))


@router.post("/console/agents/{agent}/{verb}")
async def start_stop(
    request: Request, console: ConsoleDep, found: Authed, agents: Agents, agent: str, verb: str
) -> HTMLResponse:
    try:
        if verb == "start":
            await agents.start(agent)
        elif verb == "stop":
            await agents.stop(agent)
        else:
            return console.render(
                request, found, "_problem.html", status=404, problem=f"No action {verb!r}."
            )
    except UnknownAgentError as exc:
        return console.render(request, found, "_problem.html", status=404, problem=str(exc))
    except Exception as exc:  # its store or models could not be resolved, ...: say why
        _log.opt(exception=exc).warning("could not {} agent {}: {}", verb, agent, exc)
        why = console.why(f"Could not {verb} {character_name(agents, agent)}", exc)
        return console.problem(request, found, why, status=409)
    name = character_name(agents, agent)
    card = next(c for c in _cards(agents) if c["character"].name == name)
    return console.render(request, found, "_agent.html", card=card, announce=True)


def _cards(agents: AgentManager) -> list[dict[str, Any]]:
    return [
        {
            "character": c,
            "running": agents.find(c.name) is not None,
            "id": agent_id_for(c.name),
        }
        for c in agents.characters
    ]
