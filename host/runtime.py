"""`AgentRuntime`: one agent processing messages, every step an event.

``process_message(message)``:

1. emit ``MESSAGE_RECEIVED``;
2. embed the text (``TEXT_EMBEDDING``) and save the incoming memory (``MEMORY_CREATED``);
3. compose the state from the providers, in parallel, each under its timeout (a failing or slow
   provider is logged, listed in ``state.skipped`` and leaves nothing in the state);
4. decide whether to respond (`host.turn.should_respond`);
5. ``TEXT_LARGE`` with a prompt built from the character and the state (`host.prompt`);
6. run the actions the reply asks for, whose keywords the message contains, or that always run
   (``ACTION_STARTED`` / ``ACTION_COMPLETED``; each sees the results before it);
7. save the reply (``MEMORY_CREATED``), run the evaluators, emit ``MESSAGE_SENT``.

Messages to one room are processed one at a time, in arrival order; different rooms run in
parallel (`host.room_queue`). Each message gets its own ``message`` container scope, reachable
by its providers (``state.services``), actions and evaluators (``ctx.services``) and torn down
when the message ends. `stream_message` runs the same turn (`host.turn`) yielding the model's
text as it streams.

The jobs live in their own modules: `host.prompt` (the reply prompt), `host.directives`
(action directives in a reply), `host.state` (providers), `host.invoke` (calling plugin
components), `host.memory_writer` (saving memories), `host.room_queue`, `host.turn`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from loguru import logger

from contracts.agent import Character, Reply, State
from contracts.cache import ProviderCacheProtocol
from contracts.config import AgentsSettings
from contracts.memory import DEFAULT_TABLE, Content, Memory, MemoryQuery, utc_now
from contracts.models import EmbeddingKind, ModelParams, ModelRuntime, ModelType, TextChunk
from contracts.services import ServiceScope
from contracts.storage import DatabaseAdapter, MemoryText, get_texts
from host.components import ComponentRegistry
from host.di import Container
from host.embeddings import EmbeddingSpace
from host.events import EventBus
from host.memory_writer import MemoryWriter
from host.room_queue import RoomQueue
from host.state import StateComposer
from host.turn import TurnParts, run_turn

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["AgentRuntime", "ReplyStream", "agent_id_for"]

P = TypeVar("P", bound=ModelParams)
R = TypeVar("R")

_QUERIES_KEPT = 4096
"""Most queries `AgentRuntime._latest` keeps (all are dropped when it is full)."""
_AGENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenthost.dev/agents")


def agent_id_for(name: str) -> UUID:
    """The stable id of the agent named `name` (same name, same id, across restarts)."""
    return uuid5(_AGENT_NAMESPACE, name.strip().lower())


class ReplyStream:
    """The text chunks of a streamed reply (``async for``), then the whole `Reply`."""

    def __init__(self, parts: TurnParts, message: Memory, *, stream: bool = True) -> None:
        self.reply: Reply | None = None
        """Set when the stream is exhausted (the pipeline has finished)."""
        self._chunks: AsyncGenerator[str, None] = run_turn(
            parts, message, self._done, stream=stream
        )

    def _done(self, reply: Reply) -> None:
        self.reply = reply

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks

    async def collect(self) -> Reply:
        """Consume the stream; the final `Reply`."""
        async for _chunk in self._chunks:
            pass
        assert self.reply is not None
        return self.reply

    async def aclose(self) -> None:
        """Stop early (e.g. the HTTP client went away); the room is released."""
        await self._chunks.aclose()


class AgentRuntime:
    """Runs one agent: its character, its container scope, the shared bus, models and store.

    Built from explicit parts so hosts and test kits can assemble one; `clock` and `ids` make
    timestamps and ids deterministic in tests.
    """

    def __init__(
        self,
        *,
        character: Character,
        scope: Container,
        events: EventBus,
        models: ModelRuntime,
        database: DatabaseAdapter,
        components: ComponentRegistry | None = None,
        settings: AgentsSettings | None = None,
        agent_id: UUID | None = None,
        cache: ProviderCacheProtocol | None = None,
        clock: Callable[[], datetime] = utc_now,
        ids: Callable[[], UUID] = uuid4,
        embeddings: EmbeddingSpace | None = None,
    ) -> None:
        self._character = character
        self._agent_id = agent_id or agent_id_for(character.name)
        self.scope = scope
        self.events = events
        self.models = models
        self._database = database
        self.components = components or ComponentRegistry()
        self.settings = settings or AgentsSettings()
        """Config section ``agents``: timeouts, history, embedding, group replies."""
        self.clock = clock
        self.ids = ids
        self._last_time: datetime | None = None
        self._queries: dict[tuple[UUID, int, str | None, bool], MemoryQuery] = {}
        """The rooms' latest-memories queries (`_latest`)."""
        self.rooms = RoomQueue(character.name)
        """The per-room queue (also the agent's gate: hold, release, stop, drain)."""
        log = logger.bind(agent=character.name)
        self._log = log
        self.memories = MemoryWriter(
            agent_id=self._agent_id,
            database=database,
            models=models,
            events=events,
            settings=self.settings,
            embeddings=embeddings,
            log=log,
        )
        self.states = StateComposer(
            agent_id=self._agent_id,
            character=character,
            components=self.components,
            settings=self.settings,
            recent=self.recent_texts,
            cache=cache,
            log=log,
        )
        self._parts = self._turn_parts(log)

    def _turn_parts(self, log: Logger) -> TurnParts:
        """What each message's turn works with (`host.turn`)."""
        character = self._character
        return TurnParts(
            agent=self,
            character=character,
            agent_id=self._agent_id,
            settings=self.settings,
            components=self.components,
            events=self.events,
            models=self.models,
            memories=self.memories,
            composer=self.states,
            rooms=self.rooms,
            scope=self.scope,
            log=log,
            new_id=self.ids,
            now=self.now,
            model_preferences=(character.model_provider, character.model_names()),
        )

    # ------------------------------------------------------------------ AgentRuntimeLike

    @property
    def agent_id(self) -> UUID:
        return self._agent_id

    @property
    def character(self) -> Character:
        return self._character

    @property
    def name(self) -> str:
        return self._character.name

    @property
    def database(self) -> DatabaseAdapter:
        return self._database

    @property
    def running(self) -> bool:
        return self.rooms.running

    @property
    def cache(self) -> ProviderCacheProtocol | None:
        """Provider cache consulted for each provider call (None: providers always run)."""
        return self.states.cache

    @property
    def embeddings(self) -> EmbeddingSpace | None:
        """The embedding model the store's vectors are of (None: not checked, a bare rig)."""
        return self.memories.embeddings

    async def use_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> R:
        """Call a model through the host's registry."""
        return await self.models.use_model(model_type, params, provider=provider)

    def stream_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> AsyncIterator[TextChunk]:
        """Stream a text model's output."""
        return self.models.stream_model(model_type, params, provider=provider)

    async def recent_memories(
        self,
        room_id: UUID,
        limit: int = 20,
        table_name: str | None = DEFAULT_TABLE,
        *,
        with_embeddings: bool = False,
    ) -> list[Memory]:
        """The room's latest `limit` memories of this agent in `table_name` (by default the
        conversation, ``messages``: a plugin's facts or documents about the room are not lines
        of it; None: every table), oldest first; their vectors neither read nor decoded unless
        `with_embeddings` (a history is read for its text: ``embedding`` is None)."""
        query = self._latest(room_id, limit, table_name, with_embeddings)
        rows = await self._database.get_memories(query)
        rows.reverse()
        return rows

    async def recent_texts(self, room_id: UUID, limit: int = 20) -> list[MemoryText]:
        """What `recent_memories` reads of the room's conversation, as the lines of a prompt's
        history need it: each memory's id, speaker and text (`contracts.storage.get_texts`: a
        store that can reads them without building the memories)."""
        texts = await get_texts(self._database, self._latest(room_id, limit, DEFAULT_TABLE))
        texts.reverse()
        return texts

    def _latest(
        self, room_id: UUID, limit: int, table_name: str | None, with_embeddings: bool = False
    ) -> MemoryQuery:
        """The query of the room's latest `limit` memories of this agent in `table_name` (kept
        per room: a frozen model, asked for on every message of the room)."""
        key = (room_id, limit, table_name, with_embeddings)
        query = self._queries.get(key)
        if query is None:
            query = MemoryQuery(
                agent_id=self._agent_id,
                room_id=room_id,
                table_name=table_name,
                order="desc",
                limit=limit,
                with_embeddings=with_embeddings,
            )
            if len(self._queries) >= _QUERIES_KEPT:
                self._queries.clear()
            self._queries[key] = query
        return query

    # ------------------------------------------------------------------ entry points

    def new_message(
        self,
        text: str,
        *,
        room_id: UUID,
        entity_id: UUID,
        **content: Any,
    ) -> Memory:
        """An incoming message memory for this agent (id and time from the runtime's factories)."""
        return Memory(
            id=self.ids(),
            agent_id=self._agent_id,
            entity_id=entity_id,
            room_id=room_id,
            content=Content(text=text, **content),
            created_at=self.now(),
        )

    def now(self) -> datetime:
        """The clock's time, made strictly increasing (by 1 µs steps) within this runtime, so
        memories it creates keep their creation order in ``(created_at, id)`` order."""
        now = self.clock()
        last = self._last_time
        if last is not None and now <= last:
            now = last + timedelta(microseconds=1)
        self._last_time = now
        return now

    async def process_message(self, message: Memory) -> Reply:
        """Run the whole pipeline for `message` and return the reply (see the module doc)."""
        return await ReplyStream(self._parts, message, stream=False).collect()

    def stream_message(self, message: Memory) -> ReplyStream:
        """Like `process_message`, yielding the reply text chunk by chunk as the model streams.

        Iterate the returned `ReplyStream` for the text chunks (action outputs appended to the
        reply come as a last chunk); its ``reply`` holds the `Reply` once it is exhausted. The
        chunks join to ``reply.text``: action directives (``ACTIONS: NAME``, ``[NAME]``) are
        held back and dropped, not streamed.
        """
        return ReplyStream(self._parts, message)

    async def compose_state(
        self, message: Memory, include: Iterable[str] = (), services: ServiceScope | None = None
    ) -> State:
        """State for `message` from every non-dynamic provider plus the dynamic ones named in
        `include`, run in parallel; failing or slow ones are skipped and listed (`host.state`).
        `services`: the scope ``state.services`` gives (the pipeline passes the message's)."""
        return await self.states.compose(message, include, services)

    async def save_memory(self, memory: Memory, kind: EmbeddingKind = "passage") -> Memory:
        """Embed (when enabled and missing; as a `kind` text) and store `memory`; emit
        ``MEMORY_CREATED`` (`host.memory_writer`)."""
        return await self.memories.save(memory, kind)

    # ------------------------------------------------------------------ lifecycle

    async def stop(self, grace: float | None = 30.0) -> None:
        """Refuse new messages and wait for the ones in progress (up to `grace` seconds)."""
        self.rooms.stop()
        if not await self.rooms.drain(grace):
            self._log.warning("agent stopped with messages still in progress")

    def hold(self) -> None:
        """Let new messages wait (not fail) until `release`: hot reload swaps a plugin meanwhile."""
        self.rooms.hold()

    def release(self) -> None:
        """Let the messages held since `hold` in."""
        self.rooms.release()

    async def drain(self, grace: float | None = 30.0) -> bool:
        """Wait (up to `grace` seconds) for the messages in progress now; False on timeout.

        Hot reload uses it before tearing down a replaced plugin's old instance."""
        return await self.rooms.drain(grace)
