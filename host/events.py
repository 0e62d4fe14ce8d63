"""`EventBus`: typed publish/subscribe for every step of the host.

Handlers subscribe to an `Event[P]` and receive its payload; wildcard handlers (`on_any`) get
every event, for the audit and metrics layers. Plugins subscribe through ``event_handlers()`` or
pluggy ``@hookimpl`` methods (see `host.hookspecs`); both end up as subscriptions tagged with
the plugin's name, so unloading a plugin removes all of them.

Why not call pluggy hooks directly on emit: pluggy is synchronous and orders implementations by
registration (LIFO) and tryfirst/trylast, while the bus must await async handlers, time them
out, isolate their failures and order them by priority. So pluggy validates and collects the
hook implementations; the bus runs them.

Emitting is cheap on purpose: each event keeps a precomputed tuple of its handlers (with how
each is called and its timeout), rebuilt only when subscriptions change; an emit is a type check
and a loop over that tuple (or, for a plan of one timed handler, the most common, one call).
Handler timeouts cost an emit nothing but a local store per async handler (``armed = sub``) and
a test that the sweeper its plan last made sure of still has a running loop (`Sweeper.gauge`):
one sweeper task per loop (`host.deadlines`) finds emits suspended in a handler by walking the
tasks' coroutines, instead of a timer or a registration per handler.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable
from contextvars import ContextVar
from types import CoroutineType, FrameType
from typing import Any, TypeVar

import pluggy
from loguru import logger

from contracts.config import EventsSettings
from contracts.events import (
    HANDLER_FAILED,
    AnyHandler,
    Event,
    EventError,
    EventHandler,
    EventPayload,
    Handler,
    HandlerFailedPayload,
)
from contracts.plugin import LoadedPluginLike
from host import hookspecs
from host.blocking import component_site, describe_subscription
from host.deadlines import STOPPED as _STOPPED
from host.deadlines import ensure as _ensure_sweeper
from host.deadlines import expired as _expired
from host.deadlines import shared as _deadlines
from host.deadlines import timed_out as _timed_out
from host.deadlines import withdraw as _withdraw
from host.event_hooks import subscribe_hooks
from host.event_payloads import coerce_payload
from host.event_subscriptions import (
    ALL_TIMED,
    ANY,
    DETACHED,
    GONE,
    OWN,
    SOME_TIMED,
    TIMED,
    HandlerSubscription,
    check_subscription,
    gone,
    is_async,
    sort_key,
)

__all__ = ["EventBus", "HandlerSubscription"]


class _Plan:
    """An event's handlers in run order, whether some (`SOME_TIMED`) or all (`ALL_TIMED`)
    are `TIMED`, the one handler when it is the only one and `TIMED` (the commonest plan, run
    in the fewest steps), whether all are plain functions (`inline`), the emits counted since
    it was made, and the deadline sweeper its emits last made sure of (skipped while its loop
    runs: `host.deadlines.Sweeper`)."""

    __slots__ = ("count", "inline", "one", "subs", "swept", "timed")

    def __init__(self, subs: tuple[HandlerSubscription, ...], timed: int) -> None:
        self.subs = subs
        self.timed = timed
        self.one = subs[0] if timed is ALL_TIMED and len(subs) == 1 else None
        self.inline = all(sub.kind is OWN or sub.kind is ANY for sub in subs)
        """Every handler is a plain function (`OWN` or `ANY`): `EventBus.publish` calls them
        without a coroutine."""
        self.count = 0
        self.swept = _STOPPED


P = TypeVar("P", bound=EventPayload)

_in_detached: ContextVar[bool] = ContextVar("agenthost_in_detached_handler", default=False)


class EventBus:
    """Subscriptions per event, emitted in priority order with failures isolated."""

    def __init__(self, settings: EventsSettings | None = None) -> None:
        self._settings = settings or EventsSettings()
        """Config section ``events``: the handler timeout, the detached handler limit."""
        self._subs: dict[str, list[HandlerSubscription]] = {}
        self._any: list[HandlerSubscription] = []
        self._plan: dict[Event[Any], _Plan] = {}
        """Event -> its handlers in run order (rebuilt when subscriptions change). By the token,
        not its name: a subscript by an object is a little cheaper than reading the name first
        (a plugin reloaded declares its events again: those tokens get plans of their own)."""
        self._detached: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._deadlines = _deadlines
        self._counts: dict[str, int] = {}
        """Emits per event name counted by plans dropped since (a live plan counts its own:
        an attribute increment costs an emit less than a dict's)."""
        self.failures = 0
        """Handler failures since start (also counted by the metrics layer)."""
        self._closed = False

    @property
    def counts(self) -> Counter[str]:
        """Emits per event name since start (sampled into ``agenthost.events.emitted``)."""
        counts = Counter(self._counts)
        for event, plan in self._plan.items():
            counts[event.name] += plan.count
        return Counter({name: count for name, count in counts.items() if count})

    @property
    def settings(self) -> EventsSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: EventsSettings) -> None:
        self._settings = settings
        self._replan()  # the plans hold the default timeout

    # subscribing -----------------------------------------------------------------------------

    def on(
        self,
        event: Event[P],
        handler: Handler[P],
        *,
        owner: str | None = None,
        priority: int = 0,
        detached: bool = False,
        timeout: float | None = None,
        blocking: bool = False,
    ) -> HandlerSubscription:
        """Call `handler` with each payload of `event`. Higher `priority` runs first.
        `blocking`: `handler` is sync and may block, so it runs in a worker thread."""
        if not isinstance(event, Event):
            raise EventError(f"bus.on needs an Event token, got {event!r}")
        check_subscription(repr(event.name), handler, owner, timeout, blocking)
        sub = HandlerSubscription(
            self, event, handler, owner, priority, detached, timeout, blocking
        )
        self._subs.setdefault(event.name, []).append(sub)
        self._replan()
        return sub

    def on_any(
        self,
        handler: AnyHandler,
        *,
        owner: str | None = None,
        detached: bool = False,
        priority: int = 0,
        timeout: float | None = None,
        blocking: bool = False,
    ) -> HandlerSubscription:
        """Call `handler(event, payload)` for every event, after the event's own handlers."""
        check_subscription("every event (on_any)", handler, owner, timeout, blocking)
        sub = HandlerSubscription(self, None, handler, owner, priority, detached, timeout, blocking)
        self._any.append(sub)
        self._replan()
        return sub

    def off(self, event: Event[P], handler: Handler[P]) -> bool:
        """Remove `handler`'s subscriptions to `event`; False if it had none."""
        found = [s for s in self._subs.get(event.name, ()) if s.handler == handler]
        for sub in found:
            self._remove(sub)
        return bool(found)

    def _remove(self, sub: HandlerSubscription) -> None:
        sub.active = False
        # an emit running with a plan that holds it skips it (or awaits a no-op instead)
        sub.kind = GONE
        sub.call = gone
        subs = self._any if sub.event is None else self._subs.get(sub.event.name, [])
        if sub in subs:
            subs.remove(sub)
        self._replan()

    def register_plugin(self, loaded: LoadedPluginLike) -> None:
        """Registrar hook for the loader: `subscribe_plugin` with the plugin's name and priority."""
        self.subscribe_plugin(loaded.name, loaded.instance, loaded.manifest.priority)

    def unregister_plugin(self, name: str) -> None:
        """Registrar hook for the loader: remove everything plugin `name` subscribed."""
        self.unregister_owner(name)

    def subscribe_plugin(self, name: str, plugin: object, priority: int = 0) -> int:
        """Subscribe a plugin's ``@hookimpl`` methods and ``event_handlers()``; how many.

        A hook implementation that names no known hook, or whose arguments do not match the
        hook's, is an error naming the plugin and the hook (pluggy checks the signature)."""
        made: list[HandlerSubscription] = []
        try:
            made += subscribe_hooks(self, self._pm, name, plugin, priority)
            handlers = getattr(plugin, "event_handlers", None)
            for spec in handlers() if callable(handlers) else ():
                if not isinstance(spec, EventHandler):
                    raise EventError(f"plugin {name}: event_handlers() returned {spec!r}")
                sub = self.on(
                    spec.event,
                    spec.handler,
                    owner=name,
                    priority=spec.priority or priority,
                    detached=spec.detached,
                    timeout=spec.timeout,
                    blocking=spec.blocking,
                )
                made.append(sub)
        except BaseException:
            for sub in made:  # all or nothing: a half-subscribed plugin would be hard to see
                sub.cancel()
            raise
        return len(made)

    def unregister_owner(self, owner: str) -> int:
        """Remove every subscription `owner` made (plugin unload and reload); how many."""
        removed = [s for subs in self._subs.values() for s in subs if s.owner == owner]
        removed += [s for s in self._any if s.owner == owner]
        for sub in removed:
            self._remove(sub)
        return len(removed)

    def subscriptions(self, event: Event[Any] | None = None) -> list[HandlerSubscription]:
        """Active subscriptions (to `event`, in run order), for `agenthost` introspection."""
        if event is None:
            return sorted([s for v in self._subs.values() for s in v] + self._any, key=sort_key)
        plan = self._plan.get(event) or self._handlers_for(event)
        return list(plan.subs)

    # emitting -------------------------------------------------------------------------------

    @component_site(describe_subscription)
    async def emit(self, event: Event[P], payload: P) -> None:
        """Run every handler of `event` with `payload`; returns when the awaited ones are done.

        A handler that raises or times out is logged with its plugin and the event, counted and
        reported as ``handler:failed``; the others and the emitter carry on. Kept in one piece
        for speed (a step as a call of its own costs every emit: a coroutine for the other
        plans cost a sync handler's emit ~140 ns), and because the deadline sweeper reads
        ``armed`` off this very frame (`host.deadlines`). Its locals are few on purpose: each
        one costs every emit ~3 ns (the coroutine's frame is made and cleared per emit)."""
        if type(payload) is not event.payload:
            payload = coerce_payload(event, payload)
        try:
            plan = self._plan[event]
        except KeyError:
            plan = self._handlers_for(event)
        plan.count += 1
        armed: HandlerSubscription | None = None  # what the sweeper times (host/deadlines.py)
        call: Any  # a handler's call; in the last loop, what calling it returned (one local)
        sub = plan.one  # `sub` names the handler to the loop monitor
        if sub is not None:  # one `TIMED` handler, the commonest plan, in the fewest steps
            if plan.swept.gauge._thread_id is None:
                plan.swept = _ensure_sweeper()  # a handler with a limit: a sweeper must run
            try:
                armed = sub  # a local store: the sweeper reads it off the suspended frame
                call = sub.call  # an attribute load (``sub.call(...)`` is not specialized)
                await call(payload)  # a `TIMED` call: a coroutine
            except BaseException as exc:
                armed = None  # read by the sweeper off the frame
                if await self._caught(sub, event, exc, inspect.currentframe()):
                    raise
            if _expired:  # a handler swallowed its deadline's cancellation (see `Deadlines`)
                _withdraw(inspect.currentframe())
            return
        if plan.timed is ALL_TIMED:  # the same, handler after handler
            if plan.swept.gauge._thread_id is None:
                plan.swept = _ensure_sweeper()
            for sub in plan.subs:
                try:
                    armed = sub
                    call = sub.call
                    await call(payload)
                except BaseException as exc:
                    armed = None
                    if await self._caught(sub, event, exc, inspect.currentframe()):
                        raise
            if _expired:
                _withdraw(inspect.currentframe())
            return
        if plan.timed and plan.swept.gauge._thread_id is None:
            plan.swept = _ensure_sweeper()
        for sub in plan.subs:  # each as its kind says (`host.event_subscriptions`)
            try:
                if sub.kind is TIMED:
                    call = sub.call(payload)  # `call` from here on: what calling it returned
                elif sub.kind is OWN or sub.kind is ANY:
                    call = sub.call(payload) if sub.kind is OWN else sub.call(event, payload)
                    if call is None:
                        continue
                    if type(call) is not CoroutineType and not inspect.isawaitable(call):
                        continue
                    if not sub.limit:
                        armed = None
                        await call
                        continue
                    _ensure_sweeper()  # the plan had no `TIMED` entry to start it
                elif sub.kind is DETACHED:
                    armed = None
                    await (self._call if self._closed else self._spawn)(sub, event, payload)
                    continue
                else:
                    continue  # unsubscribed by an earlier handler of this emit (or unloaded)
                armed = sub
                await call  # awaitable: checked above, or `TIMED`
            except BaseException as exc:
                armed = None  # noqa: F841  (read by the sweeper off the frame)
                if await self._caught(sub, event, exc, inspect.currentframe()):
                    raise
        if _expired:
            _withdraw(inspect.currentframe())

    @component_site(describe_subscription)
    def publish(self, event: Event[P], payload: P) -> Awaitable[None] | None:
        """`emit` for a hot path whose event's handlers are plain functions (``model:used``:
        the metrics, tracing, the audit trail's recorder): calls them now, without a coroutine
        (about 0.14 µs less an emit), and returns None when they are done. Otherwise it returns
        the rest of the emit to await: `emit` itself when a handler is a coroutine function or
        detached, `_resume` once a handler returned an awaitable or raised. The same handlers
        run in the same order with the same failure isolation as `emit`'s."""
        if type(payload) is not event.payload:
            payload = coerce_payload(event, payload)
        try:
            plan = self._plan[event]
        except KeyError:
            plan = self._handlers_for(event)
        if not plan.inline:
            return self.emit(event, payload)
        plan.count += 1
        outcome: object
        for sub in plan.subs:  # `sub` names the handler to the loop monitor
            try:
                if sub.kind is OWN:
                    outcome = sub.call(payload)
                elif sub.kind is ANY:
                    outcome = sub.call(event, payload)
                else:
                    continue  # unsubscribed by an earlier handler of this emit (or unloaded)
            except BaseException as exc:
                return self._resume(plan, sub, event, payload, exc, raised=True)
            if outcome is not None:
                return self._resume(plan, sub, event, payload, outcome)
        return None

    @component_site(describe_subscription)
    async def _resume(
        self,
        plan: _Plan,
        first: HandlerSubscription,
        event: Event[Any],
        payload: Any,
        outcome: object,
        raised: bool = False,
    ) -> None:
        """The rest of a `publish` whose handler `first` returned `outcome` (what `emit` awaits
        if it is awaitable, under the handler's deadline) or, with `raised`, raised it
        (reported as `emit` does), then the handlers after it, as `emit` runs them."""
        armed: HandlerSubscription | None = None  # what the sweeper times (host/deadlines.py)
        subs = plan.subs
        for sub in subs[subs.index(first) :]:  # `sub` names the handler to the loop monitor
            try:
                if outcome is None:  # a handler after the first
                    if sub.kind is OWN:
                        outcome = sub.call(payload)
                    elif sub.kind is ANY:
                        outcome = sub.call(event, payload)
                if raised:
                    raised = False
                    assert isinstance(outcome, BaseException)
                    raise outcome
                if outcome is not None and (
                    type(outcome) is CoroutineType or inspect.isawaitable(outcome)
                ):
                    if sub.limit:
                        _ensure_sweeper()
                        armed = sub  # a local store: the sweeper reads it off the frame
                    await outcome
                    armed = None
            except BaseException as exc:
                armed = None  # noqa: F841  (read by the sweeper off the frame)
                if await self._caught(sub, event, exc, inspect.currentframe()):
                    raise
            outcome = None
        if _expired:
            _withdraw(inspect.currentframe())

    async def _caught(
        self,
        sub: HandlerSubscription,
        event: Event[Any],
        exc: BaseException,
        frame: FrameType | None,
    ) -> bool:
        """A handler of an emit (in `frame`) ended with `exc`: reported as its failure, or
        its timeout; True when `exc` must go on up instead (the emitting task is cancelled,
        or the process is exiting)."""
        if isinstance(exc, asyncio.CancelledError):
            if _expired and _timed_out(frame):
                # expired, and no other cancellation pending (the caller's, or an enclosing
                # handler's deadline that expired in the same sweep)
                await self._failed(sub, event, TimeoutError(f"took over {sub.limit}s"))
                return False
            if _cancelling():
                return True
        elif not isinstance(exc, Exception):
            return True
        elif _expired:
            _withdraw(frame)  # a deadline's cancellation turned into another error
        await self._failed(sub, event, exc)
        return False

    async def _await(self, result: Awaitable[None], limit: float | None) -> None:
        if not limit:
            await result
            return
        key = self._deadlines.start(limit)
        try:
            await result
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Expired and no other cancellation pending (the caller's, or an enclosing handler's
            # deadline that expired in the same sweep): a timeout of this handler. Otherwise the
            # cancellation goes on up, so none is swallowed.
            if self._deadlines.finish(key) and not (task and task.cancelling()):
                raise TimeoutError(f"took over {limit}s") from None
            raise
        finally:
            self._deadlines.finish(key)

    def _replan(self) -> None:
        """Drop the plans (subscriptions or the default timeout changed), keeping their counts."""
        for event, plan in self._plan.items():
            self._counts[event.name] = self._counts.get(event.name, 0) + plan.count
        self._plan.clear()

    def _handlers_for(self, event: Event[Any]) -> _Plan:
        name = event.name
        own = sorted(self._subs.get(name, ()), key=sort_key)
        default = self._settings.handler_timeout
        runs: list[HandlerSubscription] = []
        for sub in (*own, *sorted(self._any, key=sort_key)):
            sub.limit = sub.timeout or default
            if sub.detached:
                kind = DETACHED
            elif sub.event is None:
                kind = ANY
            else:
                kind = TIMED if sub.limit and is_async(sub.call) else OWN
            sub.kind = kind
            runs.append(sub)
        timed = 0
        if any(sub.kind is TIMED for sub in runs):
            timed = ALL_TIMED if all(sub.kind is TIMED for sub in runs) else SOME_TIMED
        replaced = self._plan.get(event)
        if replaced is not None and replaced.count:  # its emits are kept: counts only go up
            self._counts[name] = self._counts.get(name, 0) + replaced.count
        plan = self._plan[event] = _Plan(tuple(runs), timed)
        return plan

    async def _spawn(self, sub: HandlerSubscription, event: Event[Any], payload: Any) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.detached_limit)
        if self._slots.locked() and _in_detached.get():
            # A detached handler emitting while every slot is taken: waiting for a slot could
            # mean waiting on itself (all slots held by handlers doing the same), so run it here.
            await self._call(sub, event, payload)
            return
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._run_detached(sub, event, payload))
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    async def _run_detached(
        self, sub: HandlerSubscription, event: Event[Any], payload: Any
    ) -> None:
        _in_detached.set(True)
        try:
            await self._call(sub, event, payload)
        finally:
            assert self._slots is not None
            self._slots.release()

    @component_site(describe_subscription)
    async def _call(self, sub: HandlerSubscription, event: Event[Any], payload: Any) -> None:
        try:
            result = sub.call(event, payload) if sub.event is None else sub.call(payload)
            if result is not None and inspect.isawaitable(result):
                timeout = sub.timeout or self.settings.handler_timeout
                await self._await(result, timeout)
        except Exception as exc:
            await self._failed(sub, event, exc)
        except asyncio.CancelledError as exc:
            if _cancelling():
                raise
            await self._failed(sub, event, exc)

    async def _failed(
        self, sub: HandlerSubscription, event: Event[Any], exc: BaseException
    ) -> None:
        self.failures += 1
        timed_out = isinstance(exc, TimeoutError)
        if timed_out:
            error = "timed out"
        else:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log = logger.bind(plugin=sub.owner or "host", event=event.name)
        log.opt(exception=None if timed_out else exc).error(
            "handler {} for {} failed: {}", sub.label, event.name, error
        )
        if event is HANDLER_FAILED:
            return  # a failing failure handler is logged, never re-emitted (no recursion)
        report = HandlerFailedPayload(
            event=event.name, handler=sub.label, plugin=sub.owner, error=error, timed_out=timed_out
        )
        await self.emit(HANDLER_FAILED, report)

    @property
    def pending(self) -> int:
        """Detached handler runs still in flight."""
        return len(self._detached)

    async def drain(self, within: float | None = None) -> bool:
        """Wait for detached handlers, including those started meanwhile by the ones waited
        for (a detached handler that emits); True if none is left within `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while self._detached:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            _, pending = await asyncio.wait(set(self._detached), timeout=left)
            if pending:
                return False
        return True

    async def aclose(self, grace: float = 5.0) -> None:
        """Let detached handlers finish for up to `grace` seconds, cancel the rest."""
        if self._closed:
            return
        self._closed = True
        if not await self.drain(grace):
            for task in list(self._detached):
                task.cancel()
            await asyncio.gather(*self._detached, return_exceptions=True)


_deadlines.watch(EventBus.emit.__code__)
_deadlines.watch(EventBus._resume.__code__)


def _cancelling() -> bool:
    """Whether the current task is being cancelled (the emitter's caller, a deadline, or
    `aclose`), so a CancelledError goes on up. Otherwise the handler raised one of its own
    (it awaited a job that was cancelled): that handler's failure, isolated like any other."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
