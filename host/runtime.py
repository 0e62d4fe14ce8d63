"""`AgentRuntime`: one agent processing messages, every step an event.

``process_message(message)``:

1. emit ``MESSAGE_RECEIVED``;
2. embed the text (``TEXT_EMBEDDING``) and save the incoming memory (``MEMORY_CREATED``);
3. compose the state from the providers, in parallel, each under its timeout (a failing or slow
   provider is logged, listed in ``state.skipped`` and leaves nothing in the state);
4. decide whether to respond (`should_respond`);
5. ``TEXT_LARGE`` with a prompt built from the character and the state (`build_prompt`);
6. run the actions the reply asks for, whose keywords the message contains, or that always run
   (``ACTION_STARTED`` / ``ACTION_COMPLETED``; each sees the results before it);
7. save the reply (``MEMORY_CREATED``), run the evaluators, emit ``MESSAGE_SENT``.

Messages to one room are processed one at a time, in arrival order; different rooms run in
parallel. Each message gets its own ``message`` container scope. `stream_message` is the same
pipeline yielding the model's text as it streams.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from loguru import logger

from contracts.agent import (
    Action,
    ActionContext,
    ActionResult,
    AgentError,
    Character,
    Evaluator,
    Provider,
    ProviderResult,
    Reply,
    State,
)
from contracts.cache import CacheContext, ProviderCacheProtocol
from contracts.events import (
    ACTION_COMPLETED,
    ACTION_STARTED,
    MEMORY_CREATED,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    ActionCompletedPayload,
    ActionStartedPayload,
    MemoryPayload,
    MessagePayload,
)
from contracts.memory import DEFAULT_TABLE, Content, Memory, MemoryQuery, utc_now
from contracts.models import (
    TEXT_EMBEDDING,
    TEXT_LARGE,
    EmbeddingKind,
    EmbeddingParams,
    EmbeddingResult,
    ModelParams,
    ModelRuntime,
    ModelType,
    TextChunk,
    TextParams,
)
from contracts.storage import DatabaseAdapter
from host import tracing
from host.blocking import component, component_site
from host.components import ComponentRegistry
from host.di import Container
from host.embeddings import EmbeddingModelChangedError, EmbeddingSpace
from host.events import EventBus
from host.models import CallContext, call_context
from host.secrets import scrub
from host.templates import MESSAGE_TEMPLATE, render_message_template

__all__ = [
    "AgentRuntime",
    "ReplyStream",
    "RuntimeSettings",
    "agent_id_for",
    "build_prompt",
    "parse_actions",
    "should_respond",
]

P = TypeVar("P", bound=ModelParams)
R = TypeVar("R")

_AGENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenthost.dev/agents")


def agent_id_for(name: str) -> UUID:
    """The stable id of the agent named `name` (same name, same id, across restarts)."""
    return uuid5(_AGENT_NAMESPACE, name.strip().lower())


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Tunables of one runtime (config ``agents``)."""

    provider_timeout: float = 5.0
    """Seconds a provider may take before it is skipped (a provider's own timeout wins)."""
    action_timeout: float = 30.0
    evaluator_timeout: float = 30.0
    history: int = 10
    """Recent messages of the room put into the prompt."""
    embed: bool = True
    """Embed incoming messages and replies (TEXT_EMBEDDING) before saving them."""
    respond_in_groups: bool = False
    """In group rooms (content ``channel_type: group``) reply only when named, unless True."""
    max_actions: int = 5
    """At most this many actions per message."""


_ACTIONS_LINE = re.compile(r"^\s*actions?\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_BRACKETED = re.compile(r"\[([A-Z][A-Z0-9_]{1,63})\]")


def parse_actions(text: str) -> tuple[str, list[str]]:
    """Split a model reply into (text without action directives, action names asked for).

    Recognised directives: a line ``ACTIONS: NAME, OTHER`` and bracketed ``[NAME]`` tokens.
    """
    names: list[str] = []
    for match in _ACTIONS_LINE.finditer(text):
        names += [n.strip().upper() for n in re.split(r"[,\s]+", match.group(1)) if n.strip()]
    stripped = _ACTIONS_LINE.sub("", text)
    names += [m.upper() for m in _BRACKETED.findall(stripped)]
    stripped = _BRACKETED.sub("", stripped)
    seen: dict[str, None] = dict.fromkeys(n for n in names if n not in ("NONE", ""))
    return re.sub(r"[ \t]+\n", "\n", stripped).strip(), list(seen)


_DIRECTIVE_AHEAD = re.compile(
    r"^\s*(?:a(?:c(?:t(?:i(?:o(?:n(?:s)?)?)?)?)?)?)?\s*\Z", re.IGNORECASE | re.MULTILINE
)
"""A last line that may still grow into an ``ACTIONS:`` line."""
_BRACKET_AHEAD = re.compile(r"\[(?:[A-Z][A-Z0-9_]{0,63})?\Z")
"""A trailing ``[`` that may still close into a ``[NAME]`` token."""


def _streamable(raw: str) -> str:
    """The part of the reply text already final while the model's output so far is `raw`.

    `parse_actions` of `raw` cut before the first action directive and before a tail that may
    still become one (a last line ``ACTI``, a trailing ``[NAME``), so that a streamed reply
    never shows a directive the saved reply drops; what is held back comes with the end.
    """
    cut = len(raw)
    for pattern in (_ACTIONS_LINE, _DIRECTIVE_AHEAD, _BRACKET_AHEAD):
        match = pattern.search(raw)
        if match is not None:
            cut = min(cut, match.start())
    return parse_actions(raw[:cut])[0]


def should_respond(character: Character, message: Memory, agent_id: UUID, *, groups: bool) -> bool:
    """Whether the agent answers `message`: never itself or empty text; in a group room only
    when named (or when `groups`); ``content.respond: false`` opts out explicitly."""
    content = message.content
    if message.entity_id == agent_id or not content.text.strip():
        return False
    extra = content.model_extra or {}
    if extra.get("respond") is False:
        return False
    if extra.get("channel_type") == "group" and not groups:
        names = {character.name.lower()}
        if character.username:
            names.add(character.username.lower())
        text = content.text.lower()
        return any(re.search(rf"\b{re.escape(n)}\b", text) for n in names)
    return True


def build_prompt(
    character: Character, state: State, message: Memory, actions: Sequence[Action] = ()
) -> str:
    """The TEXT_LARGE prompt: who the agent is, the composed state, the actions, the message.

    The message text is the last line so that simple models (ELIZA) can answer just it.
    """
    parts: list[str] = []
    if character.bio:
        parts.append(f"# About {character.name}\n" + "\n".join(character.bio))
    if character.adjectives:
        parts.append(f"{character.name} is " + ", ".join(character.adjectives) + ".")
    style = character.style.get("all", []) + character.style.get("chat", [])
    if style:
        parts.append("# Style\n" + "\n".join(f"- {rule}" for rule in style))
    if character.topics:
        parts.append(f"{character.name} likes to talk about " + ", ".join(character.topics) + ".")
    # on every message: format only the examples the prompt takes, not all of them
    formatted = (_example(character, conversation) for conversation in character.message_examples)
    examples = list(itertools.islice(filter(None, formatted), PROMPT_EXAMPLES))
    if examples:
        parts.append("# Example conversations\n" + "\n\n".join(examples))
    if state.text:
        parts.append(state.text)
    if actions:
        lines = [f"- {a.name}: {a.description}" for a in actions]
        parts.append(
            "# Available actions (name them on a line `ACTIONS: NAME` to use them)\n"
            + "\n".join(lines)
        )
    sender = str((message.content.model_extra or {}).get("name") or "user")
    parts.append(f"# Message from {sender}\n{message.content.text}")
    return "\n\n".join(parts)


def mentions(text: str, action: Action) -> bool:
    """Whether `text` contains one of `action`'s keywords (whole words, any case)."""
    pattern = _KEYWORDS.get(action.keywords)
    if pattern is None:
        words = "|".join(re.escape(k.strip()) for k in action.keywords if k.strip())
        pattern = _KEYWORDS[action.keywords] = re.compile(
            rf"(?<!\w)(?:{words})(?!\w)" if words else r"(?!)", re.IGNORECASE
        )
    return pattern.search(text) is not None


_KEYWORDS: dict[tuple[str, ...], re.Pattern[str]] = {}
"""Compiled keyword patterns by keyword tuple (a plugin's actions are few and long-lived)."""


PROMPT_EXAMPLES = 3
"""At most this many of the character's message examples go into the prompt."""


def _example(character: Character, conversation: list[dict[str, Any]]) -> str:
    """One ElizaOS message example (``[{name, content: {text}}, ...]``) as ``name: text`` lines;
    ``{{user1}}``-style placeholders read as ``user``."""
    lines = []
    for turn in conversation:
        content = turn.get("content")
        text = content.get("text") if isinstance(content, dict) else None
        if not isinstance(text, str) or not text:
            continue
        name = str(turn.get("name") or turn.get("user") or "user")  # ElizaOS v1 said "user"
        if name.startswith("{{"):
            name = "user"
        lines.append(f"{name}: {text}")
    return "\n".join(lines)


def _system(character: Character) -> str:
    if character.system:
        return character.system
    return f"You are {character.name}." + (" " + " ".join(character.bio) if character.bio else "")


class ReplyStream:
    """The text chunks of a streamed reply (``async for``), then the whole `Reply`."""

    def __init__(self) -> None:
        self.reply: Reply | None = None
        """Set when the stream is exhausted (the pipeline has finished)."""
        self._chunks: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        assert self._chunks is not None
        return self._chunks

    async def collect(self) -> Reply:
        """Consume the stream; the final `Reply`."""
        async for _chunk in self:
            pass
        assert self.reply is not None
        return self.reply

    async def aclose(self) -> None:
        """Stop early (e.g. the HTTP client went away); the room is released."""
        if self._chunks is not None:
            await self._chunks.aclose()  # type: ignore[attr-defined]


@dataclass(slots=True)
class _RoomLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


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
        settings: RuntimeSettings | None = None,
        agent_id: UUID | None = None,
        cache: ProviderCacheProtocol | None = None,
        clock: Callable[[], datetime] = utc_now,
        ids: Callable[[], UUID] = uuid4,
        embeddings: EmbeddingSpace | None = None,
    ) -> None:
        self.embeddings = embeddings
        """The embedding model the store's vectors are of (None: not checked, a bare rig)."""
        self.cache = cache
        """Provider cache consulted for each provider call (None: providers always run)."""
        self._character = character
        self._agent_id = agent_id or agent_id_for(character.name)
        self.scope = scope
        self.events = events
        self.models = models
        self._database = database
        self.components = components or ComponentRegistry()
        self.settings = settings or RuntimeSettings()
        self.clock = clock
        self.ids = ids
        self._last_time: datetime | None = None
        self._rooms: dict[UUID, _RoomLock] = {}
        self._running = True
        self._open = asyncio.Event()
        self._open.set()
        self._log = logger.bind(agent=character.name)
        self._model_prefs = (character.model_provider, character.model_names())
        """What the agent's model calls ask for: its provider first, its model names."""
        self._builtin = (
            Provider(name="recent_messages", get=self._recent_messages_provider, position=-10),
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
        return self._running

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
        self, room_id: UUID, limit: int = 20, table_name: str | None = DEFAULT_TABLE
    ) -> list[Memory]:
        """The room's latest `limit` memories of this agent in `table_name` (by default the
        conversation, ``messages``: a plugin's facts or documents about the room are not lines
        of it; None: every table), oldest first."""
        query = MemoryQuery(
            agent_id=self._agent_id,
            room_id=room_id,
            table_name=table_name,
            order="desc",
            limit=limit,
        )
        rows = await self._database.get_memories(query)
        rows.reverse()
        return rows

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
        async with self._room(message.room_id):
            run = _Run(self, message)
            try:
                with _serving(self._caller(message)):
                    async with self.scope.create_scope("message"):
                        await run.before_model()
                        if run.responded:
                            await run.model_reply()
                        await run.after_model()
            except BaseException as exc:
                run.failed(exc)
                raise
            return run.result()

    def stream_message(self, message: Memory) -> ReplyStream:
        """Like `process_message`, yielding the reply text chunk by chunk as the model streams.

        Iterate the returned `ReplyStream` for the text chunks (action outputs appended to the
        reply come as a last chunk); its ``reply`` holds the `Reply` once it is exhausted. The
        chunks join to ``reply.text``: action directives (``ACTIONS: NAME``, ``[NAME]``) are
        held back and dropped, not streamed.
        """
        stream = ReplyStream()
        stream._chunks = self._stream(message, stream)
        return stream

    async def _stream(self, message: Memory, sink: ReplyStream) -> AsyncIterator[str]:
        # The call context is set around each step, never across a yield: the consumer may
        # resume this generator from another task (a web server does), so a context var set
        # here could not be reset there. Model calls still see who they serve (model:used).
        caller = self._caller(message)
        async with self._room(message.room_id):
            run = _Run(self, message)
            try:
                async with self.scope.create_scope("message"):
                    with _serving(caller):
                        await run.before_model()
                    if run.responded:
                        started = time.perf_counter()
                        raw = sent = ""
                        model_stage = tracing.stage(run.trace, "model")  # spans the yields below
                        model_stage.__enter__()
                        chunks = self.stream_model(TEXT_LARGE, run.prompt())
                        failure: BaseException | None = None
                        try:
                            while True:
                                with _serving(caller):
                                    try:
                                        chunk = await anext(chunks)
                                    except StopAsyncIteration:
                                        break
                                if chunk.text:
                                    raw += chunk.text
                                    ready = _streamable(raw)
                                    if len(ready) > len(sent) and ready.startswith(sent):
                                        yield ready[len(sent) :]
                                        sent = ready
                        except BaseException as exc:
                            failure = exc
                            raise
                        finally:
                            close = getattr(chunks, "aclose", None)
                            if close is not None:
                                await close()
                            model_stage.__exit__(
                                type(failure) if failure else None,
                                failure,
                                failure.__traceback__ if failure else None,
                            )
                        run.timings["model"] = time.perf_counter() - started
                        run.set_model_text(raw)
                        if len(run.text) > len(sent) and run.text.startswith(sent):
                            yield run.text[len(sent) :]
                    with _serving(caller):
                        await run.run_actions()
                    extra = run.append_action_text()
                    if extra:
                        yield extra
                    with _serving(caller):
                        await run.finish()
            except BaseException as exc:  # a model error partway, or the consumer stopped
                run.failed(exc)
                raise
            sink.reply = run.result()

    def _caller(self, message: Memory) -> CallContext:
        provider, names = self._model_prefs
        return CallContext(self._agent_id, message.room_id, message.id, provider, names)

    async def compose_state(self, message: Memory, include: Iterable[str] = ()) -> State:
        """State for `message` from every non-dynamic provider plus the dynamic ones named in
        `include`, run in parallel; failing or slow ones are skipped and listed."""
        wanted = set(include)
        providers = [
            p
            for p in (*self._builtin, *self.components.providers)
            if not p.dynamic or p.name in wanted
        ]
        state = State(
            values={
                "agent_id": str(self._agent_id),
                "agent_name": self._character.name,
                "room_id": str(message.room_id),
                "entity_id": str(message.entity_id),
            }
        )
        results = await asyncio.gather(*(self._run_provider(p, message, state) for p in providers))
        texts: list[str] = []
        for provider, outcome in sorted(
            zip(providers, results, strict=True), key=lambda pr: (pr[0].position, pr[0].name)
        ):
            if isinstance(outcome, str):
                state.skipped[provider.name] = outcome
                continue
            state.providers[provider.name] = outcome
            state.values.update(outcome.values)
            state.data[provider.name] = outcome.data
            if outcome.text and not provider.private:
                texts.append(outcome.text)
        state.text = "\n\n".join(texts)
        return state

    async def _run_provider(
        self, provider: Provider, message: Memory, state: State
    ) -> ProviderResult | str:
        timeout = (
            provider.timeout if provider.timeout is not None else self.settings.provider_timeout
        )
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                if self.cache is None:
                    result = await _provide(provider, message, state, self.components)
                else:
                    context = CacheContext(
                        agent_id=str(self._agent_id),
                        room_id=str(message.room_id),
                        entity_id=str(message.entity_id),
                        message_id=str(message.id),
                    )
                    result = await self.cache.get_or_compute(
                        provider.name,
                        context,
                        partial(_provide, provider, message, state, self.components),
                    )
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                self._log.warning(
                    "provider {} timed out after {}s; skipped", provider.name, timeout
                )
                return f"timed out after {timeout}s"
            self._log.opt(exception=exc).warning(
                "provider {} failed; skipped: {}", provider.name, exc
            )
            return f"{type(exc).__name__}: {exc}"
        if not isinstance(result, ProviderResult):
            self._log.warning("provider {} returned {!r}; skipped", provider.name, type(result))
            return f"returned {type(result).__name__}, not ProviderResult"
        return result

    async def _recent_messages_provider(self, message: Memory, state: State) -> ProviderResult:
        rows = await self.recent_memories(message.room_id, self.settings.history + 1)
        rows = [row for row in rows if row.id != message.id][-self.settings.history :]
        if not rows:
            return ProviderResult()
        lines = []
        for row in rows:
            who = self._character.name if row.entity_id == self._agent_id else "user"
            lines.append(f"{who}: {row.content.text}")
        return ProviderResult(
            text="# Recent conversation\n" + "\n".join(lines),
            values={"recent_message_count": len(rows)},
        )

    # ------------------------------------------------------------------ lifecycle

    async def stop(self, grace: float | None = 30.0) -> None:
        """Refuse new messages and wait for the ones in progress (up to `grace` seconds)."""
        self._running = False
        if not await self.drain(grace):
            self._log.warning("agent stopped with messages still in progress")

    def hold(self) -> None:
        """Let new messages wait (not fail) until `release`: hot reload swaps a plugin meanwhile."""
        self._open.clear()

    def release(self) -> None:
        """Let the messages held since `hold` in."""
        self._open.set()

    async def drain(self, grace: float | None = 30.0) -> bool:
        """Wait (up to `grace` seconds) for the messages in progress now; False on timeout.

        Hot reload uses it before tearing down a replaced plugin's old instance."""
        busy = [room.lock for room in self._rooms.values() if room.lock.locked()]
        if not busy:
            return True

        async def wait() -> None:
            for lock in busy:
                async with lock:
                    pass

        try:
            async with asyncio.timeout(grace):
                await wait()
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def _room(self, room_id: UUID) -> AsyncIterator[None]:
        """Hold the room's turn for one message; `AgentError` once the agent is stopped.

        Checked again after the wait: a message queued behind another of its room when `stop`
        was called must not start then (it would run while, or after, the agent's scope closes).
        """
        if not self._open.is_set():
            await self._open.wait()
        if not self._running:
            raise AgentError(f"agent {self._character.name} is stopped")
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _RoomLock()
        room.users += 1
        try:
            async with room.lock:
                if not self._running:
                    raise AgentError(
                        f"agent {self._character.name} was stopped while the message waited"
                    )
                yield
        finally:
            room.users -= 1
            if room.users == 0 and self._rooms.get(room_id) is room:
                del self._rooms[room_id]

    # ------------------------------------------------------------------ memory

    async def save_memory(self, memory: Memory, kind: EmbeddingKind = "passage") -> Memory:
        """Embed (when enabled and missing; as a `kind` text) and store `memory`; emit
        ``MEMORY_CREATED``. Vectors of another model than the store's (a fallback answered)
        are left out: the memory is stored without one."""
        if self.settings.embed and memory.embedding is None and memory.content.text:
            embedded = await self.use_model(
                TEXT_EMBEDDING, EmbeddingParams(text=memory.content.text, kind=kind)
            )
            if await self._storable(embedded, memory.table_name):
                memory = memory.model_copy(update={"embedding": embedded.vector})
        await self._database.create_memory(memory)
        await self.events.emit(
            MEMORY_CREATED,
            MemoryPayload(
                agent_id=self._agent_id,
                room_id=memory.room_id,
                entity_id=memory.entity_id,
                memory_id=memory.id,
                table_name=memory.table_name,
                memory=memory,
            ),
        )
        return memory

    async def _storable(self, embedded: EmbeddingResult, table: str) -> bool:
        space = self.embeddings
        if space is None:
            return True
        if not space.accept(embedded):
            return False
        try:
            await space.ensure(self._database, table)
        except EmbeddingModelChangedError as exc:
            self._log.error("{}; memory stored without its embedding", exc)
            return False
        return True


class _Run:
    """The state of one message going through the pipeline."""

    def __init__(self, runtime: AgentRuntime, message: Memory) -> None:
        self.rt = runtime
        self.message = message
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {"memory": 0.0}
        self.state = State()
        self.responded = False
        self.raw = ""
        self.text = ""
        self.requested: list[str] = []
        self.actions: list[ActionResult] = []
        self.evaluators: list[ActionResult] = []
        self.reply: Memory | None = None
        self.usable: list[Action] = []
        self.trace = tracing.start_message(
            runtime.name, runtime.agent_id, message.room_id, message.id
        )

    def _ctx(self) -> ActionContext:
        return ActionContext(
            runtime=self.rt,
            message=self.message,
            state=self.state,
            previous=list(self.actions),
            reply=self.reply,
            reply_text=self.text,
        )

    async def before_model(self) -> None:
        rt = self.rt
        message = self.message
        await rt.events.emit(
            MESSAGE_RECEIVED,
            MessagePayload(
                agent_id=rt.agent_id,
                room_id=message.room_id,
                entity_id=message.entity_id,
                message=message,
            ),
        )
        t = time.perf_counter()
        # embedded once, as what it is for: the search of relevant memories reuses the vector
        with tracing.stage(self.trace, "memory"):
            self.message = await rt.save_memory(self.message, kind="query")
        self.timings["memory"] += time.perf_counter() - t
        t = time.perf_counter()
        with tracing.stage(self.trace, "providers"):
            self.state = await rt.compose_state(self.message)
        self.timings["providers"] = time.perf_counter() - t
        self.responded = should_respond(
            rt.character, self.message, rt.agent_id, groups=rt.settings.respond_in_groups
        )
        if self.responded:
            self.usable = [a for a in rt.components.actions if await self._valid(a)]

    async def _valid(self, action: Action | Evaluator) -> bool:
        if action.validate is None:
            return True
        try:
            return bool(await _validate(action, self._ctx()))
        except Exception as exc:
            self.rt._log.opt(exception=exc).warning("validate of {} failed: {}", action.name, exc)
            return False

    def prompt(self) -> TextParams:
        character = self.rt.character
        template = character.templates.get(MESSAGE_TEMPLATE)
        if template:
            prompt = render_message_template(
                template, character, self.state, self.message, self.usable
            )
        else:
            prompt = build_prompt(character, self.state, self.message, self.usable)
        return TextParams(prompt=prompt, system=_system(self.rt.character))

    async def model_reply(self) -> None:
        t = time.perf_counter()
        with tracing.stage(self.trace, "model"):
            reply = await self.rt.use_model(TEXT_LARGE, self.prompt())
        self.timings["model"] = time.perf_counter() - t
        self.set_model_text(reply.text)

    def set_model_text(self, raw: str) -> None:
        self.raw = raw
        self.text, self.requested = parse_actions(raw)

    async def after_model(self) -> None:
        await self.run_actions()
        self.append_action_text()
        await self.finish()

    def append_action_text(self) -> str:
        """Append the actions' texts to the reply; returns what was appended."""
        extra = "\n".join(r.text for r in self.actions if r.success and r.text)
        if not extra:
            return ""
        if self.text:
            extra = "\n" + extra
        self.text += extra
        return extra

    async def run_actions(self) -> None:
        with tracing.stage(self.trace, "actions"):
            await self._run_actions()

    async def _run_actions(self) -> None:
        t = time.perf_counter()
        if self.responded:
            chosen: list[Action] = []
            for name in self.requested:
                action = self.rt.components.find_action(name)
                if action is None:
                    self.rt._log.info("model asked for unknown action {}", name)
                elif action in self.usable and action not in chosen:
                    chosen.append(action)
            text = self.message.content.text or ""
            chosen += [
                a for a in self.usable if a.keywords and a not in chosen and mentions(text, a)
            ]
            chosen += [a for a in self.usable if a.always and a not in chosen]
            for action in chosen[: self.rt.settings.max_actions]:
                self.actions.append(await self._run_action(action))
        self.timings["actions"] = time.perf_counter() - t

    async def _run_action(self, action: Action) -> ActionResult:
        rt = self.rt
        owner = rt.components.owner_of("action", action.name)
        started = _action_started(rt, self.message, action.name, owner)
        await rt.events.emit(ACTION_STARTED, started)
        timeout = action.timeout if action.timeout is not None else rt.settings.action_timeout
        t = time.perf_counter()
        result = await _guarded(action, self._ctx(), timeout, rt)
        if result is None:
            result = ActionResult(
                success=False,
                error="handler returned None",
                name=action.name,
                duration=time.perf_counter() - t,
            )
        completed = ActionCompletedPayload(
            **started.model_dump(),
            success=result.success,
            duration=result.duration or 0.0,
            error=result.error,
            text=result.text,
        )
        await rt.events.emit(ACTION_COMPLETED, completed)
        return result

    async def finish(self) -> None:
        rt = self.rt
        if self.responded:
            t = time.perf_counter()
            reply = Memory(
                id=rt.ids(),
                agent_id=rt.agent_id,
                entity_id=rt.agent_id,
                room_id=self.message.room_id,
                content=Content(
                    text=self.text,
                    in_reply_to=str(self.message.id),
                    actions=[r.name for r in self.actions],
                ),
                metadata=_fallback_metadata(call_context.get()),
                created_at=rt.now(),
            )
            with tracing.stage(self.trace, "memory"):
                self.reply = await rt.save_memory(reply)
            self.timings["memory"] += time.perf_counter() - t
        with tracing.stage(self.trace, "evaluators"):
            await self._run_evaluators()
        self.timings["total"] = time.perf_counter() - self.started
        if self.reply is not None:
            await rt.events.emit(
                MESSAGE_SENT,
                MessagePayload(
                    agent_id=rt.agent_id,
                    room_id=self.reply.room_id,
                    entity_id=rt.agent_id,
                    message=self.reply,
                    in_reply_to=self.message.id,
                    timings=dict(self.timings),
                ),
            )
        if self.trace is not None:
            self.trace.end(responded=self.responded)

    def failed(self, error: BaseException) -> None:
        """The pipeline raised `error`: the message's span ends with it."""
        if self.trace is not None:
            self.trace.end(error)

    async def _run_evaluators(self) -> None:
        rt = self.rt
        t = time.perf_counter()
        for evaluator in rt.components.evaluators:
            if not self.responded and not evaluator.always_run:
                continue
            if not await self._valid(evaluator):
                continue
            timeout = (
                evaluator.timeout
                if evaluator.timeout is not None
                else rt.settings.evaluator_timeout
            )
            outcome = await _guarded(evaluator, self._ctx(), timeout, rt)
            if outcome is not None:
                self.evaluators.append(outcome)
        self.timings["evaluators"] = time.perf_counter() - t

    def result(self) -> Reply:
        return Reply(
            agent_id=self.rt.agent_id,
            room_id=self.message.room_id,
            message_id=self.message.id,
            responded=self.responded,
            text=self.text if self.responded else "",
            reply=self.reply,
            actions=self.actions,
            evaluators=self.evaluators,
            skipped_providers=dict(self.state.skipped),
            timings=self.timings,
        )


def _fallback_metadata(caller: CallContext | None) -> dict[str, Any]:
    """The reply's mark of model calls a fallback answered: ``model_fallback`` (the reply's
    text model's, else the first), plus ``model_fallbacks`` listing all when there were more."""
    if caller is None or not caller.fallbacks:
        return {}
    marks = [mark.as_dict() for mark in caller.fallbacks]
    text = [mark for mark in marks if mark["model_type"] == TEXT_LARGE.name]
    metadata: dict[str, Any] = {"model_fallback": (text or marks)[0]}
    if len(marks) > 1:
        metadata["model_fallbacks"] = marks
    return metadata


@contextmanager
def _serving(caller: CallContext) -> Iterator[None]:
    """Model calls made inside are attributed to `caller` (``model:used`` carries it)."""
    token = call_context.set(caller)
    try:
        yield
    finally:
        call_context.reset(token)


async def _call(function: Callable[..., Any], blocking: bool, *args: Any) -> Any:
    """A component's callable: in a worker thread when declared blocking; awaited when async."""
    if blocking:
        return await asyncio.to_thread(function, *args)
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result


# The functions calling plugin components are sites for the loop monitor (host.blocking): a
# block is reported with the component their locals name. Owners are looked up then, not here.


def _kind(item: object) -> str:
    return "action" if isinstance(item, Action) else "evaluator"


def _owner(local: Mapping[str, Any], kind: str, name: str) -> str | None:
    components = local.get("components")
    if components is None:
        components = getattr(getattr(local.get("ctx"), "runtime", None), "components", None)
    owner = components.owner_of(kind, name) if components is not None else None
    return owner if isinstance(owner, str) else None


def _provider_site(local: Mapping[str, Any]) -> tuple[str, str | None] | None:
    provider = local.get("provider")
    if not isinstance(provider, Provider):
        return None
    return component("provider", provider.name, _owner(local, "provider", provider.name))


def _component_site(suffix: str) -> Callable[[Mapping[str, Any]], tuple[str, str | None] | None]:
    def describe(local: Mapping[str, Any]) -> tuple[str, str | None] | None:
        item = local.get("item")
        if not isinstance(item, Action | Evaluator):
            return None
        kind = _kind(item)
        return component(kind + suffix, item.name, _owner(local, kind, item.name))

    return describe


@component_site(_provider_site)
async def _provide(
    provider: Provider, message: Memory, state: State, components: ComponentRegistry
) -> ProviderResult:
    result: ProviderResult = await _call(provider.get, provider.blocking, message, state)
    return result


@component_site(_component_site(" validate"))
async def _validate(item: Action | Evaluator, ctx: ActionContext) -> bool:
    assert item.validate is not None
    return bool(await _call(item.validate, item.blocking, ctx))


@component_site(_component_site(""))
async def _guarded(
    item: Action | Evaluator,
    ctx: ActionContext,
    seconds: float,
    rt: AgentRuntime,
) -> ActionResult | None:
    """Run an action/evaluator handler; failures and timeouts become a failed `ActionResult`."""
    name = item.name
    started = time.perf_counter()
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            outcome = await _call(item.handler, item.blocking, ctx)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and deadline.expired():
            rt._log.warning("{} timed out after {}s", name, seconds)
            outcome = ActionResult(success=False, error=f"timed out after {seconds}s")
        else:  # its own error, a TimeoutError of its own included
            rt._log.opt(exception=exc).warning("{} failed: {}", name, exc)
            error = scrub(f"{type(exc).__name__}: {exc}")  # the reply carries it out
            outcome = ActionResult(success=False, error=error)
    if outcome is None:
        return None
    if not isinstance(outcome, ActionResult):
        outcome = ActionResult(
            success=False, error=f"returned {type(outcome).__name__}, not ActionResult"
        )
    return outcome.model_copy(update={"name": name, "duration": time.perf_counter() - started})


def _action_started(
    rt: AgentRuntime, message: Memory, name: str, owner: str | None
) -> ActionStartedPayload:
    return ActionStartedPayload(
        agent_id=rt.agent_id,
        room_id=message.room_id,
        entity_id=message.entity_id,
        message_id=message.id,
        action=name,
        plugin=owner,
    )
