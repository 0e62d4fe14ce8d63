"""In-tree plugin classes for the loader tests; each records its lifecycle in `JOURNAL`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr

from contracts.agent import Provider, ProviderResult, State
from contracts.events import AGENT_STARTED, AgentPayload, Event, EventBusProtocol, EventPayload
from contracts.logging import Logger
from contracts.memory import Memory
from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.tokens import Token

JOURNAL: list[str] = []


class Recording(Plugin):
    manifest: ClassVar[Manifest]

    async def setup(self) -> None:
        JOURNAL.append(f"setup:{self.manifest.name}")

    async def teardown(self) -> None:
        JOURNAL.append(f"teardown:{self.manifest.name}")


def make(name: str, *, deps: tuple[str, ...] = (), priority: int = 0) -> type[Recording]:
    manifest = Manifest(name=name, dependencies=deps, priority=priority)
    return type(f"Plugin_{name}", (Recording,), {"manifest": manifest})


Alpha = make("alpha", deps=("beta",))
Beta = make("beta", priority=-5)
Gamma = make("gamma", priority=50)
NeedsGhost = make("needs-ghost", deps=("ghost",))
NeedsNeedsGhost = make("needs-needs-ghost", deps=("needs-ghost",))
CycleX = make("cycle-x", deps=("cycle-y",))
CycleY = make("cycle-y", deps=("cycle-x",))
AfterCycle = make("after-cycle", deps=("cycle-x",))
AfterAfterCycle = make("after-after-cycle", deps=("after-cycle",))


async def _noop(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text="noop")


class FailsSetup(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="fails-setup")

    def providers(self) -> Sequence[Provider]:
        return (Provider("fails-setup-provider", _noop),)

    async def setup(self) -> None:
        raise RuntimeError("cannot reach the weather service")


class HangsInSetup(Recording):
    """A setup waiting on something that never answers (a server that accepts and is silent)."""

    manifest: ClassVar[Manifest] = Manifest(name="hangs-in-setup")

    def providers(self) -> Sequence[Provider]:
        return (Provider("hangs-in-setup-provider", _noop),)

    async def setup(self) -> None:
        JOURNAL.append("setup:hangs-in-setup")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            JOURNAL.append("cancelled:hangs-in-setup")
            raise


class SwallowsCancellation(Recording):
    """A setup that retries on any exception, its cancellation included (a client's naive
    retry loop), until it is told to stop."""

    manifest: ClassVar[Manifest] = Manifest(name="swallows-cancellation")
    stop = False

    async def setup(self) -> None:
        while not SwallowsCancellation.stop:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                JOURNAL.append("swallowed:swallows-cancellation")


class BlocksInTeardown(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="blocks-in-teardown")

    def teardown(self) -> None:  # type: ignore[override]
        time.sleep(0.3)


class TimesOutItself(Recording):
    """A setup whose own connection attempt times out: its TimeoutError is its own failure."""

    manifest: ClassVar[Manifest] = Manifest(name="times-out-itself")

    async def setup(self) -> None:
        raise TimeoutError("connect to db.example:5432 timed out")


class BlocksInSetup(Recording):
    """A setup that holds the event loop (a blocking call) for a while."""

    manifest: ClassVar[Manifest] = Manifest(name="blocks-in-setup")

    async def setup(self) -> None:
        time.sleep(0.3)  # noqa: ASYNC251 (the blocking call under test)


class HangsInTeardown(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="hangs-in-teardown")

    async def teardown(self) -> None:
        JOURNAL.append("teardown:hangs-in-teardown")
        await asyncio.sleep(3600)


class SubscribesThenFails(Recording):
    """Subscribes in its own setup (as the audit plugin does), then fails it."""

    manifest: ClassVar[Manifest] = Manifest(name="subscribes-then-fails")

    def __init__(self, bus: EventBusProtocol) -> None:
        self.bus = bus

    async def setup(self) -> None:
        self.bus.on(AGENT_STARTED, self.started, owner=self.manifest.name)
        self.bus.on_any(self.any_event, owner=self.manifest.name)
        raise RuntimeError("half set up")

    def started(self, payload: AgentPayload) -> None:
        JOURNAL.append("started:subscribes-then-fails")

    def any_event(self, event: Event[Any], payload: EventPayload) -> None:
        JOURNAL.append(f"any:subscribes-then-fails:{event.name}")


class FailsTeardown(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="fails-teardown", priority=10)

    async def teardown(self) -> None:
        JOURNAL.append("teardown:fails-teardown")
        raise RuntimeError("teardown exploded")


class WrongName(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="not-the-entry-point-name")


class NotAPlugin:
    """No manifest at all."""


def raising_factory() -> Recording:
    """A plugin factory (not a class) that raises when the host calls it."""
    raise ValueError("factory refuses: no weather API configured")


raising_factory.manifest = Manifest(name="raising-factory")  # type: ignore[attr-defined]


def recording_factory() -> Recording:
    """A plugin factory returning a plugin built some other way."""
    return Gamma()


recording_factory.manifest = Gamma.manifest  # type: ignore[attr-defined]


class InvalidManifest(Recording):
    manifest = {"name": "invalid-manifest", "priority": "high", "colour": "blue"}  # type: ignore[assignment]


class Clock:
    """A service a plugin provides and another one needs in its constructor."""

    def __init__(self) -> None:
        self.ticks = 0


CLOCK: Token[Clock] = Token("test.clock", Clock)


class ClockProvider(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="clock-provider", priority=-10, provides=(CLOCK,))

    def services(self) -> Sequence[Service[Any]]:
        return (Service(CLOCK, Clock),)


class ClockUser(Recording):
    """Higher priority than its provider, but needs its service: loads after it."""

    manifest: ClassVar[Manifest] = Manifest(name="clock-user", priority=90)

    def __init__(self, clock: Clock) -> None:
        self.clock = clock


class RingA:
    pass


class RingB:
    pass


class RingC:
    pass


RING_A: Token[RingA] = Token("test.ring_a", RingA)
RING_B: Token[RingB] = Token("test.ring_b", RingB)
RING_C: Token[RingC] = Token("test.ring_c", RingC)


class RingOne(Recording):
    """Provides ring_a, needs ring_b: with RingTwo and RingThree, a cycle through services."""

    manifest: ClassVar[Manifest] = Manifest(name="ring-one", provides=(RING_A,))

    def __init__(self, b: RingB) -> None:
        self.b = b

    def services(self) -> Sequence[Service[Any]]:
        return (Service(RING_A, RingA),)


class RingTwo(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="ring-two", provides=(RING_B,))

    def __init__(self, c: RingC) -> None:
        self.c = c

    def services(self) -> Sequence[Service[Any]]:
        return (Service(RING_B, RingB),)


class RingThree(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="ring-three", provides=(RING_C,))

    def __init__(self, a: RingA) -> None:
        self.a = a

    def services(self) -> Sequence[Service[Any]]:
        return (Service(RING_C, RingC),)


class ClockProviderFailing(ClockProvider):
    async def setup(self) -> None:
        raise RuntimeError("no clock hardware")


class NeedsItsOwnClock(ClockProvider):
    manifest: ClassVar[Manifest] = Manifest(name="own-clock", provides=(CLOCK,))

    def __init__(self, clock: Clock) -> None:
        self.clock = clock


class ForecastSettings(BaseModel):
    city: str
    retries: int = 1
    api_key: SecretStr | None = None


class Forecast(Recording):
    manifest: ClassVar[Manifest] = Manifest(name="forecast", settings=ForecastSettings)

    def __init__(self, settings: ForecastSettings) -> None:
        self.settings = settings


class LeakySettings(BaseModel):
    auth: SecretStr


class Leaky(Recording):
    """Logs its secret by mistake: the log sink must mask it."""

    manifest: ClassVar[Manifest] = Manifest(name="leaky", settings=LeakySettings)

    def __init__(self, settings: LeakySettings, log: Logger) -> None:
        self.settings = settings
        self.log = log

    async def setup(self) -> None:
        self.log.info("connecting with {}", self.settings.auth.get_secret_value())


class Pool:
    """A connection pool a plugin opens in setup and closes in teardown."""

    def __init__(self) -> None:
        self.open = True


class Session:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


POOL: Token[Pool] = Token("test.pool", Pool)
SESSION: Token[Session] = Token("test.session", Session)


class PoolPlugin(Recording):
    """Provides its pool as a service; teardown closes it."""

    manifest: ClassVar[Manifest] = Manifest(name="pool", provides=(POOL,))

    def __init__(self) -> None:
        self.pool = Pool()

    async def teardown(self) -> None:
        self.pool.open = False
        JOURNAL.append("teardown:pool")

    def services(self) -> Sequence[Service[Any]]:
        return (Service(POOL, lambda: self.pool),)


async def _session(pool: Pool) -> AsyncIterator[Session]:
    yield Session(pool)
    # a session's close talks to its pool (returns its connection)
    JOURNAL.append("session closed" + ("" if pool.open else " on a closed pool"))


class SessionPlugin(Recording):
    """Binds an async-generator service using the pool plugin's service."""

    manifest: ClassVar[Manifest] = Manifest(
        name="sessions", dependencies=("pool",), provides=(SESSION,)
    )

    async def teardown(self) -> None:
        JOURNAL.append("teardown:sessions")

    def services(self) -> Sequence[Service[Any]]:
        return (Service(SESSION, _session),)


class FailsQuotingItsSecret(Recording):
    """Its setup fails with an error quoting its secret (a DSN, a token in a URL)."""

    manifest: ClassVar[Manifest] = Manifest(name="quotes-secret", settings=LeakySettings)

    def __init__(self, settings: LeakySettings) -> None:
        self.settings = settings

    async def setup(self) -> None:
        raise ConnectionError(f"cannot reach https://{self.settings.auth.get_secret_value()}@api")
