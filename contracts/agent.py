"""Agent-level components: the character, and the actions, providers and evaluators plugins add.

A plugin returns `Provider`, `Action` and `Evaluator` objects from its component methods; the
runtime calls them for every processed message:

- a provider's ``get(message, state)`` adds a `ProviderResult` to the `State`;
- an action's ``validate(ctx)`` says whether it applies, ``handler(ctx)`` runs it; each handler
  receives an `ActionContext` (the runtime, the message, the state, the results of the actions
  that ran before it) and returns an `ActionResult`;
- an evaluator runs the same way after the reply was saved (``ctx.reply`` is set).

Each message runs in its own ``message`` container scope: a provider reaches it as
``state.services``, an action or evaluator as ``ctx.services`` (a `ServiceScope`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from contracts.errors import AgentHostError
from contracts.memory import Memory
from contracts.services import ScopeError, ServiceScope
from contracts.tokens import Token

if TYPE_CHECKING:
    from contracts.events import Event
    from contracts.models import ModelParams, ModelType, TextChunk
    from contracts.storage import DatabaseAdapter

__all__ = [
    "AGENT_RUNTIME",
    "CHARACTER",
    "Action",
    "ActionContext",
    "ActionFn",
    "ActionResult",
    "AgentError",
    "AgentRuntimeLike",
    "CachePolicy",
    "CacheScope",
    "Character",
    "CharacterError",
    "Evaluator",
    "EvaluatorFn",
    "Provider",
    "ProviderFn",
    "ProviderResult",
    "Reply",
    "State",
    "ValidateFn",
]

P = TypeVar("P", bound="ModelParams")
R = TypeVar("R")


class AgentError(AgentHostError):
    """Base of the agent runtime's errors (unknown agent, agent not running, ...)."""


class CharacterError(AgentError, ValueError):
    """A character that does not validate; the message names the file (or config) and field."""

    def __init__(self, message: str, *, source: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.fields = tuple(fields)


_CAMEL = {
    "messageExamples": "message_examples",
    "postExamples": "post_examples",
    "modelProvider": "model_provider",
}
_TEXT_TYPES = ("text_small", "text_large", "object_small", "object_large")
_ELIZAOS_MODEL_KEYS = {
    "SMALL_MODEL": ("text_small", "object_small"),
    "LARGE_MODEL": ("text_large", "object_large"),
    "EMBEDDING_MODEL": ("text_embedding",),
}
"""The model-name settings of ElizaOS's model plugins (also prefixed: ``OPENAI_LARGE_MODEL``)."""


class Character(BaseModel):
    """Who an agent is.

    ElizaOS character files load as they are: camelCase keys (``messageExamples``,
    ``postExamples``, ``modelProvider``) map to their fields, a string ``bio`` becomes a
    one-item list, ``settings.secrets`` joins `secrets`, and every field this model does not
    know (``lore``, ``knowledge``, ``clients``, ...) is kept in `settings` under its own key
    (the character loader warns about each: agenthost does nothing with them).

    Honoured ElizaOS fields: `model_provider` (``modelProvider``: the provider this agent's
    model calls try first), the model names of `model_names` (``settings.model``,
    ``settings.embeddingModel``, ``settings.models``) and ``templates.messageHandlerTemplate``
    (the reply prompt).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    name: str = Field(min_length=1, max_length=200)
    username: str | None = None
    bio: list[str] = Field(default_factory=list)
    system: str | None = None
    """System prompt; the prompt builder falls back to one made from name and bio."""
    message_examples: list[list[dict[str, Any]]] = Field(default_factory=list)
    post_examples: list[str] = Field(default_factory=list)
    style: dict[str, list[str]] = Field(default_factory=dict)
    topics: list[str] = Field(default_factory=list)
    adjectives: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    plugins: list[str] = Field(default_factory=list)
    """ElizaOS plugin package names: kept, not loaded (agenthost's plugins are configured)."""
    model_provider: str | None = Field(default=None, min_length=1)
    """The model provider this agent's calls try first (ElizaOS ``modelProvider``); the others
    remain its fallback."""
    templates: dict[str, str] = Field(default_factory=dict)
    """ElizaOS prompt templates; ``messageHandlerTemplate`` is the reply prompt (see
    `host.templates`), the others have no equivalent."""

    @model_validator(mode="before")
    @classmethod
    def _elizaos_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        out: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            name = _CAMEL.get(key, key)
            if name in known:
                out[name] = value
            else:
                extra[key] = value
        settings = out.get("settings")
        if settings is None:
            settings = {}
        if isinstance(settings, dict):
            settings = dict(settings)
            _check_model_settings(settings)
            nested = settings.get("secrets")
            if isinstance(nested, dict):
                del settings["secrets"]
                top = out.get("secrets") or {}
                if isinstance(top, dict):
                    out["secrets"] = {**nested, **top}
            for key, value in extra.items():
                settings.setdefault(key, value)
            out["settings"] = settings
        if isinstance(out.get("bio"), str):
            out["bio"] = [out["bio"]]
        return out

    @field_validator("secrets", mode="before")
    @classmethod
    def _stringify_secrets(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value

    def model_names(self) -> dict[str, str]:
        """Model type name -> the model name this agent asks for, from (later wins):
        ``settings.model`` (the text and object types) and ``settings.embeddingModel``; the
        ElizaOS plugins' ``SMALL_MODEL``, ``LARGE_MODEL``, ``EMBEDDING_MODEL``, then the same
        prefixed with the `model_provider` (``OPENAI_LARGE_MODEL``, ``OLLAMA_SMALL_MODEL``, in
        `secrets` or `settings`); then ``settings.models`` per model type."""
        names: dict[str, str] = {}
        model = self.settings.get("model")
        if isinstance(model, str):
            names.update(dict.fromkeys(_TEXT_TYPES, model))
        embedding = self.settings.get("embeddingModel")
        if isinstance(embedding, str):
            names["text_embedding"] = embedding
        prefixes = [""]
        if self.model_provider:
            prefixes.append(self.model_provider.upper().replace("-", "_") + "_")
        for prefix in prefixes:
            for key, types in _ELIZAOS_MODEL_KEYS.items():
                value = self.setting(prefix + key)
                if isinstance(value, str) and value:
                    names.update(dict.fromkeys(types, value))
        models = self.settings.get("models")
        if isinstance(models, dict):
            names.update((k, v) for k, v in models.items() if isinstance(v, str))
        return names

    def setting(self, key: str, default: Any = None) -> Any:
        """A value from `settings` (secrets are looked up first: ElizaOS ``getSetting``)."""
        if key in self.secrets:
            return self.secrets[key]
        return self.settings.get(key, default)


def _check_model_settings(settings: dict[str, Any]) -> None:
    """The model names a character's ``settings`` give are text (a clear error otherwise)."""
    for key in ("model", "embeddingModel"):
        value = settings.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"settings.{key} must be a model name (text)")
    models = settings.get("models")
    if models is not None and not (
        isinstance(models, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in models.items())
    ):
        raise ValueError(
            "settings.models must map model type names to model names"
            " (e.g. {text_large: llama3.2, text_embedding: nomic-embed-text})"
        )


CHARACTER: Token[Character] = Token("character", Character)
"""The agent's character, provided in each agent scope (inject ``character: Character``)."""


class ProviderResult(BaseModel):
    """What a provider adds to state: text for the prompt, values for templates, raw data."""

    text: str = ""
    values: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


class State(BaseModel):
    """Composed state for one message: provider results by name, merged values and prompt text.

    ``values`` starts with ``agent_id``, ``agent_name``, ``room_id`` and ``entity_id`` and then
    holds every provider's values merged in provider position order; ``text`` is the providers'
    texts joined in that order (what goes into the prompt).
    """

    values: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    text: str = ""
    providers: dict[str, ProviderResult] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)
    """Providers that failed or timed out, with the reason (they add nothing to the state)."""
    _services: ServiceScope | None = PrivateAttr(default=None)

    @property
    def services(self) -> ServiceScope:
        """The message's service scope: resolve a service bound with ``scope="message"`` (built
        once for this message, torn down when it ends), or any agent or app service.

        Set on the state the runtime composes for a message; `ScopeError` on a state made by
        hand, or used after its message ended (`ScopeClosedError`, from the scope)."""
        if self._services is None:
            raise ScopeError(
                "this State has no message scope: services are reachable from the state the"
                " agent runtime composes while it processes a message"
            )
        return self._services


class ActionResult(BaseModel):
    """Outcome of one action or evaluator; chained into the next action's context."""

    success: bool = True
    text: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    name: str | None = None
    """The action or evaluator that produced it (filled in by the runtime)."""
    duration: float | None = None
    """Seconds the handler ran (filled in by the runtime)."""


class Reply(BaseModel):
    """What `process_message` returns: the reply (if the agent responded) and what happened.

    A failing action or evaluator does not stop the reply: it shows up here with
    ``success=False`` and its error. ``timings`` holds seconds spent per stage (``memory``,
    ``providers``, ``model``, ``actions``, ``evaluators``, ``total``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent_id: UUID
    room_id: UUID
    message_id: UUID
    """Id of the saved incoming message."""
    responded: bool
    text: str = ""
    reply: Memory | None = None
    """The saved reply memory (None when the agent chose not to respond)."""
    actions: list[ActionResult] = Field(default_factory=list)
    evaluators: list[ActionResult] = Field(default_factory=list)
    skipped_providers: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)


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


@runtime_checkable
class AgentRuntimeLike(Protocol):
    """What action, evaluator and provider code may use of the agent running it."""

    @property
    def agent_id(self) -> UUID: ...

    @property
    def character(self) -> Character: ...

    @property
    def database(self) -> DatabaseAdapter:
        """The memory store this agent reads and writes."""
        ...

    async def use_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> R:
        """Call a model through the host's registry (``MODEL_USED`` is emitted)."""
        ...

    def stream_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> AsyncIterator[TextChunk]:
        """Stream a text model's output chunk by chunk."""
        ...

    async def recent_memories(self, room_id: UUID, limit: int = 20) -> list[Memory]:
        """The room's latest `limit` memories of this agent, oldest first, without their
        embeddings (``embedding`` None: a history is read for its text)."""
        ...


AGENT_RUNTIME: Token[AgentRuntimeLike] = Token("agent_runtime", AgentRuntimeLike)
"""The running agent, provided in each agent scope (inject ``runtime: AgentRuntimeLike``)."""


@dataclass(slots=True)
class ActionContext:
    """What an action's or evaluator's `validate` and `handler` receive."""

    runtime: AgentRuntimeLike
    message: Memory
    """The incoming message being processed."""
    state: State
    previous: list[ActionResult] = field(default_factory=list)
    """Results of the actions that already ran for this message, in order (the chain)."""
    reply: Memory | None = None
    """The saved reply (set for evaluators and for actions when the reply was already made)."""
    reply_text: str = ""
    """The model's reply text (what the agent is about to say / said)."""

    @property
    def services(self) -> ServiceScope:
        """The message's service scope (``state.services``): message-scoped services are built
        once per message and torn down when it ends; agent and app services resolve too."""
        return self.state.services


ProviderFn = Callable[["Memory", State], Awaitable[ProviderResult] | ProviderResult]
ValidateFn = Callable[[ActionContext], Awaitable[bool] | bool]
ActionFn = Callable[[ActionContext], Awaitable[ActionResult] | ActionResult]
EvaluatorFn = Callable[[ActionContext], "Awaitable[ActionResult | None] | ActionResult | None"]
"""Component callables are async, or sync: a sync one that may block (a sync client library,
heavy CPU work) is declared ``blocking=True`` on its component and runs in a worker thread;
an undeclared one runs on the event loop, and the loop monitor reports it if it holds the loop
(``loop_monitor`` in the config)."""


@dataclass(frozen=True, slots=True)
class Provider:
    """Supplies one named piece of state for each message."""

    name: str
    get: ProviderFn
    description: str = ""
    dynamic: bool = False
    """Only run when asked for by name (``compose_state(include=...)``), not for every message."""
    private: bool = False
    """Its text is not put into the prompt (its values and data still join the state)."""
    position: int = 0
    """Order of its text in the prompt (lower first)."""
    timeout: float | None = None
    """Seconds before it is skipped; None: the runtime's default provider timeout."""
    cache: CachePolicy = field(default_factory=CachePolicy)
    blocking: bool = False
    """`get` is sync and may block: it runs in a worker thread (see `ProviderFn`)."""


@dataclass(frozen=True, slots=True)
class Action:
    """Something the agent can do. `validate` says whether it applies; `handler` does it.

    The runtime runs an action when its `validate` returns True (or it has none) and: the
    model's reply names it (``ACTIONS: NAME`` or ``[NAME]``, by name or simile), or the incoming
    message contains one of its `keywords`, or it is ``always``. The default ELIZA model never
    names actions: keywords are how an action runs with it.
    """

    name: str
    description: str
    handler: ActionFn
    validate: ValidateFn | None = None
    similes: tuple[str, ...] = ()
    examples: Sequence[Any] = ()
    always: bool = False
    """Run for every message whose validate passes, whether or not the model asked for it."""
    timeout: float | None = None
    """Seconds before the action counts as failed; None: the runtime's default."""
    blocking: bool = False
    """`handler` (and `validate`) are sync and may block: they run in a worker thread."""
    keywords: tuple[str, ...] = ()
    """Words or phrases that run the action when the incoming message contains one (whole
    words, case-insensitive), whatever the model replies."""


@dataclass(frozen=True, slots=True)
class Evaluator:
    """Runs after the reply (reflection, fact extraction); failures are reported, not raised."""

    name: str
    description: str
    handler: EvaluatorFn
    validate: ValidateFn | None = None
    always_run: bool = False
    """Run even when the agent decided not to respond."""
    timeout: float | None = None
    blocking: bool = False
    """`handler` (and `validate`) are sync and may block: they run in a worker thread."""
