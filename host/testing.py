"""The test kit for plugin authors: a real agent runtime in a few lines, offline, deterministic.

::

    async with AgentTestBuilder().with_character(name="TestBot").with_plugin(WeatherPlugin) \\
            .mock_provider("time", "It is 2 PM").mock_model(TEXT_LARGE, "Hello back!") as rt:
        with rt.capture_events() as events:
            reply = await rt.process_message("Hello!")
        assert reply.text == "Hello back!"
        assert events.of(MESSAGE_RECEIVED)[0].message.content.text == "Hello!"

`TestRuntime` is an `AgentRuntime`: the same pipeline, the same events and the same provider
cache as in the host, over an in-memory (or SQLite, or PostgreSQL) store, with the classic ELIZA
model and local embeddings answering whatever is not mocked. Time and ids come from a step
clock and a counter unless you pass your own, so two runs produce the same memories. The pytest
plugin (`host.pytest_plugin`) turns this into fixtures.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from loguru import logger
from pydantic import BaseModel

from contracts.agent import Character, Provider, ProviderResult, Reply
from contracts.config import HostConfig
from contracts.events import EventPayload
from contracts.memory import Memory, MemoryQuery
from contracts.models import (
    TEXT_EMBEDDING,
    EmbeddingParams,
    EmbeddingResult,
    ModelHandler,
    ModelType,
    TextResult,
)
from contracts.plugin import Plugin
from host.agents import AgentManager
from host.assembly import Engine, agent_manager, assemble, load_named
from host.characters import character_from_mapping, default_character
from host.config import LoadedConfig
from host.discovery import Discovered
from host.events import EventBus
from host.loader import Loader
from host.models import ModelRegistry
from host.runtime import AgentRuntime
from host.test_doubles import (
    EventRecorder,
    ManualClock,
    MockModel,
    SequentialIds,
    StepClock,
)

__all__ = [
    "OFFLINE_PLUGINS",
    "AgentTestBuilder",
    "EventRecorder",
    "ManualClock",
    "MockModel",
    "OfflineHosts",
    "SequentialIds",
    "StepClock",
    "TestRuntime",
    "offline_config",
]

if TYPE_CHECKING:
    from host.app import Host

P = TypeVar("P", bound=EventPayload)
MOCK_PRIORITY = 1_000
"""Mock model handlers outrank every real provider."""
DEFAULT_MODELS = "eliza"
"""The plugin answering what is not mocked (and embedding what a mock does not): found, like
the stores, through its ``agenthost.plugins`` entry point."""
Embedder = Callable[[EmbeddingParams], Awaitable[EmbeddingResult]]

Reply_ = str | BaseModel | Callable[[Any], Any]


class TestRuntime(AgentRuntime):
    """An `AgentRuntime` with test helpers; built by `AgentTestBuilder`."""

    __test__ = False  # not a pytest test class
    is_test = True

    def __init__(
        self, *, registry: ModelRegistry, embedder: Embedder | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.embedder = embedder
        """The default model plugin's embedding handler (mocked embeddings use it)."""
        self.mock_models: dict[str, MockModel] = {}
        self.room_id = UUID(int=(0xA6E7 << 112) | 0xF00D)
        """The room `process_message` uses for plain text."""
        self.user_id = UUID(int=(0xA6E7 << 112) | 0xBEEF)
        """The sender `process_message` uses for plain text."""

    async def process_message(
        self,
        message: Memory | str,
        *,
        room_id: UUID | None = None,
        entity_id: UUID | None = None,
    ) -> Reply:
        """Process a message; plain text becomes a message from `user_id` in `room_id`."""
        if isinstance(message, str):
            message = self.new_message(
                message, room_id=room_id or self.room_id, entity_id=entity_id or self.user_id
            )
        return await super().process_message(message)

    def set_mock_provider(self, name: str, result: str | ProviderResult) -> None:
        """Provide `result` as the state of provider `name` (replacing any provider so named)."""
        value = result if isinstance(result, ProviderResult) else ProviderResult(text=result)

        async def get(message: Memory, state: Any) -> ProviderResult:
            return value

        owner = f"mock:{name}"
        self.components.unregister_plugin(owner)
        existing = self.components.owner_of("provider", name)
        if existing is not None:
            self.components.unregister_plugin(existing)
        self.components.add(owner, providers=[Provider(name, get)])

    def set_mock_model(
        self, model_type: ModelType[Any, Any], replies: Reply_ | Sequence[Reply_]
    ) -> MockModel:
        """Answer `model_type` calls from `replies`; returns the mock (its ``calls``)."""
        owner = f"mock:{model_type.name}"
        self.registry.unregister_owner(owner)
        mock = MockModel(model_type, replies, embedder=self.embedder)
        stream = mock.stream if model_type.result is TextResult else None
        handler = ModelHandler(model_type, mock, stream, priority=MOCK_PRIORITY, provider="mock")
        self.registry.register(handler, owner=owner)
        self.mock_models[model_type.name] = mock
        return mock

    def capture_events(self) -> EventRecorder:
        """Record events from now on (use as ``with rt.capture_events() as events:``)."""
        assert isinstance(self.events, EventBus)
        return EventRecorder(self.events)

    async def clear_all_memories(self) -> int:
        """Delete every memory of this agent; how many."""
        rows = await self.database.get_memories(
            MemoryQuery(agent_id=self.agent_id, with_embeddings=False)
        )
        return await self.database.delete_memories_batch([m.id for m in rows])


class AgentTestBuilder:
    """Builds a `TestRuntime` step by step; ``await build()`` or ``async with``."""

    def __init__(self) -> None:
        self._character: dict[str, Any] = {}
        self._plugins: list[type[Plugin] | Plugin] = []
        self._providers: dict[str, str | ProviderResult] = {}
        self._models: list[tuple[ModelType[Any, Any], Any]] = []
        self._database = "inmemory"
        self._config: dict[str, Any] = {}
        self._clock: Callable[[], datetime] = StepClock()
        self._ids: Callable[[], UUID] = SequentialIds()
        self._cache_clock: Callable[[], float] = ManualClock()
        self._cleanup: list[Callable[[], Awaitable[None]]] = []
        self._runtime: TestRuntime | None = None
        self.engine: Engine | None = None
        """The engine `build` assembled (`host.assembly`): container, bus, models, loader."""
        self.agents: AgentManager | None = None
        """The agents over it: the built runtime's, and any other a test starts."""
        self.recorder: EventRecorder | None = None
        """Every event from the agent's start on, when asked for (`recording`)."""
        self._record = False

    def with_character(self, character: Character | None = None, **fields: Any) -> AgentTestBuilder:
        """A whole character, and/or fields merged over the default one (``name="TestBot"``);
        calls add up (later fields win). ElizaOS keys (``messageExamples``) work here too."""
        if character is not None:
            self._character = character.model_dump()
        self._character.update(fields)
        return self

    def with_plugin(self, plugin: type[Plugin] | Plugin) -> AgentTestBuilder:
        """A plugin class (constructed with injection, like the host does) or an instance."""
        self._plugins.append(plugin)
        return self

    def mock_provider(self, name: str, result: str | ProviderResult) -> AgentTestBuilder:
        self._providers[name] = result
        return self

    def mock_model(
        self, model_type: ModelType[Any, Any], replies: Reply_ | Sequence[Reply_]
    ) -> AgentTestBuilder:
        self._models.append((model_type, replies))
        return self

    def with_database(self, database: str) -> AgentTestBuilder:
        """``inmemory`` (default), ``sqlite`` (a temp file), a SQLite path, or a
        ``postgresql://`` URL."""
        self._database = database
        return self

    def with_settings(self, **sections: Any) -> AgentTestBuilder:
        """Config sections (as in agenthost.yaml): ``plugins={"weather": {...}}``,
        ``agents={"history": 3}``."""
        self._config.update(sections)
        return self

    def recording(self) -> AgentTestBuilder:
        """Record every event from the agent's start on (``agent:started`` included) in
        `recorder`, until `aclose`."""
        self._record = True
        return self

    def with_clock(self, clock: Callable[[], datetime]) -> AgentTestBuilder:
        self._clock = clock
        return self

    def with_ids(self, ids: Callable[[], UUID]) -> AgentTestBuilder:
        self._ids = ids
        return self

    def with_cache_clock(self, clock: Callable[[], float]) -> AgentTestBuilder:
        """The provider cache's clock (seconds); default: a `ManualClock` that stands still."""
        self._cache_clock = clock
        return self

    def _store(self) -> tuple[str, dict[str, Any], Path | None]:
        """The store plugin `with_database` asks for, its settings and the data dir."""
        spec = self._database
        if spec == "inmemory":
            return "inmemory", {}, None
        if spec.startswith(("postgresql://", "postgres://")):
            # the index parameters the adapters default to (the plugin's differ)
            return "postgres", {"url": spec, "hnsw_m": 32, "hnsw_ef_construction": 80}, None
        if spec == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="agenthost-test-"))

            async def remove() -> None:
                shutil.rmtree(directory, ignore_errors=True)

            self._cleanup.append(remove)
            return "sqlite", {"path": "test.sqlite3"}, directory
        return "sqlite", {"path": Path(spec.removeprefix("sqlite:///")).absolute()}, None

    def _host_config(
        self, store: str, settings: dict[str, Any], data_dir: Path | None
    ) -> HostConfig:
        """`with_settings`' sections over the kit's defaults: the store's section, and no
        store metrics (``metrics.enabled``) unless asked for."""
        data: dict[str, Any] = {"metrics": {"enabled": False}, **self._config}
        plugins = dict(data.get("plugins") or {})
        plugins[store] = {**settings, **(plugins.get(store) or {})}
        data["plugins"] = plugins
        if data_dir is not None:
            data["data_dir"] = data_dir
        return HostConfig.model_validate(data)

    async def build(self) -> TestRuntime:
        """Assemble the runtime (`host.assembly`, as the host does): the store plugin, the
        default model plugin (ELIZA) and mocks, your plugins, the character's agent."""
        store, settings, data_dir = self._store()
        config = self._host_config(store, settings, data_dir)
        engine = assemble(LoadedConfig(config, None), owner="test", cache_clock=self._cache_clock)
        self.engine = engine
        self._cleanup.insert(0, engine.aclose)
        await load_named(engine, [store, DEFAULT_MODELS])
        for plugin in self._plugins:
            await self._load(engine.loader, plugin)
        character = default_character()
        if self._character:
            character = character_from_mapping(
                {**character.model_dump(), **self._character},
                source="AgentTestBuilder.with_character",
            )
        embedder = _embedder_of(engine, DEFAULT_MODELS)
        agents = agent_manager(
            engine,
            [character],
            clock=self._clock,
            ids=self._ids,
            runtime=partial(TestRuntime, registry=engine.models, embedder=embedder),
        )
        self.agents = agents
        self._cleanup.insert(0, agents.stop_all)
        if self._record:
            recorder = self.recorder = EventRecorder(engine.events)

            async def stop_recording() -> None:
                recorder.stop()

            self._cleanup.append(stop_recording)
        runtime = await agents.start(character.name)
        assert isinstance(runtime, TestRuntime)
        for name, result in self._providers.items():
            runtime.set_mock_provider(name, result)
        for model_type, replies in self._models:
            runtime.set_mock_model(model_type, replies)
        self._runtime = runtime
        return runtime

    async def _load(self, loader: Loader, plugin: type[Plugin] | Plugin) -> None:
        cls = plugin if isinstance(plugin, type) else type(plugin)
        manifest = cls.manifest
        factory: Callable[..., Any] = cls if isinstance(plugin, type) else (lambda: plugin)
        item = Discovered(manifest.name, f"{cls.__module__}:{cls.__qualname__}", None, None)
        item.factory, item.manifest = factory, manifest
        if await loader.load(item) is None:
            status = loader.statuses[manifest.name]
            raise RuntimeError(f"plugin {manifest.name} failed to {status.stage}: {status.error}")

    async def aclose(self) -> None:
        """Tear down everything `build` made: agents, plugins, services, temporary files."""
        cleanup, self._cleanup = self._cleanup, []
        for step in cleanup:
            try:
                await step()
            except Exception as exc:  # keep tearing down the rest
                logger.opt(exception=exc).warning("test runtime teardown step failed")

    async def __aenter__(self) -> TestRuntime:
        return await self.build()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _embedder_of(engine: Engine, plugin: str) -> Embedder | None:
    """`plugin`'s embedding handler (None: it embeds nothing)."""
    instance = engine.loader.loaded[plugin].instance
    models = getattr(instance, "models", None)
    for handler in models() if callable(models) else ():
        if handler.model_type is TEXT_EMBEDDING:
            call: Embedder = handler.handler
            return call
    return None


OFFLINE_PLUGINS = ("sqlite", "eliza")
"""The offline host's plugins: the SQLite store and ELIZA (no network, no model weights)."""


def offline_config(data_dir: Path, *plugins: str, **sections: Any) -> HostConfig:
    """The configuration of an offline host: `OFFLINE_PLUGINS` (plus `plugins`) with its data
    under `data_dir` and no character files (the default agent, Eliza). `sections` (pydantic
    sections or mappings, as in agenthost.yaml) go over it; the keys they set win, a mapping
    merges into the section (``plugins={"greeter": {...}}`` keeps the enabled list)."""
    data: dict[str, Any] = {
        "data_dir": data_dir,
        "agents": {"characters_dir": data_dir / "characters"},
        "plugins": {"enabled": [*OFFLINE_PLUGINS, *plugins]},
    }
    for key, value in sections.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True, by_alias=True)
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return HostConfig.model_validate(data)


class OfflineHosts:
    """Starts offline hosts (`offline_config`), each in a data dir of its own under `base`,
    and stops them all in `aclose` (the ``offline_host`` pytest fixture)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.hosts: list[Host] = []

    async def __call__(
        self, *plugins: str, start: bool = True, serve: bool = False, **sections: Any
    ) -> Host:
        """A host with `plugins` besides the offline ones and `sections` over the config;
        started (serving the HTTP API if `serve`) unless `start` is False."""
        from host.app import Host  # the whole host only for tests that run one

        data_dir = Path(sections.pop("data_dir", self.base / f"host{len(self.hosts)}"))
        host = Host(LoadedConfig(offline_config(data_dir, *plugins, **sections), None))
        self.hosts.append(host)
        if start:
            await host.start(http=serve)
        return host

    async def aclose(self) -> None:
        """Stop every host started, last first."""
        for host in reversed(self.hosts):
            await host.stop()
        self.hosts.clear()
