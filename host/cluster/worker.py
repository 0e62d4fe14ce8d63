"""`Worker`: claims rooms from the `RoomQueue` and runs their messages through the agents.

Up to ``concurrency`` rooms at once, one message at a time in each, in arrival order. Each message
runs in a `Unit` (its writes held back, its ids derived from the message id) and is committed with
the room's progress under the room's fencing token. A failing message is tried again, then
parked after ``max_tries`` with its error, and the room moves on. Leases are renewed every third
of their length; a room found lost (another worker claimed it) is dropped at once. `stop` stops
claiming, lets the messages in progress finish (up to ``drain_timeout``) and releases the rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from uuid import UUID, uuid4

from loguru import logger

from contracts.agent import Reply
from contracts.cluster import MESSAGE_COMMITTED, ClusterSettings, MessageTry, trying
from contracts.storage import StorageError
from host.agents import AgentManager
from host.runtime import AgentRuntime

from .link import NatsLink, Subjects
from .outbox import Outbox
from .queue import RoomQueue
from .records import Abandoned, Claim, Committed, Fenced, QueuedMessage
from .unit import Unit, working_on

__all__ = ["REPLY_EXCLUDE", "Worker"]

_log = logger.bind(component="cluster")

REPLY_EXCLUDE: dict[str, object] = {"reply": {"embedding"}}

RoomKey = tuple[UUID, UUID]

PHASES = ("claim", "idle", "take", "run", "commit", "notify")
"""Where a worker's time goes: claiming rooms (one PostgreSQL transaction each, found or not),
waiting for work (a wake-up or the next poll), taking a message when the commit did not bring
it, running the agent's turn (the model's time included), committing, telling the API process."""


class Worker:
    def __init__(
        self,
        queue: RoomQueue,
        link: NatsLink,
        agents: AgentManager,
        settings: ClusterSettings,
        outbox: Outbox,
    ) -> None:
        self.outbox = outbox
        self.queue = queue
        self.link = link
        self.agents = agents
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._rooms: dict[RoomKey, tuple[Claim, asyncio.Task[None]]] = {}
        self._committing: set[RoomKey] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.counts: dict[str, int] = dict.fromkeys(
            ("processed", "failed", "parked", "fenced", "takeovers", "lost"), 0
        )
        """This process's counters (sampled as metrics; ``GET /cluster`` has the shared ones)."""
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        """Seconds spent in each phase (`PHASES`), summed over the rooms served at once."""

    async def start(self) -> None:
        async def wake(_subject: str, _data: bytes) -> None:
            self._wake.set()

        # every worker: one picked by NATS (a queue group) may have no free slot, and the
        # others would wait for their next poll; a worker without a free slot claims nothing
        await self.link.subscribe(Subjects.WAKE, wake)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="cluster-claim"),
            asyncio.create_task(self._lease_loop(), name="cluster-lease"),
        ]
        if self.settings.retention is not None:
            self._tasks.append(asyncio.create_task(self._purge_loop(), name="cluster-purge"))

    @property
    def held(self) -> list[Claim]:
        return [claim for claim, _task in self._rooms.values()]

    # ------------------------------------------------------------------ claiming

    def _agent_ids(self) -> list[UUID]:
        return [runtime.agent_id for runtime in self.agents.running]

    async def _claim_loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                return
            started = time.perf_counter()
            try:
                claim = await self._claim()
            except Exception as exc:
                self._slots.release()
                _log.warning("claiming a room failed ({}); retrying", exc)
                await self._idle()
                continue
            finally:
                self.seconds["claim"] += time.perf_counter() - started
            if claim is None:
                self._slots.release()
                await self._idle()
                continue
            task = asyncio.create_task(self._serve(claim), name=f"room-{claim.room_id}")
            self._hold(claim, task)

    async def _claim(self) -> Claim | None:
        """A room to serve, if one waits. A claim whose connection dropped may have landed
        (its answer lost): the room it holds is found by its token and served now, not left
        held until its lease ends."""
        token = uuid4()
        try:
            return await self.queue.claim(self._agent_ids(), token)
        except StorageError as exc:
            claim = await self.queue.claimed(token)
            if claim is not None:
                _log.warning(
                    "claiming a room failed ({}) after the claim had landed: serving room {}",
                    exc,
                    claim.room_id,
                )
                return claim
            raise

    def _hold(self, claim: Claim, task: asyncio.Task[None]) -> None:
        """`claim`'s room is served by `task` (its lease renewed, dropped if found lost)."""
        if claim.takeover:
            self.counts["takeovers"] += 1
            _log.info("took over room {} (its worker's lease ran out)", claim.room_id)
        self._rooms[(claim.agent_id, claim.room_id)] = (claim, task)

    async def _idle(self) -> None:
        """Until a wake-up (NATS) or the next poll."""
        started = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
        self._wake.clear()
        self.seconds["idle"] += time.perf_counter() - started

    async def _lease_loop(self) -> None:
        period = min(self.settings.lease / 3, 2.0)
        while True:
            await asyncio.sleep(period)
            try:
                claims = self.held
                kept = await self.queue.renew(claims)
            except Exception as exc:
                _log.warning("renewing leases failed: {}", exc)
                continue
            for claim in claims:
                key = (claim.agent_id, claim.room_id)
                entry = self._rooms.get(key)
                if (
                    key not in kept
                    and entry is not None
                    and entry[0] is claim
                    and key not in self._committing  # its commit is fenced if it was lost
                ):
                    _log.warning("lost room {} (lease ran out); dropping it", claim.room_id)
                    self.counts["lost"] += 1
                    entry[1].cancel()

    async def _purge_loop(self) -> None:
        """Every ``purge_interval``: the messages answered more than ``retention`` ago are
        purged (by one worker at a time, `RoomQueue.purge`)."""
        retention = self.settings.retention
        assert retention is not None
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            try:
                purged = await self.queue.purge(
                    retention, self.settings.purge_batch, self.settings.purge_batches
                )
            except Exception as exc:
                _log.warning("purging answered messages failed ({}); next time", exc)
                continue
            if purged:
                _log.info("purged {} messages answered more than {:g} s ago", purged, retention)

    # ------------------------------------------------------------------ one room

    async def _serve(self, claim: Claim) -> None:
        """Serve `claim`'s room, then the rooms its last commits claimed, one after the other
        in this slot."""
        try:
            following: Claim | None = claim
            while following is not None:
                following = await self._serve_room(following)
        finally:
            self._slots.release()

    async def _serve_room(self, claim: Claim) -> Claim | None:
        """Process the room's messages until it is empty (or lost, or we stop); returns the
        room the commit that let it go claimed, if any."""
        try:
            runtime = self.agents.get(claim.agent_id)
            queued = claim.first
            while True:
                if queued is None:
                    if self._stopping or await self.queue.release(claim):
                        return None
                    queued = await self._next(claim)
                    continue
                if queued.tries > self.settings.max_tries:
                    error = (
                        f"its worker stopped {queued.tries - 1} times while processing it"
                        f" (crash or lost lease); last error: {queued.error}"
                    )
                    await self.queue.park(claim, queued, error)
                    self.counts["parked"] += 1
                    await self._announce(queued, "parked", None, error)
                else:
                    committed, queued, claimed = await self._process(claim, runtime, queued)
                    if committed:
                        if queued is None:
                            return claimed  # the room was empty and is released (or we stop)
                        continue
                # parked, or failed (tried again): what comes next, unless stopping
                queued = None if self._stopping else await self._next(claim)
        except Fenced as exc:
            self.counts["fenced"] += 1
            _log.warning("{}: nothing committed", exc)
        except Abandoned as exc:
            _log.warning("{}", exc)
        except asyncio.CancelledError:
            if not self._stopping:
                return None  # lost room (lease loop)
            raise
        except Exception as exc:
            _log.opt(exception=exc).warning("room {} left: {}", claim.room_id, exc)
        finally:
            self._drop(claim)
        return None

    def _drop(self, claim: Claim) -> None:
        """`claim`'s room is no longer renewed by the lease loop."""
        key = (claim.agent_id, claim.room_id)
        if self._rooms.get(key, (None,))[0] is claim:
            del self._rooms[key]

    async def _next(self, claim: Claim) -> QueuedMessage | None:
        started = time.perf_counter()
        try:
            return await self.queue.next_message(claim)
        finally:
            self.seconds["take"] += time.perf_counter() - started

    async def _process(
        self, claim: Claim, runtime: AgentRuntime, queued: QueuedMessage
    ) -> tuple[bool, QueuedMessage | None, Claim | None]:
        """Run and commit `queued`: (True, the room's next message or None once released or
        stopping, the room claimed in the same commit once this one was let go), or (False,
        None, None) when it failed (recorded, parked at its last try)."""
        unit = Unit(queued.id)
        attempt = MessageTry(
            agent_id=claim.agent_id,
            room_id=claim.room_id,
            message_id=queued.id,
            number=queued.tries,
            idempotency_key=queued.idem_key,
            worker=self.queue.node_id,
        )
        started = time.perf_counter()
        try:
            with working_on(unit), trying(attempt):
                reply = await self._run(runtime, queued)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            _log.warning("message {} failed (try {}): {}", queued.id, queued.tries, error)
            self.counts["failed"] += 1
            if await self.queue.fail(claim, queued, error, self.settings.max_tries):
                self.counts["parked"] += 1
                _log.error("message {} parked after {} tries: {}", queued.id, queued.tries, error)
                await self._announce(queued, "parked", None, error)
            else:
                await asyncio.sleep(min(0.1 * 2**queued.tries, 2.0))
            return False, None, None
        ran = time.perf_counter()
        self.seconds["run"] += ran - started
        text = reply.model_dump_json(exclude=REPLY_EXCLUDE)  # type: ignore[arg-type]
        key = (claim.agent_id, claim.room_id)
        self._committing.add(key)  # a lease renewal meanwhile sees a room let go: not lost
        token = uuid4()  # this commit's: a retry recognises it if it landed
        # read once: the retry must ask what the first commit did (a stop meanwhile would
        # make it look for a next message that commit never took)
        take_next = not self._stopping
        try:
            try:
                committed = await self._commit(claim, queued, unit, text, token, take_next)
            except StorageError as exc:  # a connection PostgreSQL dropped (a restart): again
                _log.warning("committing message {} failed ({}); again", queued.id, exc)
                committed = await self._commit(
                    claim, queued, unit, text, token, take_next, again=True
                )
                if committed.landed:
                    _log.warning(
                        "message {}: its commit had landed (its answer was lost); going on",
                        queued.id,
                    )
        finally:
            self._committing.discard(key)
            self.seconds["commit"] += (done := time.perf_counter()) - ran
        if committed.released:  # let go: the lease loop must not find it "lost" and cancel us
            self._drop(claim)
        if committed.claimed is not None and (task := asyncio.current_task()) is not None:
            self._hold(committed.claimed, task)  # before any await: the lease loop renews it
        self.counts["processed"] += 1
        _log.debug("message {} done in {:.3f}s", queued.id, done - started)
        await self._announce(queued, "done", text, None)
        self.outbox.post(committed.outbox)  # sent meanwhile; the relay loop sends what fails
        with trying(attempt):
            await runtime.events.emit(MESSAGE_COMMITTED, attempt)
        self.seconds["notify"] += time.perf_counter() - done
        return True, committed.following, committed.claimed

    async def _commit(
        self,
        claim: Claim,
        queued: QueuedMessage,
        unit: Unit,
        text: str,
        token: UUID,
        take_next: bool,
        *,
        again: bool = False,
    ) -> Committed:
        """Commit with the room's next message (`take_next`: not stopping); once the room is
        empty, claim another room in the same transaction (this slot serves it next).
        `again`: after a commit under `token` whose connection was lost (it may have landed:
        `RoomQueue.commit_again`), with the same `take_next`."""
        commit = self.queue.commit_again if again else self.queue.commit
        return await commit(
            claim,
            queued,
            unit,
            text,
            token=token,
            take_next=take_next,
            claim_from=self._agent_ids(),
        )

    async def _run(self, runtime: AgentRuntime, queued: QueuedMessage) -> Reply:
        if not queued.stream or queued.origin is None:
            return await runtime.process_message(queued.message)
        stream = runtime.stream_message(queued.message)
        subject = Subjects.chunk(queued.origin)
        try:
            async for chunk in stream:
                data = {"id": str(queued.id), "try": queued.tries, "text": chunk}
                await self.link.publish(subject, json.dumps(data).encode())
        finally:
            await stream.aclose()
        assert stream.reply is not None
        return stream.reply

    async def _announce(
        self, queued: QueuedMessage, status: str, reply: str | None, error: str | None
    ) -> None:
        """Tell the API process holding the request (it polls PostgreSQL otherwise)."""
        if queued.origin is None:
            return
        data = {"id": str(queued.id), "status": status, "reply": reply, "error": error}
        await self.link.publish(Subjects.reply(queued.origin), json.dumps(data).encode())

    # ------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop claiming, finish the messages in progress (up to ``drain_timeout``), release."""
        self._stopping = True
        self._wake.set()
        claiming, leasing = self._tasks[:1], self._tasks[1:]
        await _cancel(claiming)
        rooms = [task for _claim, task in self._rooms.values()]
        if rooms:  # the leases are still renewed meanwhile: a long message is not taken over
            _done, pending = await asyncio.wait(rooms, timeout=self.settings.drain_timeout)
            await _cancel(list(pending))
        await _cancel(leasing)
        try:
            released = await self.queue.release_all()
            await self.queue.heartbeat(self.settings.role, stopped=True)
        except Exception as exc:
            _log.warning("releasing rooms failed ({}): they free up when their leases end", exc)
        else:
            _log.info("worker stopped; released {} rooms", released)
        _log.info(
            "worker phases: {}",
            json.dumps({"processed": self.counts["processed"], "seconds": self.seconds}),
        )


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
