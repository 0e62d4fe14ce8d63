"""Composing a message's `State` from the providers: the builtin ``recent_messages`` and the
plugins', run in parallel, each under its timeout and through the provider cache.

The builtin provider starts in the composing task and runs there until it first waits: a
history read answered without waiting (the SQLite store reads on the caller's thread) costs no
task and no timer (a timeout cannot fire before it waits). One that waits goes on there under
its timeout, counted from its start, the plugins' providers in tasks meanwhile; else the last
plugin provider runs in the composing task, the others in tasks. Only the builtin one starts so:
while a started call waits for the first time, the deadline sweeper (`host.deadlines`) does not
see the awaits inside it (a model call's timeout), and the history read makes none.

A provider that fails, times out or returns something else than a `ProviderResult` is logged,
listed in ``state.skipped`` and adds nothing. The state carries the message's service scope
(``state.services``) for the providers and the actions and evaluators after them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Generator, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol
from uuid import UUID

from contracts.agent import Character, Provider, ProviderResult, State
from contracts.cache import CacheContext, ProviderCacheProtocol
from contracts.memory import Memory
from contracts.services import ServiceScope
from contracts.storage import MemoryText
from host.cache import ProviderCache
from host.components import ComponentRegistry
from host.invoke import owner_log, provide
from host.pydantic_slots import constructed

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["StateComposer", "StateSettings"]


class StateSettings(Protocol):
    """The settings state composition reads (config ``agents``)."""

    @property
    def provider_timeout(self) -> float: ...

    @property
    def history(self) -> int: ...


RecentTexts = Callable[[UUID, int], Awaitable[list[MemoryText]]]
"""A room's latest lines of the conversation, oldest first (`AgentRuntime.recent_texts`)."""


assert not ProviderResult.__private_attributes__ and list(State.__private_attributes__) == [
    "_services"
]
_RESULT_GIVEN: Final = frozenset({"text", "values"})
_STATE_GIVEN: Final = frozenset({"values"})


def _state(values: dict[str, Any], services: ServiceScope | None) -> State:
    """``State(values=values)`` with `services` as its message scope, unvalidated (the
    composer's own dict of strings: ~2 us a message)."""
    fields = {"values": values, "data": {}, "text": "", "providers": {}, "skipped": {}}
    return constructed(State, fields, set(_STATE_GIVEN), private={"_services": services})


class StateComposer:
    """One agent's state composition: its providers, their timeouts, the provider cache."""

    def __init__(
        self,
        *,
        agent_id: UUID,
        character: Character,
        components: ComponentRegistry,
        settings: StateSettings,
        recent: RecentTexts,
        cache: ProviderCacheProtocol | None,
        log: Logger,
    ) -> None:
        self._agent_id = agent_id
        self._agent_text = str(agent_id)
        self._character = character
        self._components = components
        self._settings = settings
        self._recent = recent
        self.cache = cache
        """Provider cache consulted for each provider call (None: providers always run)."""
        self._log = log
        self._builtin = (Provider(name="recent_messages", get=self._recent_messages, position=-10),)

    async def compose(
        self, message: Memory, include: Iterable[str] = (), services: ServiceScope | None = None
    ) -> State:
        """State for `message` from every non-dynamic provider plus the dynamic ones named in
        `include`, run in parallel; failing or slow ones are skipped and listed. `services` is
        the message's scope, reachable as ``state.services`` (None: a state without one)."""
        wanted = set(include)
        providers = [
            p
            for p in (*self._builtin, *self._components.providers)
            if not p.dynamic or p.name in wanted
        ]
        room, entity = str(message.room_id), str(message.entity_id)
        state = _state(
            {
                "agent_id": self._agent_text,
                "agent_name": self._character.name,
                "room_id": room,
                "entity_id": entity,
            },
            services,
        )
        # one context for every provider's cache lookup (the ids as text once per message),
        # made only when one of them is looked up there
        context = None
        if self.cache is not None and any(self._cached(p) for p in providers):
            context = CacheContext(self._agent_text, room, entity, str(message.id))
        # the builtin history read runs here until it first waits: answered at once (most
        # messages: the SQLite store reads on this thread), it needs no task and no timer
        builtin, *plugins = providers
        first = self._start(builtin, message, state, context)
        results: list[ProviderResult | str]
        if isinstance(first, _Started):  # it waits: it goes on here, the plugins' in tasks
            going_on = self._within(builtin, first, first.at)
            results = await self._beside(going_on, plugins, message, state, context)
        elif plugins:  # the last plugin's here, the others in tasks (a task less per message)
            *others, last = plugins
            here, *rest = await self._beside(
                self._run(last, message, state, context), others, message, state, context
            )
            results = [first, *rest, here]
        else:
            results = [first]
        if len(providers) == 1:
            ran = [(providers[0], results[0])]
        else:
            ran = sorted(
                zip(providers, results, strict=True), key=lambda pr: (pr[0].position, pr[0].name)
            )
        texts: list[str] = []
        for provider, outcome in ran:
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

    async def _beside(
        self,
        here: Awaitable[ProviderResult | str],
        others: list[Provider],
        message: Memory,
        state: State,
        context: CacheContext | None,
    ) -> list[ProviderResult | str]:
        """The outcome of `here`, a provider's run awaited in this task, then those of `others`,
        run meanwhile each in a task of its own (in parallel, in their order).

        The tasks' timeouts share one timer (`_Deadlines`: it cancels a task whose deadline
        passed and moves on to the next deadline) instead of one per provider; the one here
        keeps its own ``asyncio.timeout``. Cancelling the composition cancels every task, as a
        gather would (`_within` and `_attempt` never raise but for cancellation)."""
        timeouts = [self._timeout(p) for p in others]
        expired: set[int] = set()
        tasks = [
            asyncio.ensure_future(self._attempt(i, p, t, message, state, context, expired))
            for i, (p, t) in enumerate(zip(others, timeouts, strict=True))
        ]
        deadlines = _Deadlines(tasks, timeouts, expired)
        try:
            outcome = await here
            results = [outcome, *[await task for task in tasks]]
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            deadlines.close()
        return results

    def _timeout(self, provider: Provider) -> float:
        timeout = provider.timeout
        return timeout if timeout is not None else self._settings.provider_timeout

    async def _attempt(
        self,
        index: int,
        provider: Provider,
        seconds: float,
        message: Memory,
        state: State,
        context: CacheContext | None,
        expired: set[int],
    ) -> ProviderResult | str:
        """`provider`'s result, or why it was skipped, in a task `_Deadlines` cancels (adding
        `index` to `expired`) when its `seconds` have passed."""
        try:
            result = await self._provide(provider, message, state, context)
        except asyncio.CancelledError:
            if index in expired:
                return self._timed_out(provider, seconds)
            raise
        except Exception as exc:
            return self._failed(provider, exc)
        return self._checked(provider, result)

    async def _run(
        self, provider: Provider, message: Memory, state: State, context: CacheContext | None
    ) -> ProviderResult | str:
        """`provider`'s result, or why it was skipped (under its own timeout)."""
        call = self._provide(provider, message, state, context)
        return await self._within(provider, call, asyncio.get_running_loop().time())

    def _start(
        self, provider: Provider, message: Memory, state: State, context: CacheContext | None
    ) -> ProviderResult | str | _Started:
        """`provider` run here until it first waits: its outcome if it did not (no timer: a
        timeout cannot fire before it waits, as under ``asyncio.timeout``), else where it
        waits (`_within` takes it from there)."""
        at = asyncio.get_running_loop().time()
        try:
            steps = self._provide(provider, message, state, context).__await__()
            waits_for = steps.send(None)
        except StopIteration as done:
            return self._checked(provider, done.value)
        except Exception as exc:
            return self._failed(provider, exc)
        return _Started(steps, waits_for, at)

    async def _within(
        self, provider: Provider, call: Awaitable[object], at: float
    ) -> ProviderResult | str:
        """The outcome of `call`, `provider`'s (run by `_run`, or `_start`ed here and
        waiting), under the provider's timeout counted from `at`, the loop's time it started."""
        timeout = self._timeout(provider)
        deadline = asyncio.timeout_at(at + timeout)
        try:
            async with deadline:
                result = await call
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                return self._timed_out(provider, timeout)
            return self._failed(provider, exc)
        return self._checked(provider, result)

    def _log_of(self, provider: Provider) -> Logger:
        """The log of the plugin that registered `provider` (its lines carry its name)."""
        return owner_log(self._components, "provider", provider.name, self._log)

    def _timed_out(self, provider: Provider, timeout: float) -> str:
        log = self._log_of(provider)
        log.warning("provider {} timed out after {}s; skipped", provider.name, timeout)
        return f"timed out after {timeout}s"

    def _failed(self, provider: Provider, exc: Exception) -> str:
        log = self._log_of(provider)
        log.opt(exception=exc).warning("provider {} failed; skipped: {}", provider.name, exc)
        return f"{type(exc).__name__}: {exc}"

    def _checked(self, provider: Provider, result: object) -> ProviderResult | str:
        if not isinstance(result, ProviderResult):
            log = self._log_of(provider)
            log.warning("provider {} returned {!r}; skipped", provider.name, type(result))
            return f"returned {type(result).__name__}, not ProviderResult"
        return result

    def _cached(self, provider: Provider) -> bool:
        """Whether `provider`'s results go through the cache: the host's own cache says it
        keeps them (a policy with a TTL); any other cache is asked about every provider."""
        cache = self.cache
        if type(cache) is not ProviderCache:
            return cache is not None
        policy = cache.policy(provider.name)
        ttl = None if policy is None else policy.ttl
        return ttl is not None and ttl > 0

    def _provide(
        self, provider: Provider, message: Memory, state: State, context: CacheContext | None
    ) -> Awaitable[object]:
        if self.cache is None or context is None or not self._cached(provider):
            if provider is self._builtin[0]:  # the host's own: no plugin call to watch
                return self._recent_messages(message, state)
            return provide(provider, message, state, self._components)
        compute = partial(provide, provider, message, state, self._components)
        return self.cache.get_or_compute(provider.name, context, compute)

    async def _recent_messages(self, message: Memory, state: State) -> ProviderResult:
        history = self._settings.history
        rows = await self._recent(message.room_id, history + 1)
        # UUIDs compared by their ints: UUID.__eq__ is a Python call, 22 a message
        this = message.id.int
        rows = [row for row in rows if row.id.int != this][-history:]
        if not rows:
            return ProviderResult()
        lines = []
        agent, name = self._agent_id.int, self._character.name
        for row in rows:
            who = name if row.entity_id.int == agent else "user"
            lines.append(f"{who}: {row.text}")
        values = {
            "text": "# Recent conversation\n" + "\n".join(lines),
            "values": {"recent_message_count": len(rows)},
            "data": {},
        }
        return constructed(ProviderResult, values, set(_RESULT_GIVEN))


class _Started:
    """A provider's call that ran until it first waited (`StateComposer._start`): awaited, it
    hands on what the call waits for, then the call's own steps (``yield from``: the deadline
    sweeper and the loop monitor follow the awaits inside from there on)."""

    __slots__ = ("_steps", "_waits_for", "at")

    def __init__(self, steps: Generator[Any, None, object], waits_for: object, at: float) -> None:
        self._steps = steps
        self._waits_for = waits_for
        self.at = at
        """The loop's time when the call started."""

    def __await__(self) -> Generator[Any, None, object]:
        steps, waits_for = self._steps, self._waits_for
        while True:
            try:
                yield waits_for
            except BaseException as exc:  # thrown in while it waits (a cancellation): its own
                try:
                    waits_for = steps.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            return (yield from steps)


class _Deadlines:
    """One timer for several tasks' timeouts: when it fires it cancels each unfinished task
    whose deadline has passed (its index joins `expired`, so the task reports a timeout) and
    sets itself for the next deadline still pending."""

    __slots__ = ("_at", "_expired", "_handle", "_loop", "_tasks")

    def __init__(
        self,
        tasks: list[asyncio.Task[ProviderResult | str]],
        timeouts: list[float],
        expired: set[int],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._tasks = tasks
        self._at = [now + timeout for timeout in timeouts]
        self._expired = expired
        self._handle: asyncio.TimerHandle | None = (
            self._loop.call_at(min(self._at), self._sweep) if tasks else None
        )

    def _sweep(self) -> None:
        now = self._loop.time()
        soonest = math.inf
        for index, (task, at) in enumerate(zip(self._tasks, self._at, strict=True)):
            if task.done() or index in self._expired:
                continue
            if at <= now:
                self._expired.add(index)
                task.cancel()
            else:
                soonest = min(soonest, at)
        self._handle = self._loop.call_at(soonest, self._sweep) if soonest < math.inf else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
