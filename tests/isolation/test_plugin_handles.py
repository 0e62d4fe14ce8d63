"""A plugin's handles on the bus, the model registry and the provider cache touch only what that
plugin registered: a hostile plugin cannot silence the audit trail of a real host."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from builtin_plugins.audit import AuditPlugin
from contracts.agent import CachePolicy
from contracts.errors import OwnershipError
from contracts.events import AGENT_STARTED, EVENTS, AgentPayload, EventBusProtocol
from contracts.eventstore import EVENT_STORE
from contracts.models import TEXT_SMALL, ModelHandler, TextParams, TextResult
from contracts.tokens import Token
from host.app import Host
from host.cache import ProviderCache
from host.di import Container
from host.events import EventBus
from host.handles import PluginBus, PluginCache, PluginModels
from host.models import ModelRegistry
from host.testing import OfflineHosts


@pytest.fixture
async def host(hostile_path: Path, offline_host: OfflineHosts) -> Host:
    return await offline_host("audit", "hostile", http={"enabled": False})


async def test_a_hostile_plugin_cannot_silence_the_audit_trail(host: Host) -> None:
    status = {s.name: s for s in host.statuses}
    assert status["audit"].state == "loaded"
    assert status["hostile"].state == "failed" and status["hostile"].stage == "setup"
    assert status["hostile"].error == (
        "OwnershipError: plugin hostile may not remove the event subscriptions of plugin audit:"
        " a plugin's handle on a host service only touches what that plugin registered"
    )
    assert any(s.owner == "audit" for s in host.events.subscriptions())
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    message = runtime.new_message("Hello there", room_id=uuid4(), entity_id=uuid4())
    await runtime.process_message(message)
    audit = host.loader.loaded["audit"].instance
    assert isinstance(audit, AuditPlugin)
    await audit.flush()
    store = await host.container.aresolve(EVENT_STORE)
    recorded = [e.event_type for e in await store.read_all()]
    assert "plugin:failed" in recorded  # the hostile plugin's failure is in the trail too
    assert {"message:received", "message:sent"} <= set(recorded)


def test_a_plugin_subscribes_as_itself_only() -> None:
    bus = EventBus()
    handle = PluginBus(bus, "weather")
    sub = handle.on(AGENT_STARTED, lambda p: None)
    assert [s.owner for s in bus.subscriptions(AGENT_STARTED)] == ["weather"]
    with pytest.raises(OwnershipError, match="plugin weather may not subscribe on behalf of"):
        handle.on_any(lambda e, p: None, owner="audit")
    assert not hasattr(sub, "bus")  # the subscription it gets back leads to no bus
    sub.cancel()
    assert not sub.active and bus.subscriptions() == []


async def test_a_plugin_cannot_unsubscribe_another_plugins_handler() -> None:
    bus = EventBus()
    seen: list[str] = []

    def audit_handler(payload: AgentPayload) -> None:
        seen.append(payload.name)

    bus.on(AGENT_STARTED, audit_handler, owner="audit")
    handle = PluginBus(bus, "hostile")
    with pytest.raises(OwnershipError, match=r"plugin hostile may not .* of plugin audit"):
        handle.off(AGENT_STARTED, audit_handler)
    with pytest.raises(OwnershipError, match=r"plugin hostile may not .* of plugin audit"):
        handle.unregister_plugin("audit")
    with pytest.raises(AttributeError, match=r"event bus\.aclose is the host's"):
        handle.aclose  # noqa: B018
    await handle.emit(AGENT_STARTED, AgentPayload(agent_id=uuid4(), name="Ada"))
    assert seen == ["Ada"]
    own = handle.on(AGENT_STARTED, audit_handler)
    assert handle.subscriptions(AGENT_STARTED) and own.active
    assert handle.off(AGENT_STARTED, audit_handler) and not own.active
    assert [s.owner for s in bus.subscriptions(AGENT_STARTED)] == ["audit"]
    assert handle.unregister_owner("hostile") == 0


async def _echo(params: TextParams) -> TextResult:
    return TextResult(text=params.prompt)


async def test_model_and_cache_handles_touch_only_their_plugins_entries() -> None:
    registry = ModelRegistry()
    registry.register(ModelHandler(TEXT_SMALL, _echo), owner="openai")
    models = PluginModels(registry, "hostile")
    with pytest.raises(OwnershipError, match="remove the model handlers of plugin openai"):
        models.unregister_owner("openai")
    with pytest.raises(OwnershipError, match="on behalf of plugin openai"):
        models.register(ModelHandler(TEXT_SMALL, _echo), owner="openai")
    assert (await models.use_model(TEXT_SMALL, TextParams(prompt="hi"))).text == "hi"
    assert registry.providers(TEXT_SMALL) == ["openai"]

    cache = ProviderCache()
    cache.register("weather", CachePolicy(ttl=60), owner="weather")
    handle = PluginCache(cache, "hostile")
    for attempt in (
        lambda: handle.unregister("weather"),
        lambda: handle.register("weather", CachePolicy(ttl=1)),
        lambda: handle.unregister_owner("weather"),
    ):
        with pytest.raises(OwnershipError, match="of plugin weather"):
            attempt()
    with pytest.raises(AttributeError, match=r"provider cache\.clear is the host's"):
        handle.clear()
    assert cache.policy("weather") == CachePolicy(ttl=60)
    handle.register("hostile-news", CachePolicy(ttl=5))
    assert cache.owner_of("hostile-news") == "hostile"


class Recorder:
    def __init__(self, bus: EventBusProtocol) -> None:
        self.bus = bus


async def test_the_container_injects_handles_into_what_plugins_construct() -> None:
    bus = EventBus()
    container = Container()
    container.provide(EVENTS, bus, owner="host", view=lambda name: PluginBus(bus, name))
    built: Any = await container.construct(Recorder, owner="weather")
    assert isinstance(built.bus, PluginBus) and built.bus.plugin == "weather"
    plugins_recorder = Token("test.recorder", Recorder)
    container.register(plugins_recorder, Recorder, owner="news")
    service = container.resolve(plugins_recorder)
    assert isinstance(service.bus, PluginBus) and service.bus.plugin == "news"
    hosts_recorder = Token("test.host-recorder", Recorder)
    container.register(hosts_recorder, Recorder, owner="host")
    assert container.resolve(hosts_recorder).bus is bus
    assert container.resolve(EVENTS) is bus  # the host itself resolves the bus


async def test_emitting_and_calling_models_through_a_handle_adds_no_call() -> None:
    bus, models = EventBus(), ModelRegistry()
    seen: list[str] = []
    bus.on(AGENT_STARTED, lambda p: seen.append(p.name))

    async def answer(params: TextParams) -> TextResult:
        return TextResult(text=(params.prompt or "").upper())

    models.register(ModelHandler(TEXT_SMALL, answer), owner="m")
    handle, model_handle = PluginBus(bus, "p"), PluginModels(models, "p")
    # the services' own bound methods: no coroutine of the handle's around each call
    assert handle.emit.__self__ is bus and handle.emit.__func__ is EventBus.emit  # type: ignore[attr-defined]
    assert model_handle.use_model.__func__ is ModelRegistry.use_model  # type: ignore[attr-defined]
    await handle.emit(AGENT_STARTED, AgentPayload(agent_id=uuid4(), name="via handle"))
    result = await model_handle.use_model(TEXT_SMALL, TextParams(prompt="hi"))
    assert seen == ["via handle"] and result.text == "HI"
