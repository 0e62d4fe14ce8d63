"""One message turn: the pipeline `process_message` and `stream_message` both run.

`run_turn` is the one orchestration of the steps listed in `host.runtime`'s module doc: it
holds the room's turn, opens the message's service scope, and runs the steps of `MessageTurn`;
streaming, it yields the reply text as it becomes final. Every stage is timed and traced in one
place (`MessageTurn.stage`): ``Reply.timings`` and the stage spans come from there only.

Model calls made for the message are attributed to it (`CallContext`; ``model:used`` carries
it). The context is set around each step, never across a yield: the consumer of a stream may
resume it from another task (a web server does), where a context var set here could not be
reset.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from contracts.agent import (
    Action,
    ActionContext,
    ActionResult,
    AgentRuntimeLike,
    Character,
    Evaluator,
    Reply,
    State,
)
from contracts.events import (
    ACTION_COMPLETED,
    ACTION_STARTED,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    ActionCompletedPayload,
    ActionStartedPayload,
)
from contracts.memory import Memory
from contracts.models import TEXT_LARGE, ModelRuntime, TextParams
from contracts.services import ServiceScope
from host import tracing
from host.components import ComponentRegistry
from host.di import Container
from host.directives import mentions, parse_actions, streamable
from host.events import EventBus
from host.invoke import guarded, item_log, validate
from host.memory_writer import MemoryWriter
from host.models import CallContext, call_context
from host.prompt import reply_params
from host.room_queue import RoomQueue
from host.state import StateComposer
from host.turn_payloads import message_payload, reply_memory, reply_of, sent_payload

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["MessageTurn", "TurnParts", "TurnSettings", "run_turn", "should_respond"]


class TurnSettings(Protocol):
    """The settings a turn reads (config ``agents``)."""

    @property
    def respond_in_groups(self) -> bool: ...

    @property
    def max_actions(self) -> int: ...

    @property
    def action_timeout(self) -> float: ...

    @property
    def evaluator_timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class TurnParts:
    """What a turn works with: the same for every message of one agent (built once by
    `AgentRuntime`)."""

    agent: AgentRuntimeLike
    """The agent, as its actions and evaluators see it (``ctx.runtime``)."""
    character: Character
    agent_id: UUID
    settings: TurnSettings
    components: ComponentRegistry
    events: EventBus
    models: ModelRuntime
    memories: MemoryWriter
    composer: StateComposer
    rooms: RoomQueue
    scope: Container
    """The agent's scope: each message opens its ``message`` scope under it."""
    log: Logger
    new_id: Callable[[], UUID]
    now: Callable[[], datetime]
    model_preferences: tuple[str | None, dict[str, str]]
    """What the agent's model calls ask for: its provider first, its model names."""

    def caller(self, message: Memory) -> CallContext:
        """Who the model calls made for `message` serve."""
        provider, names = self.model_preferences
        return CallContext(self.agent_id, message.room_id, message.id, provider, names)


async def run_turn(
    parts: TurnParts, message: Memory, done: Callable[[Reply], None], *, stream: bool
) -> AsyncGenerator[str, None]:
    """Process `message` (see `host.runtime`) and pass its `Reply` to `done`; streaming, yield
    the reply text chunk by chunk (action directives held back and dropped; the actions'
    texts as a last chunk). Not streaming, nothing is yielded but the actions' texts."""
    async with parts.rooms.turn(message.room_id):
        turn = MessageTurn(parts, message)
        caller = parts.caller(message)
        try:
            async with parts.scope.create_scope("message") as services:
                with _serving(caller):
                    await turn.before_model(services)
                if turn.responded and stream:
                    async with aclosing(turn.streamed_reply(caller)) as chunks:
                        async for chunk in chunks:
                            yield chunk
                elif turn.responded:
                    with _serving(caller):
                        await turn.model_reply()
                with _serving(caller):
                    await turn.run_actions()
                extra = turn.append_action_text()
                if extra:
                    yield extra
                with _serving(caller):
                    await turn.finish()
        except BaseException as exc:  # a model error partway, or the consumer stopped
            turn.failed(exc)
            raise
        done(turn.result())


_NO_STATE = State()
"""A turn's state before the providers ran (never changed: a turn replaces it)."""


class _Stage:
    """One stage of a turn: its span, and its seconds added to the turn's timings."""

    __slots__ = ("_name", "_span", "_started", "_turn")

    def __init__(self, turn: MessageTurn, name: str) -> None:
        self._turn = turn
        self._name = name
        # tracing off (no trace): no span to enter and leave, six times a message
        self._span = None if turn.trace is None else tracing.stage(turn.trace, name)
        self._started = 0.0

    def __enter__(self) -> None:
        if self._span is not None:
            self._span.__enter__()
        self._started = time.perf_counter()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        timings = self._turn.timings
        timings[self._name] = timings.get(self._name, 0.0) + time.perf_counter() - self._started
        return None if self._span is None else self._span.__exit__(kind, error, tb)


class MessageTurn:
    """The state of one message going through the pipeline, and its steps."""

    def __init__(self, parts: TurnParts, message: Memory) -> None:
        self.parts = parts
        self.message = message
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {"memory": 0.0}
        self.state = _NO_STATE
        """The composed state, once the providers ran."""
        self.responded = False
        self.text = ""
        self.requested: list[str] = []
        self.usable: list[Action] = []
        self.actions: list[ActionResult] = []
        self.evaluators: list[ActionResult] = []
        self.reply: Memory | None = None
        self.trace = tracing.start_message(
            parts.character.name, parts.agent_id, message.room_id, message.id
        )

    def stage(self, name: str) -> _Stage:
        """Time and trace stage `name` (``with turn.stage("model"): ...``)."""
        return _Stage(self, name)

    def context(self) -> ActionContext:
        """What an action's or evaluator's `validate` and `handler` receive now."""
        return ActionContext(
            runtime=self.parts.agent,
            message=self.message,
            state=self.state,
            previous=list(self.actions),
            reply=self.reply,
            reply_text=self.text,
        )

    async def before_model(self, services: ServiceScope) -> None:
        """``MESSAGE_RECEIVED``, the message saved, the state composed, whether to respond and
        with which actions."""
        parts = self.parts
        message = self.message
        await parts.events.emit(MESSAGE_RECEIVED, message_payload(parts.agent_id, message))
        # embedded once, as what it is for: the search of relevant memories reuses the vector
        with self.stage("memory"):
            self.message = await parts.memories.save(message, kind="query")
        with self.stage("providers"):
            self.state = await parts.composer.compose(self.message, services=services)
        self.responded = should_respond(
            parts.character, self.message, parts.agent_id, groups=parts.settings.respond_in_groups
        )
        if self.responded:
            self.usable = [a for a in parts.components.actions if await self._valid(a)]

    async def _valid(self, item: Action | Evaluator) -> bool:
        if item.validate is None:
            return True
        try:
            return bool(await validate(item, self.context(), self.parts.components))
        except Exception as exc:
            log = item_log(self.parts.components, item, self.parts.log)
            log.opt(exception=exc).warning("validate of {} failed: {}", item.name, exc)
            return False

    def _params(self) -> TextParams:
        return reply_params(self.parts.character, self.state, self.message, self.usable)

    async def model_reply(self) -> None:
        """The model's whole reply (``TEXT_LARGE``)."""
        with self.stage("model"):
            reply = await self.parts.models.use_model(TEXT_LARGE, self._params())
        self.text, self.requested = parse_actions(reply.text)

    async def streamed_reply(self, caller: CallContext) -> AsyncGenerator[str, None]:
        """The model's reply as it streams: each chunk of text that is final, then the rest."""
        raw = sent = ""
        with self.stage("model"):  # spans the yields
            chunks = self.parts.models.stream_model(TEXT_LARGE, self._params())
            try:
                while True:
                    with _serving(caller):
                        try:
                            chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                    if chunk.text:
                        raw += chunk.text
                        ready = streamable(raw)
                        if len(ready) > len(sent) and ready.startswith(sent):
                            yield ready[len(sent) :]
                            sent = ready
            finally:
                close = getattr(chunks, "aclose", None)
                if close is not None:
                    await close()
        self.text, self.requested = parse_actions(raw)
        if len(self.text) > len(sent) and self.text.startswith(sent):
            yield self.text[len(sent) :]

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
        """The actions the reply asks for, the message mentions, or that always run."""
        with self.stage("actions"):
            if self.responded:
                for action in self._chosen()[: self.parts.settings.max_actions]:
                    self.actions.append(await self._run_action(action))

    def _chosen(self) -> list[Action]:
        chosen: list[Action] = []
        for name in self.requested:
            action = self.parts.components.find_action(name)
            if action is None:
                self.parts.log.info("model asked for unknown action {}", name)
            elif action in self.usable and action not in chosen:
                chosen.append(action)
        text = self.message.content.text or ""
        chosen += [a for a in self.usable if a.keywords and a not in chosen and mentions(text, a)]
        chosen += [a for a in self.usable if a.always and a not in chosen]
        return chosen

    async def _run_action(self, action: Action) -> ActionResult:
        parts = self.parts
        started = ActionStartedPayload(
            agent_id=parts.agent_id,
            room_id=self.message.room_id,
            entity_id=self.message.entity_id,
            message_id=self.message.id,
            action=action.name,
            plugin=parts.components.owner_of("action", action.name),
        )
        await parts.events.emit(ACTION_STARTED, started)
        timeout = action.timeout if action.timeout is not None else parts.settings.action_timeout
        t = time.perf_counter()
        result = await guarded(action, self.context(), timeout, parts.log, parts.components)
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
        await parts.events.emit(ACTION_COMPLETED, completed)
        return result

    async def finish(self) -> None:
        """The reply saved, the evaluators run, ``MESSAGE_SENT``; the message's span ends."""
        if self.responded:
            with self.stage("memory"):
                self.reply = await self.parts.memories.save(self._reply_memory())
        with self.stage("evaluators"):
            await self._run_evaluators()
        self.timings["total"] = time.perf_counter() - self.started
        if self.reply is not None:
            sent = sent_payload(self.parts.agent_id, self.reply, self.message.id, self.timings)
            await self.parts.events.emit(MESSAGE_SENT, sent)
        if self.trace is not None:
            self.trace.end(responded=self.responded)

    def _reply_memory(self) -> Memory:
        parts = self.parts
        return reply_memory(
            parts.new_id(),
            parts.agent_id,
            self.message,
            self.text,
            [r.name for r in self.actions],
            _fallback_metadata(call_context.get()),
            parts.now(),
        )

    async def _run_evaluators(self) -> None:
        parts = self.parts
        for evaluator in parts.components.evaluators:
            if not self.responded and not evaluator.always_run:
                continue
            if not await self._valid(evaluator):
                continue
            timeout = (
                evaluator.timeout
                if evaluator.timeout is not None
                else parts.settings.evaluator_timeout
            )
            outcome = await guarded(evaluator, self.context(), timeout, parts.log, parts.components)
            if outcome is not None:
                self.evaluators.append(outcome)

    def failed(self, error: BaseException) -> None:
        """The pipeline raised `error`: the message's span ends with it."""
        if self.trace is not None:
            self.trace.end(error)

    def result(self) -> Reply:
        """What `process_message` returns."""
        return reply_of(
            self.parts.agent_id,
            self.message,
            responded=self.responded,
            text=self.text if self.responded else "",
            reply=self.reply,
            actions=list(self.actions),
            evaluators=list(self.evaluators),
            skipped=dict(self.state.skipped),
            timings=dict(self.timings),
        )


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


class _serving:
    """Model calls made inside are attributed to `caller` (``model:used`` carries it). A class,
    not a generator-based context manager: entered four times a message, at half the cost."""

    __slots__ = ("_caller", "_token")

    def __init__(self, caller: CallContext) -> None:
        self._caller = caller

    def __enter__(self) -> None:
        self._token = call_context.set(self._caller)

    def __exit__(self, *exc: object) -> None:
        call_context.reset(self._token)
