"""Agent-level components: the character, and the actions, providers and evaluators plugins add.

First cut written with the foundation; the agent-runtime issue refines it (keep the names).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from contracts.events import Event
    from contracts.memory import Memory

__all__ = [
    "Action",
    "ActionResult",
    "CachePolicy",
    "CacheScope",
    "Character",
    "Evaluator",
    "Provider",
    "ProviderResult",
    "State",
]


class Character(BaseModel):
    """Who an agent is. ElizaOS character files load as they are: unknown fields go to settings."""

    model_config = ConfigDict(extra="allow")

    name: str
    username: str | None = None
    bio: list[str] = Field(default_factory=list)
    system: str | None = None
    message_examples: list[list[dict[str, Any]]] = Field(default_factory=list)
    style: dict[str, list[str]] = Field(default_factory=dict)
    topics: list[str] = Field(default_factory=list)
    adjectives: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    plugins: list[str] = Field(default_factory=list)


class ProviderResult(BaseModel):
    """What a provider adds to state: text for the prompt, values for templates, raw data."""

    text: str = ""
    values: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


class State(BaseModel):
    """Composed state for one message: provider results by name, merged values and prompt text."""

    values: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    text: str = ""
    providers: dict[str, ProviderResult] = Field(default_factory=dict)


class ActionResult(BaseModel):
    """Outcome of one action; chained into the next action's context."""

    success: bool = True
    text: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


CacheScope = Literal["global", "agent", "room", "entity", "message"]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How the provider cache may reuse a provider's result.

    ttl: seconds a result stays valid (None: never cached). dependencies: provider names whose
    invalidation invalidates this one. invalidate_on: events that invalidate it (scoped by
    `scope`: an event in room A does not touch room B's entries).
    """

    ttl: float | None = None
    dependencies: tuple[str, ...] = ()
    invalidate_on: tuple[Event[Any], ...] = ()
    scope: CacheScope = "room"


ProviderFn = Callable[["Memory", State], Awaitable[ProviderResult]]


@dataclass(frozen=True, slots=True)
class Provider:
    """Supplies one named piece of state for each message."""

    name: str
    get: ProviderFn
    description: str = ""
    dynamic: bool = False
    """Only run when an action or template asks for it."""
    private: bool = False
    """Not listed to the model."""
    position: int = 0
    """Order of its text in the prompt (lower first)."""
    timeout: float | None = None
    cache: CachePolicy = field(default_factory=CachePolicy)


@dataclass(frozen=True, slots=True)
class Action:
    """Something the agent can do. `validate` says whether it applies; `handler` does it."""

    name: str
    description: str
    handler: Callable[..., Awaitable[ActionResult]]
    validate: Callable[..., Awaitable[bool]] | None = None
    similes: tuple[str, ...] = ()
    examples: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class Evaluator:
    """Runs after the reply (reflection, fact extraction); failures are reported, not raised."""

    name: str
    description: str
    handler: Callable[..., Awaitable[ActionResult | None]]
    validate: Callable[..., Awaitable[bool]] | None = None
    always_run: bool = False
