"""What one reload does to a plugin that registers one of everything: the old registrations go,
the new ones come, in-flight calls finish on the old version before its teardown, new work
waits instead of failing, and failures at each stage leave the old version serving."""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID, uuid4

import pytest

from contracts.events import PLUGIN_FAILED, PLUGIN_RELOADED, Event, PluginFailedPayload
from contracts.tokens import Token
from host.app import Host

from .conftest import ROOM, HostFactory, Probe, Site, state_text

FULL = """
from typing import ClassVar

import reload_probe
from contracts.agent import Action, ActionResult, CachePolicy, Evaluator, Provider, ProviderResult
from contracts.events import MESSAGE_RECEIVED, EventBusProtocol, EventHandler
from contracts.models import TEXT_LARGE, ModelHandler, TextResult
from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.tokens import Token

V = "{v}"
probe = reload_probe.probe
GREETING = Token("full.greeting")


class Plugin_(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="full", provides=(GREETING,))

    def __init__(self, bus: EventBusProtocol) -> None:
        {construct}
        self.bus = bus
        self.down = False

    async def setup(self) -> None:
        {setup}
        probe.log.append("setup " + V)
        # subscribed by the instance itself, as the audit plugin does
        self.subscription = self.bus.on_any(self.seen, owner="full")

    async def teardown(self) -> None:
        probe.log.append("teardown " + V)
        self.down = True
        self.subscription.cancel()

    async def seen(self, event, payload) -> None:
        if event.name == "message:received":
            probe.log.append("any " + V)

    async def received(self, payload) -> None:
        probe.log.append("handler " + V)

    async def later(self, payload) -> None:
        if "detach" in (payload.message.content.text or ""):
            probe.log.append("detached start " + V)
            probe.entered.set()
            await probe.gate.wait()
            probe.log.append("detached end " + V)

    async def mood(self, message, state):
        if "block" in (message.content.text or ""):
            probe.log.append("mood start " + V)
            probe.entered.set()
            await probe.gate.wait()
            probe.log.append("mood end " + V)
        return ProviderResult(text="mood " + V)

    async def cached(self, message, state):
        return ProviderResult(text="cached " + V)

    async def reply(self, params):
        return TextResult(text="model " + V)

    async def act(self, context):
        return ActionResult(text="act " + V)

    async def evaluate(self, context):
        return None

    def metric_gauges(self):
        return {{"full.version": -1.0 if self.down else float(V[1:])}}

    def services(self):
        return [Service(GREETING, lambda: "greeting " + V)]

    def models(self):
        return [ModelHandler(TEXT_LARGE, self.reply, priority=100)]

    def providers(self):
        cache = CachePolicy(ttl=600)
        return [Provider("mood", self.mood), Provider("cached", self.cached, cache=cache)]

    def actions(self):
        return [Action("act_" + V, "an action", self.act)]

    def evaluators(self):
        return [Evaluator("eval_" + V, "an evaluator", self.evaluate)]

    def event_handlers(self):
        return [
            EventHandler(MESSAGE_RECEIVED, self.received),
            EventHandler(MESSAGE_RECEIVED, self.later, detached=True),
        ]
"""

GREETING: Token[str] = Token("full.greeting")


def full(v: str, *, construct: str = "pass", setup: str = "pass") -> str:
    return FULL.format(v=v, construct=construct, setup=setup)


async def send(host: Host, text: str = "hello", room: UUID = ROOM) -> str:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    message = runtime.new_message(text, room_id=room, entity_id=uuid4())
    reply = await runtime.process_message(message)
    assert reply.text is not None
    return reply.text


def names(host: Host) -> set[str]:
    components = host.components
    return {c.name for c in [*components.actions, *components.evaluators]}


@pytest.fixture
async def full_host(site: Site, probe: Probe, make_host: HostFactory) -> Host:
    site.add("full", full("v1"))
    return await make_host("full", debounce=0.05)


async def reload_full(host: Host) -> None:
    assert host.reloader is not None
    result = await host.reloader.reload("full")
    assert result.ok, result.error


async def test_every_registration_is_replaced(full_host: Host, site: Site, probe: Probe) -> None:
    assert await send(full_host) == "model v1"
    assert "cached v1" in await state_text(full_host)  # now in the provider cache
    assert names(full_host) >= {"act_v1", "eval_v1"}
    assert full_host.container.resolve(GREETING) == "greeting v1"

    site.add("full", full("v2"))
    await reload_full(full_host)

    assert await send(full_host) == "model v2"
    text = await state_text(full_host)
    assert "cached v2" in text and "cached v1" not in text  # the cache entry went too
    assert "mood v2" in text
    found = names(full_host)
    assert {"act_v2", "eval_v2"} <= found and not {"act_v1", "eval_v1"} & found
    assert full_host.container.resolve(GREETING) == "greeting v2"
    probe.log.clear()
    await send(full_host)
    # one declared handler and one setup-time subscription, both of the new version only
    assert sorted(e for e in probe.log if e.startswith(("handler", "any"))) == [
        "any v2",
        "handler v2",
    ]


async def test_in_flight_calls_finish_on_the_old_version_before_teardown(
    full_host: Host, site: Site, probe: Probe
) -> None:
    assert full_host.reloader is not None
    busy = asyncio.create_task(send(full_host, "block me"))
    await probe.entered.wait()
    site.add("full", full("v2"))
    reloading = asyncio.create_task(full_host.reloader.reload("full"))
    for _ in range(50):  # let the reload run as far as it can without the message finishing
        await asyncio.sleep(0)
    assert "teardown v1" not in probe.log and not reloading.done()
    # new work (another room: no room lock in its way) waits for the swap; it does not fail
    waiting = asyncio.create_task(send(full_host, room=uuid4()))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not waiting.done()
    probe.gate.set()
    assert await busy == "model v1"
    assert (await reloading).ok
    assert await waiting == "model v2"
    order = [e for e in probe.log if e.split()[0] in ("mood", "teardown", "setup")]
    assert order == ["setup v1", "mood start v1", "mood end v1", "teardown v1", "setup v2"]


async def test_detached_handlers_finish_before_teardown(
    full_host: Host, site: Site, probe: Probe
) -> None:
    assert full_host.reloader is not None
    assert await send(full_host, "detach me") == "model v1"  # the handler runs on, detached
    await probe.entered.wait()
    site.add("full", full("v2"))
    reloading = asyncio.create_task(full_host.reloader.reload("full"))
    for _ in range(50):
        await asyncio.sleep(0)
    assert "teardown v1" not in probe.log and not reloading.done()
    probe.gate.set()
    assert (await reloading).ok
    order = [e for e in probe.log if e.split()[0] in ("detached", "teardown", "setup")]
    assert order == ["setup v1", "detached start v1", "detached end v1", "teardown v1", "setup v2"]


async def test_a_call_stuck_in_flight_does_not_block_the_reload_forever(
    site: Site, probe: Probe, make_host: HostFactory
) -> None:
    site.add("full", full("v1"))
    host = await make_host("full", drain_timeout=0.2)
    assert host.reloader is not None
    busy = asyncio.create_task(send(host, "block me"))
    await probe.entered.wait()
    site.add("full", full("v2"))
    result = await host.reloader.reload("full")  # returns once the drain timeout passed
    assert result.ok and "teardown v1" in probe.log
    assert "mood v2" in await state_text(host)
    probe.gate.set()
    await busy


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (
            {"construct": "raise RuntimeError('constructor broke')"},
            "RuntimeError: constructor broke",
        ),
        ({"setup": "raise ValueError('setup broke')"}, "ValueError: setup broke"),
    ],
    ids=["construct", "setup"],
)
async def test_construct_or_setup_failure_puts_the_old_version_back(
    full_host: Host, site: Site, probe: Probe, edit: dict[str, str], error: str
) -> None:
    failed: list[PluginFailedPayload] = []

    def record(event: Event[object], payload: object) -> None:
        if event.name == PLUGIN_FAILED.name and isinstance(payload, PluginFailedPayload):
            failed.append(payload)

    full_host.events.on_any(record)
    module = site.add("full", full("v2", **edit))
    lines = module.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "broke" in text)
    assert full_host.reloader is not None
    result = await full_host.reloader.reload("full")
    assert not result.ok and result.error is not None and error in result.error
    assert [(f.name, f.stage, f.file, f.line) for f in failed] == [
        ("full", "reload", str(module), line)
    ]
    assert await send(full_host) == "model v1"  # the old version was built again and serves
    assert "mood v1" in await state_text(full_host)
    assert full_host.container.resolve(GREETING) == "greeting v1"
    assert full_host.loader.statuses["full"].state == "loaded"
    site.add("full", full("v3"))  # the next save tries again
    await reload_full(full_host)
    assert await send(full_host) == "model v3"


async def test_a_setup_failing_after_subscribing_leaves_no_handler_of_the_new_version(
    full_host: Host, site: Site, probe: Probe
) -> None:
    """v2 subscribes in its setup(), then raises: the rollback serves v1, and v2's
    subscription does not run beside v1's (nor after the next reload)."""
    subscribe_then_fail = (
        "self.bus.on_any(self.seen, owner='full'); raise ValueError('setup broke')"
    )
    site.add("full", full("v2", setup=subscribe_then_fail))
    assert full_host.reloader is not None
    assert not (await full_host.reloader.reload("full")).ok
    probe.log.clear()
    assert await send(full_host) == "model v1"
    assert sorted(e for e in probe.log if e.startswith("any")) == ["any v1"]
    site.add("full", full("v3"))
    await reload_full(full_host)
    probe.log.clear()
    await send(full_host)
    assert sorted(e for e in probe.log if e.startswith("any")) == ["any v3"]


async def test_stale_bytecode_is_not_used(
    site: Site, probe: Probe, make_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python trusts a .pyc whose source has the same size and mtime in whole seconds: edits of
    the same length within a second must still load the new code (bytecode writing on, as it is
    by default outside this test environment)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    site.add("full", full("v0"))
    host = await make_host("full")
    for version in ("v1", "v2", "v3", "v4", "v5"):
        site.add("full", full(version))
        await reload_full(host)
        assert await send(host) == f"model {version}"


async def test_a_reloaded_event_per_plugin_with_its_duration(full_host: Host, site: Site) -> None:
    seen: list[object] = []
    full_host.events.on(PLUGIN_RELOADED, seen.append)
    site.add("full", full("v2"))
    await reload_full(full_host)
    assert [(getattr(p, "name", None), getattr(p, "version", None)) for p in seen] == [
        ("full", "1.0.0")
    ]
    duration = getattr(seen[0], "duration", None)
    assert isinstance(duration, float) and duration > 0


async def test_the_plugins_own_metrics_come_from_the_new_instance(
    full_host: Host, site: Site
) -> None:
    sampler = full_host.telemetry.sampler
    sampler.sample()
    gauge = full_host.telemetry.memory.get("full.version")
    assert gauge is not None and gauge.value == 1.0
    site.add("full", full("v2"))
    await reload_full(full_host)
    sampler.sample()
    gauge = full_host.telemetry.memory.get("full.version")
    assert gauge is not None and gauge.value == 2.0
    site.add("full", full("v3", setup="raise ValueError('setup broke')"))
    assert full_host.reloader is not None
    assert not (await full_host.reloader.reload("full")).ok
    sampler.sample()  # from the v2 instance built again, not the torn-down one
    assert gauge.value == 2.0


async def test_a_plugin_whose_old_version_fails_to_come_back_is_sampled_no_more(
    site: Site, probe: Probe, make_host: HostFactory
) -> None:
    site.add("full", full("v2", construct="if 'refuse' in probe.log: raise ValueError('no')"))
    host = await make_host("full")
    sampler = host.telemetry.sampler
    sampler.sample()
    gauge = host.telemetry.memory.get("full.version")
    assert gauge is not None and gauge.value == 2.0
    probe.log.append("refuse")  # v2 cannot be built again
    site.add("full", full("v3", setup="raise ValueError('setup broke')"))
    assert host.reloader is not None
    assert not (await host.reloader.reload("full")).ok
    assert "full" not in host.loader.loaded and "teardown v2" in probe.log
    sampler.sample()  # not from the torn-down v2 instance (it would read -1)
    assert gauge.value == 2.0
