"""Replaying an agent's recorded conversation with the recorded model outputs.

`replay_conversation` feeds every recorded ``message:received`` of an agent, in order, to a
fresh runtime whose models are `RecordedModels`: each model call is answered with the output
recorded for that message and model type instead of calling a model, so the run is
deterministic. Whatever differs from the recording is reported as a `Divergence`: the reply
text, whether the agent replied at all, a model call the recording lacks (or a recorded one never
made), params differing from the recorded ones. An empty report is a regression test made from
production history. `replay_agent` (``agenthost events replay``) adds the state check of
`host.eventstore.rebuild` and assembles the runtime from the configured host.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, get_args
from uuid import UUID, uuid4

from pydantic import BaseModel, TypeAdapter

from contracts.agent import Reply
from contracts.errors import AgentHostError
from contracts.events import EVENTS, EventBusProtocol
from contracts.eventstore import DomainEvent, EventStore, EventStoreError
from contracts.memory import Memory
from contracts.models import ModelError, ModelParams, ModelRuntime, ModelType, TextChunk
from contracts.plugin import Plugin
from contracts.storage import DATABASE, DatabaseAdapter, LocalFileSettings
from host.secrets import scrub_data

from .rebuild import RoomDiff, compare_room, fold_memories, memory_id_of, memory_tables
from .recording import payload_data
from .replay_store import ReplayStore

if TYPE_CHECKING:
    from contracts.config import HostConfig
    from host.app import Host
    from host.components import ComponentRegistry

__all__ = [
    "Divergence",
    "RecordedCall",
    "RecordedIds",
    "RecordedModels",
    "ReplayClock",
    "ReplayDivergenceError",
    "ReplayError",
    "ReplayParts",
    "ReplayReport",
    "host_runtime_factory",
    "replay_agent",
    "replay_conversation",
]

P = TypeVar("P", bound=ModelParams)
R = TypeVar("R")

LIVE_BY_DEFAULT = ("text_embedding",)
"""Model types replay calls live when their output was not recorded (deterministic locally)."""
_TEXT_TYPES = ("text_large", "text_small")


class ReplayError(AgentHostError):
    """A replay that cannot run: a plugin it must build again on its own store fails to."""


class ReplayDivergenceError(ModelError):
    """A model call during replay that the recording cannot answer."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """One way the replay differed from the recording."""

    message_id: UUID | None
    kind: str
    """``reply``, ``responded``, ``model call``, ``unused recording``, ``model params``,
    ``error``, ``state``."""
    detail: str


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A recorded successful model call: its type, params and output as JSON (None if unknown)."""

    model_type: str
    params: dict[str, Any] | None
    output: dict[str, Any] | None
    position: int | None = None


class Processor(Protocol):
    """What replay drives: an agent runtime's `process_message`."""

    async def process_message(self, message: Memory) -> Reply: ...


class ReplayClock:
    """The runtime clock during a replay: just after the recorded time of the message being
    replayed (the runtime steps it by 1 µs per memory), so replayed replies sort between the
    recorded messages as the originals did and the prompts' histories come out the same."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class RecordedIds:
    """The runtime's id factory during a replay: the ids of the memories the recorded message
    being replayed created, in order (its reply's), then new ones. A replayed memory is the
    recorded one: a deletion recorded later in the conversation finds it, and it is stored
    with its recorded time (`times`)."""

    def __init__(self, events: Sequence[DomainEvent]) -> None:
        self._created: dict[UUID, list[UUID]] = defaultdict(list)
        self.times: dict[UUID, datetime] = {}
        """When each memory the trail records was created."""
        for e in events:
            if e.event_type != "memory:created":
                continue
            data = e.data.get("memory")
            memory_id = memory_id_of(e.data)
            if memory_id is None:
                continue
            created = data.get("created_at") if isinstance(data, dict) else None
            if isinstance(created, str):
                self.times[memory_id] = datetime.fromisoformat(created)
            if e.correlation_id not in (None, memory_id):
                self._created[e.correlation_id].append(memory_id)
        self._left: deque[UUID] = deque()

    def begin(self, message_id: UUID) -> None:
        """Give from now on the ids recorded for `message_id`'s memories."""
        self._left = deque(self._created.get(message_id, ()))

    def __call__(self) -> UUID:
        return self._left.popleft() if self._left else uuid4()


@dataclass(frozen=True, slots=True)
class ReplayParts:
    """What a replay runtime must use: the recorded models, the replay clock, the tables the
    recorded conversation wrote memories to (`ReplayStore` reads them from the replay's own
    store), the runtime's ids (`RecordedIds`), and the memories deleted outside the replayed
    messages (over HTTP, from the console) before each of them, by its id: the replay's store
    deletes them before that message, as the recorded store had; the memories each message
    must not see (`unseen`); and the recorded times of the memories (`times`)."""

    models: ModelRuntime
    clock: Callable[[], datetime]
    tables: frozenset[str] = frozenset()
    ids: Callable[[], UUID] = uuid4
    deleted: Mapping[UUID, tuple[UUID, ...]] = field(default_factory=dict)
    unseen: Mapping[UUID, frozenset[UUID]] = field(default_factory=dict)
    """By replayed message id: the memories of messages replayed before it that the recording
    stored after it (conversations answered at the same time), which its prompt did not see."""
    times: Mapping[UUID, datetime] = field(default_factory=dict)
    """When the recording created each memory it stored, by id (`RecordedIds.times`)."""


RuntimeFactory = Callable[[ReplayParts], contextlib.AbstractAsyncContextManager[Processor]]
"""Builds a fresh agent runtime from `ReplayParts` (a clean memory store, no audit)."""


class RecordedModels:
    """A `ModelRuntime` answering from a recording, message by message.

    `begin` selects the message whose calls answer next; each ``use_model`` takes that message's
    next recorded call of the same model type. Types in `live` whose output was not recorded go
    to `fallback` (local embeddings); anything else unanswerable raises `ReplayDivergenceError`
    and is reported."""

    def __init__(
        self,
        calls: dict[UUID, list[RecordedCall]],
        *,
        replies: dict[UUID, str] | None = None,
        fallback: ModelRuntime | None = None,
        live: Sequence[str] = LIVE_BY_DEFAULT,
    ) -> None:
        self._calls = calls
        self._replies = replies or {}
        self.fallback = fallback
        self.live = tuple(live)
        self.divergences: list[Divergence] = []
        self.substituted = 0
        """Calls answered from the recording."""
        self.approximated = 0
        """Text calls answered with the recorded reply text (no output in the recording)."""
        self.live_calls = 0
        self._message: UUID | None = None
        self._queues: dict[str, deque[RecordedCall]] = {}
        self._made: list[tuple[str, dict[str, Any]]] = []
        """The current message's calls of `live` types: (type, params as recorded)."""

    def begin(self, message_id: UUID) -> None:
        """Answer from now on with the calls recorded for `message_id`."""
        self.finish()
        self._message = message_id
        self._made = []
        self._queues = defaultdict(deque)
        for call in self._calls.get(message_id, []):
            self._queues[call.model_type].append(call)

    def finish(self) -> None:
        """Report recorded calls of the current message that the replay never made.

        A recorded `live` type call with the params of one the replay made is a repeat, not
        a missed call: the recall and knowledge providers embed the message again (same text,
        ``query``) to learn the model, on their first message only and through the host's
        model runtime, not the replay's, so the replay does not see them (and a replay on a
        host whose plugins have learned it makes none)."""
        for name, left in self._queues.items():
            for call in left:
                if name in self.live and (name, call.params) in self._made:
                    continue
                self.divergences.append(
                    Divergence(self._message, "unused recording", f"recorded {name} call not made")
                )
        self._queues = {}

    async def use_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> R:
        name = model_type.name
        if name in self.live:
            self._made.append((name, scrub_data(payload_data(params))))
        queue = self._queues.get(name)
        call = queue.popleft() if queue else None
        output = call.output if call is not None else None
        if call is None or output is None or not _in_full(model_type, output):
            if self.fallback is not None and name in self.live:
                self.live_calls += 1
                return await self.fallback.use_model(model_type, params, provider=provider)
            if name in _TEXT_TYPES and self._message in self._replies and queue is not None:
                self.approximated += 1
                self._check_params(name, call, params)
                return _result(model_type, {"text": self._replies[self._message]})
            if call is None:
                self.divergences.append(
                    Divergence(self._message, "model call", f"{name} call not in the recording")
                )
                raise ReplayDivergenceError(f"replay: no recorded {name} call for this message")
            self.divergences.append(
                Divergence(self._message, "model call", f"{name} output was not recorded")
            )
            raise ReplayDivergenceError(f"replay: the recorded {name} call has no output")
        self._check_params(name, call, params)
        self.substituted += 1
        return _result(model_type, output)

    def _check_params(self, name: str, call: RecordedCall | None, params: object) -> None:
        if call is None or call.params is None:
            return
        actual = scrub_data(payload_data(params))  # as recorded: secrets masked
        if actual != call.params:
            changed = sorted(
                k for k in set(actual) | set(call.params) if actual.get(k) != call.params.get(k)
            )
            self.divergences.append(
                Divergence(self._message, "model params", f"{name} params differ in {changed}")
            )

    async def stream_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> AsyncIterator[TextChunk]:
        result = await self.use_model(model_type, params, provider=provider)
        yield TextChunk(text=str(getattr(result, "text", "")), finish_reason="stop")


def _in_full(model_type: ModelType[Any, Any], output: dict[str, Any]) -> bool:
    """Whether `output` was recorded with every required field of the result (the audit trail
    leaves embedding vectors out unless ``record_embeddings``; older trails stored them as
    null)."""
    result_type: Any = model_type.result
    if not (isinstance(result_type, type) and issubclass(result_type, BaseModel)):
        return True
    return all(
        name in output and (output[name] is not None or _admits_none(info.annotation))
        for name, info in result_type.model_fields.items()
        if info.is_required()
    )


def _admits_none(annotation: Any) -> bool:
    return annotation is Any or annotation is None or type(None) in get_args(annotation)


def _result(model_type: ModelType[Any, R], output: dict[str, Any]) -> R:
    result_type: Any = model_type.result
    if isinstance(result_type, type) and issubclass(result_type, BaseModel):
        return result_type.model_validate(output)  # type: ignore[return-value]
    return TypeAdapter(result_type).validate_python(output)  # type: ignore[no-any-return]


@dataclass
class ReplayReport:
    """What a replay found: per-room state diffs and the re-run's divergences."""

    aggregate: str
    messages: int = 0
    rooms: dict[UUID, RoomDiff] = field(default_factory=dict)
    divergences: list[Divergence] = field(default_factory=list)
    substituted: int = 0
    approximated: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences and all(d.ok for d in self.rooms.values())

    def lines(self) -> list[str]:
        out = [f"agent {self.aggregate}: {self.messages} recorded message(s) replayed"]
        for room, diff in self.rooms.items():
            out.append(f"room {room}: {diff.summary()}")
        if self.substituted or self.approximated:
            out.append(
                f"model calls answered from the recording: {self.substituted}"
                + (f" (+{self.approximated} from recorded replies)" if self.approximated else "")
            )
        out += self.notes
        for d in self.divergences:
            out.append(f"DIVERGENCE [{d.kind}] message {d.message_id}: {d.detail}")
        out.append("replay matches the recording" if self.ok else "replay DIVERGES")
        return out


def _message_of(event: DomainEvent) -> Memory | None:
    inner = event.data.get("message")
    return Memory.model_validate(inner) if isinstance(inner, dict) else None


def _calls_by_message(events: Sequence[DomainEvent]) -> dict[UUID, list[RecordedCall]]:
    calls: dict[UUID, list[RecordedCall]] = defaultdict(list)
    for e in events:
        if e.event_type != "model:used" or e.correlation_id is None or e.data.get("error"):
            continue
        params, output = e.data.get("params"), e.data.get("output")
        calls[e.correlation_id].append(
            RecordedCall(
                model_type=str(e.data.get("model_type")),
                params=params if isinstance(params, dict) else None,
                output=output if isinstance(output, dict) else None,
                position=e.position,
            )
        )
    return calls


def _recorded_messages(
    events: Sequence[DomainEvent], room_id: UUID | None
) -> tuple[list[Memory], dict[UUID, str]]:
    """(the messages received, in order; the recorded reply text by the id it answers), of
    `room_id` or of every room."""
    incoming: list[Memory] = []
    replies: dict[UUID, str] = {}
    for e in events:
        message = _message_of(e)
        if message is None or (room_id is not None and message.room_id != room_id):
            continue
        if e.event_type == "message:received":
            incoming.append(message)
        elif e.event_type == "message:sent":
            target = e.data.get("in_reply_to") or getattr(message.content, "in_reply_to", None)
            if target is not None:
                replies[UUID(str(target))] = message.content.text
    return incoming, replies


def _places(events: Sequence[DomainEvent]) -> dict[UUID, int]:
    """Where each received message stood in the recording (an index into `events`): where it
    was stored (its ``memory:created``; its prompt was made right after), else where it was
    received."""
    received: dict[UUID, int] = {}
    stored: dict[UUID, int] = {}
    for at, e in enumerate(events):
        if e.event_type == "message:received":
            message = _message_of(e)
            if message is not None:
                received.setdefault(message.id, at)
        elif (
            e.event_type == "memory:created"
            and e.correlation_id is not None
            and memory_id_of(e.data) == e.correlation_id
        ):
            stored.setdefault(e.correlation_id, at)
    return received | stored


def _deleted_before(
    events: Sequence[DomainEvent], replayed: Sequence[Memory], places: Mapping[UUID, int]
) -> dict[UUID, tuple[UUID, ...]]:
    """The memories deleted by no replayed message (over HTTP, from the console), by the id of
    the first replayed message whose place (`places`) is after their deletion."""
    ids = {m.id for m in replayed}
    deletions = [
        (at, memory_id)
        for at, e in enumerate(events)
        if e.event_type == "memory:deleted"
        and e.correlation_id not in ids
        and (memory_id := memory_id_of(e.data)) is not None
    ]
    before: dict[UUID, tuple[UUID, ...]] = {}
    taken = 0
    for message in replayed:
        place = places[message.id]
        first = taken
        while taken < len(deletions) and deletions[taken][0] < place:
            taken += 1
        if taken > first:
            before[message.id] = tuple(memory for _, memory in deletions[first:taken])
    return before


def _unseen(
    events: Sequence[DomainEvent], replayed: Sequence[Memory], places: Mapping[UUID, int]
) -> dict[UUID, frozenset[UUID]]:
    """By replayed message: the memories that messages replayed before it stored, in the
    recording, after its place (while it was answered: messages of other rooms answered at the
    same time). Its prompt did not see them; one at a time, the replay has them."""
    stored: dict[UUID, list[tuple[int, UUID]]] = defaultdict(list)  # by message: (at, memory)
    for at, e in enumerate(events):
        if e.event_type == "memory:created" and e.correlation_id is not None:
            memory_id = memory_id_of(e.data)
            if memory_id is not None:
                stored[e.correlation_id].append((at, memory_id))
    unseen: dict[UUID, frozenset[UUID]] = {}
    open_: list[UUID] = []  # messages replayed so far that may have stored after this place
    for message in replayed:
        place = places[message.id]
        open_ = [m for m in open_ if stored[m][-1][0] > place]
        later = frozenset(memory for m in open_ for at, memory in stored[m] if at > place)
        if later:
            unseen[message.id] = later
        if stored.get(message.id):
            open_.append(message.id)
    return unseen


def _compare(message_id: UUID, reply: Reply, expected: str | None) -> Divergence | None:
    """How the replayed `reply` differs from the `expected` (recorded) reply text, if it does."""
    if expected is None and reply.responded:
        return Divergence(message_id, "responded", f"replied {reply.text!r}, none recorded")
    if expected is not None and not reply.responded:
        return Divergence(message_id, "responded", f"no reply; recorded {expected!r}")
    if expected is not None and reply.text != expected:
        return Divergence(message_id, "reply", f"{reply.text!r} != recorded {expected!r}")
    return None


async def replay_conversation(
    store: EventStore,
    aggregate_id: str,
    make_runtime: RuntimeFactory,
    *,
    room_id: UUID | None = None,
    fallback: ModelRuntime | None = None,
    live: Sequence[str] = LIVE_BY_DEFAULT,
) -> ReplayReport:
    """Re-run agent `aggregate_id`'s recorded messages (of `room_id`, or all) through a fresh
    runtime with recorded model outputs; report every divergence from the recorded replies.

    With `room_id`, the agent's messages of other rooms up to the room's last one are re-run
    too, unreported: a provider searching beyond the room (``recall``'s ``entity`` and
    ``agent`` scopes) finds what they left, as the recorded messages did."""
    events = [e async for e in store.iter_events(aggregate_id)]
    report = ReplayReport(aggregate=aggregate_id)
    incoming, replies = _recorded_messages(events, None)
    places = _places(events)
    reported = {m.id for m in incoming if room_id is None or m.room_id == room_id}
    last = max((at for at, m in enumerate(incoming) if m.id in reported), default=-1)
    incoming = incoming[: last + 1]
    calls = _calls_by_message(events)
    if any(c.output is None for cs in calls.values() for c in cs if c.model_type in _TEXT_TYPES):
        report.notes.append(
            "note: the trail has no model outputs (model:used without 'output'); text model"
            " calls are answered with the recorded reply text"
        )
    models = RecordedModels(calls, replies=replies, fallback=fallback, live=live)
    clock = ReplayClock()
    ids = RecordedIds(events)
    parts = ReplayParts(
        models,
        clock,
        memory_tables(events),
        ids,
        _deleted_before(events, incoming, places),
        _unseen(events, incoming, places),
        ids.times,
    )
    unreported = [0, 0]  # calls answered for the other rooms' messages
    async with make_runtime(parts) as runtime:
        for message in incoming:
            models.begin(message.id)
            ids.begin(message.id)
            clock.now = message.created_at + timedelta(microseconds=1)
            counts = (models.substituted, models.approximated)
            divergence = await _replay_one(runtime, message, replies.get(message.id))
            if message.id not in reported:
                unreported[0] += models.substituted - counts[0]
                unreported[1] += models.approximated - counts[1]
                continue
            report.messages += 1
            if divergence is not None:
                report.divergences.append(divergence)
        models.finish()
    report.divergences[:0] = [d for d in models.divergences if d.message_id in reported]
    report.substituted = models.substituted - unreported[0]
    report.approximated = models.approximated - unreported[1]
    return report


async def _replay_one(
    runtime: Processor, message: Memory, expected: str | None
) -> Divergence | None:
    """Re-run `message`; how its reply differs from the recorded one (`expected`), if it does."""
    try:
        reply = await runtime.process_message(message)
    except Exception as exc:
        return Divergence(message.id, "error", f"{type(exc).__name__}: {exc}")
    return _compare(message.id, reply, expected)


async def check_rooms(
    store: EventStore,
    aggregate_id: str,
    database: DatabaseAdapter,
    room_id: UUID | None = None,
) -> dict[UUID, RoomDiff]:
    """Per room of the agent: its memories rebuilt from events vs the memory store's."""
    events = [e async for e in store.iter_events(aggregate_id)]
    rebuilt = fold_memories(events)
    rooms = sorted({m.room_id for m in rebuilt} | ({room_id} if room_id else set()))
    agent = UUID(aggregate_id)
    out: dict[UUID, RoomDiff] = {}
    for room in rooms:
        if room_id is not None and room != room_id:
            continue
        mine = [m for m in rebuilt if m.room_id == room]
        out[room] = await compare_room(database, agent, room, mine)
    return out


async def replay_agent(
    store: EventStore,
    aggregate_id: str,
    *,
    room_id: UUID | None = None,
    rerun: bool = True,
    data_dir: Path | None = None,
    config: HostConfig | None = None,
) -> ReplayReport:
    """``agenthost events replay``: check the rooms' state against the configured memory store,
    then re-run the conversation on a host built from `config` (default: the configuration
    `load_config` finds; audit off, recorded model outputs, `ReplayStore`)."""
    from contracts.storage import DATABASE
    from host.app import Host
    from host.config import load_config

    try:
        UUID(aggregate_id)
    except ValueError:
        raise EventStoreError(f"aggregate {aggregate_id!r} is not an agent id") from None
    if await store.get_version(aggregate_id) == 0:
        raise EventStoreError(f"no events recorded for aggregate {aggregate_id!r}")
    if config is None:
        config = load_config().config
    if data_dir is not None:
        config = config.model_copy(update={"data_dir": data_dir})
    plugins = config.plugins.model_copy(
        update={"disabled": [*config.plugins.disabled, "audit"]}  # the replay is not audited
    )
    http = config.http.model_copy(update={"enabled": False})
    host = Host(config.model_copy(update={"plugins": plugins, "http": http}))
    await host.start(agents=False)
    try:
        database = await host.container.aresolve(DATABASE)
        rooms = await check_rooms(store, aggregate_id, database, room_id)
        if not rerun:
            report = ReplayReport(aggregate=aggregate_id, rooms=rooms)
            return report
        factory = host_runtime_factory(host, store, aggregate_id)
        report = await replay_conversation(
            store, aggregate_id, factory, room_id=room_id, fallback=host.models
        )
        report.rooms = rooms
        return report
    finally:
        await host.stop()


def host_runtime_factory(host: Host, store: EventStore, aggregate_id: str) -> RuntimeFactory:
    """Runtimes built from `host`'s plugins (actions, providers, evaluators) with a private bus
    (so the replay is not audited) and a store of their own (`ReplayStore`), for
    `replay_conversation`: what ``agenthost events replay`` and the console's "Replay this
    room" run on a started host."""

    @contextlib.asynccontextmanager
    async def make(parts: ReplayParts) -> AsyncIterator[Processor]:
        from host.characters import default_character, load_characters
        from host.events import EventBus
        from host.plugin_lookup import open_service
        from host.runtime import AgentRuntime

        name = None
        async for e in store.iter_events(aggregate_id):
            if e.event_type == "agent:started":
                name = str(e.data.get("name"))
                break
        characters = {
            c.name: c for c in load_characters(host.config.agents.characters_dir).values()
        }
        default = default_character()
        character = characters.get(name or "", default if name in (None, default.name) else None)
        if character is None:
            from contracts.agent import Character

            character = Character(name=name or "replay")
        with tempfile.TemporaryDirectory(prefix="agenthost-replay-") as directory:
            async with open_service(_scratch(host, Path(directory)), DATABASE) as fresh:
                live = await host.container.aresolve(DATABASE)
                database = ReplayStore(fresh, live, parts.tables, parts.clock, parts.times)
                events = EventBus()
                async with _components_on(host, database, events) as components:
                    scope = host.container.create_scope("agent")
                    try:
                        runtime = AgentRuntime(
                            character=character,
                            scope=scope,
                            events=events,
                            models=parts.models,
                            database=database,
                            components=components,
                            settings=host.config.agents,  # the history the prompts had
                            agent_id=UUID(aggregate_id),
                            clock=parts.clock,
                            ids=parts.ids,
                        )
                        try:
                            yield _Replaying(runtime, database, parts)
                        finally:
                            await runtime.stop(5.0)
                    finally:
                        await scope.aclose()  # also when the runtime failed to build or stop

    return make


def _scratch(host: Host, directory: Path) -> Plugin:
    """The store plugin of the replay's own store: the configured store's on a file in
    `directory` when it keeps its store in a local file (the SQLite store: equal scores rank as
    they did when recorded; a configured ``path`` outside `directory`, absolute or climbing out,
    is replaced: never the configured file), else ``inmemory``. Constructed through its entry
    point, as any store."""
    from host.plugin_lookup import PluginNotFoundError, construct, plugin_settings

    chosen = [b.owner for b in host.container.bindings() if b.token == DATABASE.name and b.chosen]
    name = chosen[0] if chosen else None
    if name is None:
        return construct("inmemory", host.config)
    config = host.config.model_copy(update={"data_dir": directory})
    try:
        settings = plugin_settings(name, config)
    except PluginNotFoundError:
        settings = None
    if isinstance(settings, LocalFileSettings) and not _inside(settings, directory):
        if "path" not in type(settings).model_fields:
            settings = None
        else:
            section = {**config.plugins.section(name), "path": "replay.sqlite3"}
            plugins = config.plugins.model_copy(update={name: section})
            config = config.model_copy(update={"plugins": plugins})
            settings = plugin_settings(name, config)
    if isinstance(settings, LocalFileSettings) and _inside(settings, directory):
        return construct(name, config)
    return construct("inmemory", host.config)


def _inside(settings: LocalFileSettings, directory: Path) -> bool:
    """Whether `settings` put their file in `directory` (a data dir)."""
    return settings.resolve_path(directory).resolve().is_relative_to(directory.resolve())


@dataclass(frozen=True, slots=True)
class _Replaying:
    """`runtime` on `database` as the recording stood at each message: what was deleted before
    it deleted from `database` first, what it could not see hidden (`ReplayParts`)."""

    runtime: Processor
    database: ReplayStore
    parts: ReplayParts

    async def process_message(self, message: Memory) -> Reply:
        gone = self.parts.deleted.get(message.id)
        if gone:
            await self.database.delete_memories_batch(gone)
        self.database.hidden = self.parts.unseen.get(message.id, frozenset())
        return await self.runtime.process_message(message)


@contextlib.asynccontextmanager
async def _components_on(
    host: Host, database: ReplayStore, events: EventBusProtocol
) -> AsyncIterator[ComponentRegistry]:
    """`host`'s actions, providers and evaluators, those of each plugin taking the memory store
    from a new instance of it on `database` and the replay's bus `events`, set up for the
    replay and torn down after it (so ``recall`` searches the conversation as it stood then,
    not the rest of it the configured store holds now, and a plugin's subscriptions stay on
    the replay's bus). A plugin that cannot be built or set up so fails the replay, named."""
    from host.components import ComponentRegistry

    registry = ComponentRegistry()
    built: list[tuple[str, Plugin]] = []
    extras: dict[Any, object] = {
        DATABASE: database,
        DatabaseAdapter: database,
        EVENTS: events,
        EventBusProtocol: events,
        type(events): events,
    }
    try:
        for name, loaded in host.loader.loaded.items():
            instance = loaded.instance
            if not (instance.actions() or instance.providers() or instance.evaluators()):
                continue
            factory = loaded.discovered.factory or type(instance)
            if any(t.name == DATABASE.name for t in host.container.requirements(factory)):
                try:
                    instance = await host.loader.construct_again(name, extras)
                except Exception as exc:  # a plugin's own code: said, naming it, masked
                    said = host.loader.scrub(f"{type(exc).__name__}: {exc}", loaded.settings)
                    raise ReplayError(
                        f"plugin {name} takes the memory store and could not be built again on"
                        f" the replay's store ({type(database.inner).__name__}, backend"
                        f" {database.backend!r}): {said}"
                    ) from exc
                built.append((name, instance))
            registry.add(
                name,
                actions=instance.actions(),
                providers=instance.providers(),
                evaluators=instance.evaluators(),
            )
        yield registry
    finally:
        for name, instance in reversed(built):
            await host.loader.release_again(name, instance)
