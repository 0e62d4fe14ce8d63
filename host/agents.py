"""Several agents in one host: one `AgentRuntime` each, with its own character and agent scope.

Every agent gets ``container.create_scope("agent")`` with its `Character` (``CHARACTER``) and its
runtime (``AGENT_RUNTIME``) provided in it; services bound with ``scope="agent"`` are built once
per agent there, app-scoped ones (the store, the bus, the models) are shared. Agents start and
stop independently (``AGENT_STARTED`` / ``AGENT_STOPPED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from uuid import UUID, uuid4

from loguru import logger

from contracts.agent import AGENT_RUNTIME, CHARACTER, AgentError, Character
from contracts.cache import CACHE, ProviderCacheProtocol
from contracts.config import AgentsSettings
from contracts.events import AGENT_STARTED, AGENT_STOPPED, AgentPayload
from contracts.memory import utc_now
from contracts.metrics import MetricsCollector
from contracts.models import MODELS
from contracts.storage import DATABASE, DatabaseAdapter
from host.components import ComponentRegistry
from host.di import Container
from host.embeddings import EmbeddingSpace
from host.events import EventBus
from host.metrics.storage import InstrumentedAdapter
from host.runtime import AgentRuntime, agent_id_for

__all__ = ["AgentManager", "UnknownAgentError", "character_for"]

_log = logger.bind(component="agents")


class UnknownAgentError(AgentError, LookupError):
    """No agent (running or configured) has that name or id."""


class AgentManager:
    """Starts, stops and finds the host's agents."""

    def __init__(
        self,
        container: Container,
        events: EventBus,
        components: ComponentRegistry,
        *,
        characters: Iterable[Character] = (),
        settings: AgentsSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        ids: Callable[[], UUID] = uuid4,
        metrics: MetricsCollector | None = None,
        wrap_database: Callable[[DatabaseAdapter], DatabaseAdapter] | None = None,
        embeddings: EmbeddingSpace | None = None,
        runtime: Callable[..., AgentRuntime] = AgentRuntime,
    ) -> None:
        self._runtime = runtime
        """Builds each agent's runtime (`AgentRuntime`; the test kit's `TestRuntime`)."""
        self.embeddings = embeddings
        """The embedding model of the store's vectors, shared by every agent's runtime."""
        self.metrics = metrics
        self.wrap_database = wrap_database
        """Applied to each agent's store last (cluster mode holds a message's writes back)."""
        """When set, each agent's store is wrapped to record memory operation metrics."""
        self.container = container
        self.events = events
        self.components = components
        self.settings = settings or AgentsSettings()
        self.clock = clock
        self.ids = ids
        self._characters: dict[str, Character] = {}
        for character in characters:
            self.add_character(character)
        self._running: dict[str, AgentRuntime] = {}
        self._stopping: dict[str, asyncio.Event] = {}
        """Agents being stopped (set once stopped): a start waits, so one agent never has two
        runtimes serving its rooms at once."""
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ characters

    def add_character(self, character: Character) -> None:
        """Make `character` startable (replaces a stopped one of the same name)."""
        key = character.name.lower()
        if key in getattr(self, "_running", {}):
            raise AgentError(f"agent {character.name} is running; stop it before replacing it")
        self._characters[key] = character

    @property
    def characters(self) -> list[Character]:
        return list(self._characters.values())

    @property
    def running(self) -> list[AgentRuntime]:
        return list(self._running.values())

    def _key(self, ref: str | UUID) -> str:
        return character_for(self._characters.values(), ref).name.lower()

    def get(self, ref: str | UUID) -> AgentRuntime:
        """The running agent with this name, username or id."""
        key = self._key(ref)
        runtime = self._running.get(key)
        if runtime is None:
            raise UnknownAgentError(f"agent {self._characters[key].name} is not running")
        return runtime

    def find(self, ref: str | UUID) -> AgentRuntime | None:
        try:
            return self.get(ref)
        except UnknownAgentError:
            return None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ref: str | UUID) -> AgentRuntime:
        """Start the agent (idempotent): open its scope, build its runtime, emit AGENT_STARTED.

        An agent still stopping (finishing its messages) is waited for first: a new runtime
        serving its rooms meanwhile would run two messages of one room at once."""
        while True:
            async with self._lock:
                key = self._key(ref)
                runtime = self._running.get(key)
                if runtime is not None:
                    return runtime
                stopping = self._stopping.get(key)
                if stopping is None:
                    runtime = await self._build(key)
                    self._running[key] = runtime
                    break
            await stopping.wait()
        _log.info("agent {} started ({})", runtime.name, runtime.agent_id)
        await self.events.emit(AGENT_STARTED, _agent_payload(runtime))
        return runtime

    async def _build(self, key: str) -> AgentRuntime:
        """The runtime of agent `key` in a new agent scope (closed again if building fails)."""
        character = self._characters[key]
        scope = self.container.create_scope("agent")
        try:
            scope.provide(CHARACTER, character, owner="agents")
            database = await scope.aresolve(DATABASE)
            if self.metrics is not None:
                database = InstrumentedAdapter(database, self.metrics)
            if self.wrap_database is not None:
                database = self.wrap_database(database)
            models = await scope.aresolve(MODELS)
            cache: ProviderCacheProtocol | None = None
            if scope.has(CACHE):
                cache = await scope.aresolve(CACHE)
            runtime = self._runtime(
                character=character,
                scope=scope,
                events=self.events,
                models=models,
                database=database,
                components=self.components,
                settings=self.settings,
                cache=cache,
                clock=self.clock,
                ids=self.ids,
                embeddings=self.embeddings,
            )
            scope.provide(AGENT_RUNTIME, runtime, owner="agents")
        except BaseException:
            await scope.aclose()
            raise
        return runtime

    async def stop(self, ref: str | UUID, grace: float | None = 30.0) -> None:
        """Stop the agent: finish its messages in progress, close its scope, emit AGENT_STOPPED.

        Returns once it is stopped, also when another call is already stopping it."""
        async with self._lock:
            key = self._key(ref)
            runtime = self._running.pop(key, None)
            stopped = self._stopping.get(key)
            if runtime is not None:
                stopped = self._stopping[key] = asyncio.Event()
        if runtime is None:
            if stopped is not None:
                await stopped.wait()
            return
        assert stopped is not None
        try:
            await runtime.stop(grace)
        finally:
            try:
                await runtime.scope.aclose()
                _log.info("agent {} stopped", runtime.name)
                await self.events.emit(AGENT_STOPPED, _agent_payload(runtime))
            finally:
                del self._stopping[key]
                stopped.set()

    async def start_all(self, names: Iterable[str] | None = None) -> list[AgentRuntime]:
        """Start the named agents (all known characters when None)."""
        wanted = list(names) if names is not None else [c.name for c in self.characters]
        return [await self.start(name) for name in wanted]

    async def stop_all(self) -> None:
        """Stop every running agent, most recently started first."""
        for runtime in reversed(list(self._running.values())):
            await self.stop(runtime.name)


def _agent_payload(runtime: AgentRuntime) -> AgentPayload:
    return AgentPayload(agent_id=runtime.agent_id, name=runtime.name)


def character_for(characters: Iterable[Character], ref: str | UUID) -> Character:
    """The character `ref` names: its name, username or agent id, in any case;
    `UnknownAgentError` naming the known agents if none (the API's 404)."""
    text = str(ref).strip().lower()
    known = list(characters)
    for character in known:
        if character.name.lower() == text:
            return character
    for character in known:
        if text in (str(agent_id_for(character.name)), (character.username or "").lower()):
            return character
    names = ", ".join(sorted(c.name for c in known)) or "none"
    raise UnknownAgentError(f"no agent named {str(ref)!r} (known agents: {names})")
