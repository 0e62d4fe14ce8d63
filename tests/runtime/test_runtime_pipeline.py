"""process_message end to end: events in order, isolation of failing parts, room ordering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
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
from contracts.memory import Memory, MemoryQuery
from contracts.models import TEXT_LARGE, ModelHandler, TextChunk, TextParams, TextResult
from contracts.storage import MemoryText, SearchParams
from contracts.vector import Vector
from host.characters import load_character
from host.directives import parse_actions
from host.prompt import build_prompt
from host.runtime import AgentRuntime
from host.testing import MOCK_PRIORITY

from .runtime_helpers import PIPELINE_EVENTS, Rig, make_rig


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """The rig on the test kit's step clock and sequential ids (deterministic)."""
    async with make_rig("sqlite", real_time=False) as built:
        yield built


ROOM = UUID("00000000-0000-4000-8000-000000000001")
USER = UUID("00000000-0000-4000-8000-0000000000aa")


def _pipeline(rig: Rig) -> list[str]:
    """The pipeline's events in order, model calls named by model type."""
    out = []
    for name, payload in rig.seen:
        if name == "model:used":
            out.append(f"model:used {payload.model_type}")
        elif name in PIPELINE_EVENTS:
            out.append(name)
    return out


EXPECTED_ORDER = [
    "message:received",
    "model:used text_embedding",  # the incoming message, embedded ...
    "memory:created",  # ... then saved
    "model:used text_large",
    "action:started",
    "action:completed",
    "model:used text_embedding",  # the reply, embedded ...
    "memory:created",  # ... then saved, before the evaluators run
    "message:sent",
]


async def test_pipeline_events_fire_in_order(rig: Rig) -> None:
    evaluated: list[int] = []

    async def step(ctx: ActionContext) -> ActionResult:
        return ActionResult(text="done")

    async def evaluate(ctx: ActionContext) -> ActionResult:
        evaluated.append(len(_pipeline(rig)))
        return ActionResult()

    rig.components.add(
        "test",
        actions=[Action("STEP", "a step", step, always=True)],
        evaluators=[Evaluator("after", "", evaluate)],
    )
    message = rig.runtime.new_message("I feel sad", room_id=ROOM, entity_id=USER)
    reply = await rig.runtime.process_message(message)
    assert _pipeline(rig) == EXPECTED_ORDER
    assert evaluated == [len(EXPECTED_ORDER) - 1]  # after the reply was saved, before sent
    for payload in rig.payloads("model:used"):  # every model call names what it served
        assert (payload.agent_id, payload.room_id) == (rig.runtime.agent_id, ROOM)
        assert payload.message_id == message.id
    assert reply.responded and reply.text.endswith("done")
    assert reply.actions[0].name == "STEP" and reply.actions[0].success
    assert reply.actions[0].duration is not None
    completed = rig.payloads("action:completed")[0]
    assert _field(completed, "success") is True
    assert _field(completed, "duration") >= 0


async def test_messages_and_replies_saved_with_embeddings(rig: Rig) -> None:
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("Hello there", room_id=ROOM, entity_id=USER)
    )
    rows = await rig.db.get_memories(MemoryQuery(room_id=ROOM, order="asc"))
    assert [r.content.text for r in rows] == ["Hello there", reply.text]
    assert all(r.embedding for r in rows)
    assert rows[1].entity_id == rig.runtime.agent_id
    assert rows[1].content.model_extra is not None
    assert rows[1].content.model_extra["in_reply_to"] == str(rows[0].id)
    assert reply.reply is not None and reply.reply.id == rows[1].id
    assert set(reply.timings) >= {"memory", "providers", "model", "actions", "evaluators", "total"}


async def test_failing_and_slow_providers_are_skipped(rig: Rig) -> None:
    cancelled: list[str] = []

    async def good(message: Memory, state: State) -> ProviderResult:
        return ProviderResult(text="GOOD TEXT", values={"mood": "fine"})

    async def broken(message: Memory, state: State) -> ProviderResult:
        raise RuntimeError("provider exploded")

    async def slow(message: Memory, state: State) -> ProviderResult:
        try:
            await asyncio.Event().wait()  # never answers: only its timeout ends it
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise
        return ProviderResult(text="never")

    async def wrong(message: Memory, state: State) -> ProviderResult:
        return "not a result"  # type: ignore[return-value]

    seen: list[State] = []

    async def look(ctx: ActionContext) -> ActionResult:
        seen.append(ctx.state)
        return ActionResult()

    rig.components.add(
        "test",
        providers=[
            Provider("good", good),
            Provider("broken", broken),
            Provider("slow", slow, timeout=0.1),
            Provider("wrong", wrong),
        ],
        actions=[Action("LOOK", "look", look, always=True)],
    )
    reply, lines = await _said_by_plugin(rig)
    for name in ("broken", "slow", "wrong"):  # each line carries the plugin that registered it
        assert any(p == "test" and f"provider {name} " in m for p, m in lines), (name, lines)
    assert cancelled == ["slow"]  # cut off by its own timeout
    assert reply.responded and reply.reply is not None
    assert set(reply.skipped_providers) == {"broken", "slow", "wrong"}
    assert "provider exploded" in reply.skipped_providers["broken"]
    assert reply.skipped_providers["slow"] == "timed out after 0.1s"
    assert "not ProviderResult" in reply.skipped_providers["wrong"]
    state = seen[0]
    assert "GOOD TEXT" in state.text and "never" not in state.text
    assert state.values["mood"] == "fine"
    assert "broken" not in state.providers and "good" in state.providers


async def test_providers_run_in_parallel(rig: Rig) -> None:
    """Each provider waits for the others to start: run one after another, they would all
    time out instead."""
    names = ["p1", "p2", "p3"]
    barrier = asyncio.Barrier(len(names))

    def make(name: str) -> Provider:
        async def get(message: Memory, state: State) -> ProviderResult:
            await barrier.wait()
            return ProviderResult(text=f"from {name}")

        return Provider(name, get, timeout=10)

    rig.components.add("test", providers=[make(n) for n in names])
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
    )
    assert reply.skipped_providers == {}
    assert all(f"from {n}" in rig.prompts[-1] for n in names)


async def test_provider_position_private_and_dynamic(rig: Rig) -> None:
    def make(text: str) -> Any:
        async def get(message: Memory, state: State) -> ProviderResult:
            return ProviderResult(text=text, values={text: True})

        return get

    rig.components.add(
        "test",
        providers=[
            Provider("late", make("LATE"), position=5),
            Provider("early", make("EARLY"), position=-5),
            Provider("hidden", make("HIDDEN"), private=True),
            Provider("asked", make("ASKED"), dynamic=True),
        ],
    )
    message = rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
    await rig.runtime.process_message(message)
    prompt = rig.prompts[-1]
    assert prompt.index("EARLY") < prompt.index("LATE")
    assert "HIDDEN" not in prompt and "ASKED" not in prompt
    state = await rig.runtime.compose_state(message, include=["asked"])
    assert state.values["HIDDEN"] is True  # a private provider's values still join the state
    assert "ASKED" in state.text and "HIDDEN" not in state.text
    assert state.text.index("EARLY") < state.text.index("ASKED") < state.text.index("LATE")


async def _said_by_plugin(rig: Rig) -> tuple[Reply, list[tuple[str | None, str]]]:
    """The reply to "hi", and the log lines its turn wrote: (the plugin they name, the text)."""
    lines: list[tuple[str | None, str]] = []
    sink = logger.add(
        lambda m: lines.append((m.record["extra"].get("plugin"), m.record["message"]))
    )
    try:
        reply = await rig.runtime.process_message(
            rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
        )
    finally:
        logger.remove(sink)
    return reply, lines


async def test_failing_action_and_evaluator_reported_reply_still_sent(rig: Rig) -> None:
    async def boom(ctx: ActionContext) -> ActionResult:
        raise ValueError("action broke")

    async def after(ctx: ActionContext) -> ActionResult:
        # results are chained: the second action sees the first one's failure
        assert ctx.previous[0].name == "BOOM" and not ctx.previous[0].success
        return ActionResult(text="second ran", values={"n": len(ctx.previous)})

    async def bad_eval(ctx: ActionContext) -> ActionResult:
        raise RuntimeError("evaluator broke")

    async def good_eval(ctx: ActionContext) -> ActionResult:
        assert ctx.reply is not None
        return ActionResult(text=f"saw {ctx.reply.content.text[:5]}")

    rig.components.add(
        "test",
        actions=[
            Action("BOOM", "fails", boom, always=True),
            Action("AFTER", "", after, always=True),
        ],
        evaluators=[Evaluator("bad", "", bad_eval), Evaluator("good", "", good_eval)],
    )
    reply, lines = await _said_by_plugin(rig)
    # each failure's line carries the plugin that registered the component
    assert ("test", "BOOM failed: action broke") in lines
    assert ("test", "bad failed: evaluator broke") in lines
    assert reply.responded and reply.reply is not None
    assert [(a.name, a.success) for a in reply.actions] == [("BOOM", False), ("AFTER", True)]
    assert reply.actions[0].error is not None and "action broke" in reply.actions[0].error
    assert [(e.name, e.success) for e in reply.evaluators] == [("bad", False), ("good", True)]
    assert reply.evaluators[0].error is not None and "evaluator broke" in reply.evaluators[0].error
    assert "second ran" in reply.text
    assert "message:sent" in [name for name, _ in rig.seen]
    outcomes = [_field(p, "success") for p in rig.payloads("action:completed")]
    assert outcomes == [False, True]


async def test_slow_action_times_out_and_always_run_evaluator(rig: Rig) -> None:
    async def stuck(ctx: ActionContext) -> ActionResult:
        await asyncio.Event().wait()
        return ActionResult()

    ran: list[bool] = []

    async def watch(ctx: ActionContext) -> None:
        ran.append(ctx.reply is None)

    rig.components.add(
        "test",
        actions=[Action("STUCK", "", stuck, always=True, timeout=0.05)],
        evaluators=[Evaluator("watch", "", watch, always_run=True)],
    )
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
    )
    assert reply.responded and reply.actions[0].error == "timed out after 0.05s"
    quiet = rig.runtime.new_message("x", room_id=ROOM, entity_id=USER, respond=False)
    assert not (await rig.runtime.process_message(quiet)).responded
    assert ran == [False, True]  # ran after a reply, and for the message not answered


async def test_a_handlers_own_timeout_error_is_a_failure_not_a_timeout(rig: Rig) -> None:
    async def upstream(message: Memory, state: State) -> ProviderResult:
        raise TimeoutError("weather API did not answer")

    async def call(ctx: ActionContext) -> ActionResult:
        raise TimeoutError("socket read")

    rig.components.add(
        "test",
        providers=[Provider("upstream", upstream)],
        actions=[Action("CALL", "", call, always=True)],
    )
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
    )
    assert reply.skipped_providers["upstream"] == "TimeoutError: weather API did not answer"
    assert reply.actions[0].error == "TimeoutError: socket read"


async def test_validate_false_or_failing_skips_action(rig: Rig) -> None:
    ran: list[str] = []

    async def handler(ctx: ActionContext) -> ActionResult:
        ran.append("ran")
        return ActionResult()

    async def no(ctx: ActionContext) -> bool:
        return False

    async def crash(ctx: ActionContext) -> bool:
        raise RuntimeError("validate broke")

    rig.components.add(
        "test",
        actions=[
            Action("NO", "", handler, validate=no, always=True),
            Action("CRASH", "", handler, validate=crash, always=True),
        ],
    )
    reply, lines = await _said_by_plugin(rig)
    assert ran == [] and reply.actions == []
    assert ("test", "validate of CRASH failed: validate broke") in lines  # under its plugin


async def test_model_requested_actions_run(rig: Rig) -> None:
    order: list[str] = []

    def make(name: str) -> Action:
        async def handler(ctx: ActionContext) -> ActionResult:
            order.append(name)
            return ActionResult(values={"step": name})

        return Action(name, f"does {name}", handler, similes=(f"{name}_ALIAS",))

    rig.components.add("test", actions=[make("FIRST"), make("SECOND"), make("UNUSED")])
    rig.script_reply("Sure.\nACTIONS: SECOND_ALIAS, FIRST, MISSING")
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("do it", room_id=ROOM, entity_id=USER)
    )
    assert order == ["SECOND", "FIRST"]
    assert reply.text == "Sure."
    assert reply.reply is not None
    assert (reply.reply.content.model_extra or {})["actions"] == ["SECOND", "FIRST"]
    assert "FIRST: does FIRST" in rig.prompts[-1]


async def test_group_message_without_mention_is_not_answered(rig: Rig) -> None:
    message = rig.runtime.new_message(
        "what a day", room_id=ROOM, entity_id=USER, channel_type="group"
    )
    reply = await rig.runtime.process_message(message)
    assert not reply.responded and reply.reply is None and reply.text == ""
    assert "message:sent" not in [name for name, _ in rig.seen]
    assert await rig.db.count_memories(MemoryQuery(room_id=ROOM)) == 1
    named = rig.runtime.new_message(
        f"hey {rig.runtime.name}, hello", room_id=ROOM, entity_id=USER, channel_type="group"
    )
    assert (await rig.runtime.process_message(named)).responded


async def test_own_messages_are_not_answered(rig: Rig) -> None:
    own = rig.runtime.new_message("echo", room_id=ROOM, entity_id=rig.runtime.agent_id)
    assert not (await rig.runtime.process_message(own)).responded


async def test_same_room_in_order_different_rooms_parallel(rig: Rig) -> None:
    log: list[tuple[str, str]] = []

    async def slow(message: Memory, state: State) -> ProviderResult:
        log.append(("start", message.content.text))
        await asyncio.sleep(0.05)
        log.append(("end", message.content.text))
        return ProviderResult()

    rig.components.add("test", providers=[Provider("slow", slow)])
    texts = [f"m{i}" for i in range(6)]
    tasks = []
    for text in texts:
        tasks.append(
            asyncio.create_task(
                rig.runtime.process_message(
                    rig.runtime.new_message(text, room_id=ROOM, entity_id=USER)
                )
            )
        )
        await asyncio.sleep(0)  # arrival order = creation order
    await asyncio.gather(*tasks)
    assert log == [(kind, t) for t in texts for kind in ("start", "end")]
    rows = await rig.db.get_memories(MemoryQuery(room_id=ROOM, entity_id=USER, order="asc"))
    assert [r.content.text for r in rows] == texts

    log.clear()
    rooms = [uuid4() for _ in range(4)]
    await asyncio.gather(
        *(
            rig.runtime.process_message(rig.runtime.new_message(f"r{i}", room_id=r, entity_id=USER))
            for i, r in enumerate(rooms)
        )
    )
    starts = [i for i, (kind, _) in enumerate(log) if kind == "start"]
    first_end = next(i for i, (kind, _) in enumerate(log) if kind == "end")
    assert len(starts) == 4 and all(i < first_end for i in starts)  # all rooms inside at once


async def test_streaming_yields_chunks_and_reply(rig: Rig) -> None:
    async def step(ctx: ActionContext) -> ActionResult:
        return ActionResult(text="done")

    rig.components.add("test", actions=[Action("STEP", "a step", step, always=True)])
    message = rig.runtime.new_message("I am worried about my mother", room_id=ROOM, entity_id=USER)
    stream = rig.runtime.stream_message(message)
    chunks = [chunk async for chunk in stream]
    assert stream.reply is not None and stream.reply.responded
    assert "".join(chunks) == stream.reply.text
    assert len(chunks) >= 3 and chunks[-1] == "\ndone"  # model words, then the action's text
    assert _pipeline(rig) == EXPECTED_ORDER
    large = [p for p in rig.payloads("model:used") if p.model_type == "text_large"]
    assert large[0].streamed
    for payload in rig.payloads("model:used"):  # streamed calls are attributed too
        assert (payload.room_id, payload.message_id) == (ROOM, message.id)


async def test_processed_and_streamed_turns_time_the_same_stages(rig: Rig) -> None:
    """One turn serves both entry points: the same stages timed, in the same order, and the
    reply's timings are what MESSAGE_SENT carries."""
    processed = await rig.runtime.process_message(
        rig.runtime.new_message("I feel tired", room_id=ROOM, entity_id=USER)
    )
    stream = rig.runtime.stream_message(
        rig.runtime.new_message("I feel sad", room_id=ROOM, entity_id=USER)
    )
    await stream.collect()
    streamed = stream.reply
    assert streamed is not None
    stages = ["memory", "providers", "model", "actions", "evaluators", "total"]
    assert list(processed.timings) == list(streamed.timings) == stages
    for reply in (processed, streamed):
        assert all(seconds >= 0 for seconds in reply.timings.values())
        assert sum(reply.timings[s] for s in stages[:-1]) <= reply.timings["total"]
    sent = [_field(p, "timings") for p in rig.payloads("message:sent")]
    assert sent == [processed.timings, streamed.timings]
    silent = await rig.runtime.process_message(  # not responding: no model stage
        rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER, respond=False)
    )
    assert list(silent.timings) == ["memory", "providers", "actions", "evaluators", "total"]


async def test_stream_closed_early_releases_the_room(rig: Rig) -> None:
    rig.script_reply("one two three four")
    stream = rig.runtime.stream_message(rig.runtime.new_message("a", room_id=ROOM, entity_id=USER))
    async for _chunk in stream:
        break
    await stream.aclose()
    assert stream.reply is None
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("b", room_id=ROOM, entity_id=USER)
    )
    assert reply.responded


STREAMED_REPLIES = [
    "Sure thing.\nACTIONS: STEP",
    "Let me [STEP] check that.",
    "Actions speak louder than words.",
    "[STEP] fine\n\nactions: step\nafter that",
    "A short one   \n  with spaces   ",
]


@pytest.mark.parametrize("raw", STREAMED_REPLIES)
async def test_streamed_chunks_never_show_action_directives(rig: Rig, raw: str) -> None:
    async def step(ctx: ActionContext) -> ActionResult:
        return ActionResult(text="done")

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text=raw)

    async def by_char(params: TextParams) -> AsyncIterator[TextChunk]:
        for index, char in enumerate(raw):  # the hardest split: a directive over many chunks
            yield TextChunk(text=char, index=index)

    rig.components.add("test", actions=[Action("STEP", "a step", step)])
    handler = ModelHandler(TEXT_LARGE, whole, by_char, priority=MOCK_PRIORITY + 1)
    rig.models.register(handler, owner="chars")
    stream = rig.runtime.stream_message(rig.runtime.new_message("go", room_id=ROOM, entity_id=USER))
    chunks = [chunk async for chunk in stream]
    assert stream.reply is not None
    assert "".join(chunks) == stream.reply.text
    assert "ACTIONS:" not in stream.reply.text.upper() and "[STEP]" not in stream.reply.text
    model_text = stream.reply.text.removesuffix("\ndone")
    assert model_text == parse_actions(raw)[0]
    assert len(chunks) > 2  # still streamed as it came, not all at the end


async def test_an_action_returning_none_is_a_named_failure(rig: Rig) -> None:
    async def nothing(ctx: ActionContext) -> ActionResult:
        return None  # type: ignore[return-value]

    rig.components.add("test", actions=[Action("NOTHING", "", nothing, always=True)])
    reply = await rig.runtime.process_message(
        rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
    )
    assert reply.responded and reply.reply is not None
    result = reply.actions[0]
    assert (result.name, result.success, result.error) == (
        "NOTHING",
        False,
        "handler returned None",
    )
    assert result.duration is not None
    assert (reply.reply.content.model_extra or {})["actions"] == ["NOTHING"]


async def test_a_message_queued_when_the_agent_stops_is_refused(rig: Rig) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def slow(message: Memory, state: State) -> ProviderResult:
        ran.append(message.content.text)
        if message.content.text == "first":
            entered.set()
            await gate.wait()
        return ProviderResult()

    rig.components.add("test", providers=[Provider("slow", slow, timeout=60)])
    runtime = rig.runtime
    first = asyncio.create_task(
        runtime.process_message(runtime.new_message("first", room_id=ROOM, entity_id=USER))
    )
    await entered.wait()
    queued = asyncio.create_task(
        runtime.process_message(runtime.new_message("queued", room_id=ROOM, entity_id=USER))
    )
    await asyncio.sleep(0)
    assert runtime.rooms.waiting(ROOM) == 2  # the second message waits for the room
    stopping = asyncio.create_task(runtime.stop())
    await asyncio.sleep(0)
    gate.set()
    await stopping
    assert (await first).responded  # in progress: finished
    with pytest.raises(AgentError, match="stopped while the message waited"):
        await queued
    assert ran == ["first"]
    rows = await rig.db.get_memories(MemoryQuery(room_id=ROOM, entity_id=USER))
    assert [r.content.text for r in rows] == ["first"]


async def test_recent_messages_in_prompt(rig: Rig) -> None:
    await rig.runtime.process_message(
        rig.runtime.new_message("first line", room_id=ROOM, entity_id=USER)
    )
    await rig.runtime.process_message(
        rig.runtime.new_message("second line", room_id=ROOM, entity_id=USER)
    )
    prompt = rig.prompts[-1]
    assert "first line" in prompt
    assert prompt.rstrip().endswith("second line")


async def test_the_recent_conversation_is_the_rooms_messages_only(rig: Rig) -> None:
    """A plugin's memories about the room in a table of its own (facts) are not lines of the
    conversation: they came into the prompt as if someone had said them."""
    runtime = rig.runtime
    await runtime.process_message(runtime.new_message("hello there", room_id=ROOM, entity_id=USER))
    fact = runtime.new_message("the user owns a cat", room_id=ROOM, entity_id=USER)
    await rig.db.create_memory(fact, "facts")
    await runtime.process_message(runtime.new_message("and now?", room_id=ROOM, entity_id=USER))
    prompt = rig.prompts[-1]
    assert "hello there" in prompt and "the user owns a cat" not in prompt
    recent = await runtime.recent_memories(ROOM)
    assert fact.id not in {m.id for m in recent} and len(recent) == 4
    everything = await runtime.recent_memories(ROOM, table_name=None)
    assert fact.id in {m.id for m in everything}


def test_parse_actions() -> None:
    assert parse_actions("Hi.\nACTIONS: A, b_c\n") == ("Hi.", ["A", "B_C"])
    assert parse_actions("Do [SEND_EMAIL] now") == ("Do  now", ["SEND_EMAIL"])
    assert parse_actions("plain") == ("plain", [])
    assert parse_actions("actions: none") == ("", [])


def test_build_prompt_ends_with_message(rig: Rig) -> None:
    message = rig.runtime.new_message("last words", room_id=ROOM, entity_id=USER)
    prompt = build_prompt(rig.runtime.character, State(text="STATE"), message)
    assert prompt.endswith("last words")
    assert "STATE" in prompt and rig.runtime.character.bio[0] in prompt


def test_prompt_carries_the_character(rig: Rig) -> None:
    ada = load_character(Path(__file__).parent / "data" / "elizaos_character.json")
    message = rig.runtime.new_message("Who was Babbage?", room_id=ROOM, entity_id=USER)
    prompt = build_prompt(ada, State(), message)
    assert ada.bio[0] in prompt and "history of computing" in prompt  # bio, topics
    assert (
        "# Example conversations\nuser: Who wrote the first program?\nAda: Ada Lovelace" in prompt
    )
    assert prompt.endswith("Who was Babbage?")
    v1 = ada.model_copy(
        update={
            "message_examples": [
                [
                    {"user": "{{user1}}", "content": {"text": "Hello"}},
                    {"user": "Ada", "content": {"text": "Hi there."}},
                ]
            ]
        }
    )
    assert "user: Hello\nAda: Hi there." in build_prompt(v1, State(), message)


def test_prompt_takes_the_first_three_examples_with_text(rig: Rig) -> None:
    def turn(text: str) -> list[dict[str, Any]]:
        return [{"name": "Ada", "content": {"text": text}}]

    examples = [turn("one"), [{"name": "Ada", "content": {}}], turn("two"), turn("three")]
    ada = rig.runtime.character.model_copy(update={"message_examples": [*examples, turn("four")]})
    message = rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER)
    prompt = build_prompt(ada, State(), message)
    assert "# Example conversations\nAda: one\n\nAda: two\n\nAda: three\n\n" in prompt
    assert "four" not in prompt


async def test_the_model_gets_the_system_prompt(rig: Rig) -> None:
    await rig.runtime.process_message(rig.runtime.new_message("hi", room_id=ROOM, entity_id=USER))
    call = rig.mock.calls[-1]
    assert call.system == rig.runtime.character.system and call.system


def _field(payload: Any, name: str) -> Any:
    if isinstance(payload, dict):
        return payload[name]
    return getattr(payload, name)


async def test_runtime_from_explicit_parts_is_deterministic(rig: Rig) -> None:
    fixed = datetime(2030, 1, 1, tzinfo=UTC)
    counter = iter(range(1, 1000))
    runtime = AgentRuntime(
        character=Character(name="Det"),
        scope=rig.container.create_scope("agent"),
        events=rig.bus,
        models=rig.models,
        database=rig.db,
        components=rig.components,
        clock=lambda: fixed,
        ids=lambda: UUID(int=next(counter)),
    )
    reply = await runtime.process_message(runtime.new_message("hi", room_id=ROOM, entity_id=USER))
    rows = await rig.db.get_memories(MemoryQuery(agent_id=runtime.agent_id, order="asc"))
    assert [r.id for r in rows] == [UUID(int=1), UUID(int=2)]
    assert [r.created_at for r in rows] == [fixed, fixed + timedelta(microseconds=1)]
    assert reply.message_id == UUID(int=1)
    await runtime.scope.aclose()


async def test_the_history_for_the_prompt_leaves_vectors_unread(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt's history is read without its vectors (nothing there uses them), while the
    messages are stored with theirs and a search still finds them."""
    asked: list[MemoryQuery] = []
    real = rig.db.get_memories
    real_texts = getattr(rig.db, "get_memory_texts", None)  # how a history is read here

    async def spy(query: MemoryQuery) -> list[Memory]:
        asked.append(query)
        return await real(query)

    async def spy_texts(query: MemoryQuery) -> list[MemoryText]:
        asked.append(query)
        assert real_texts is not None
        found: list[MemoryText] = await real_texts(query)
        return found

    monkeypatch.setattr(rig.db, "get_memories", spy)
    if real_texts is not None:
        monkeypatch.setattr(rig.db, "get_memory_texts", spy_texts)
    for text in ("I dream about boats", "I dream about trains"):
        await rig.runtime.process_message(
            rig.runtime.new_message(text, room_id=ROOM, entity_id=USER)
        )
    histories = [q for q in asked if q.room_id == ROOM and q.limit is not None]
    assert histories and all(not q.with_embeddings for q in histories)
    assert all(m.embedding is None for m in await rig.runtime.recent_memories(ROOM))
    monkeypatch.undo()
    stored = await rig.db.get_memories(MemoryQuery(room_id=ROOM, order="asc"))
    assert len(stored) == 4 and all(isinstance(m.embedding, Vector) for m in stored)
    assert stored[0].embedding is not None
    hits = await rig.db.search_memories(
        stored[0].embedding, MemoryQuery(room_id=ROOM), SearchParams(k=1)
    )
    assert hits[0][0].id == stored[0].id
