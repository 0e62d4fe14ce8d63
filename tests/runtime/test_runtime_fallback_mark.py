"""The runtime marks a reply a fallback answered (processed, streamed, and in `agenthost chat`),
and a reply answered by the first provider carries no mark."""

from __future__ import annotations

import io
from uuid import uuid4

from rich.console import Console

from contracts.models import TEXT_LARGE, ModelCallError, ModelHandler, TextParams, TextResult
from host.chat import chat_loop

from .runtime_helpers import Rig

MARK = {"from": "remote", "to": "script", "reason": "rate_limited", "model_type": "text_large"}


def rate_limited(rig: Rig) -> None:
    async def remote(params: TextParams) -> TextResult:
        raise ModelCallError("HTTP 429: slow down", provider="remote", retryable=True, status=429)

    rig.models.register(ModelHandler(TEXT_LARGE, remote, priority=50), owner="remote")


async def test_a_processed_and_a_streamed_reply_carry_the_mark_in_the_store(rig: Rig) -> None:
    runtime = rig.runtime
    plain = await runtime.process_message(
        runtime.new_message("I am sad", room_id=uuid4(), entity_id=uuid4())
    )
    assert plain.reply is not None and plain.reply.metadata == {}
    rate_limited(rig)
    room = uuid4()
    reply = await runtime.process_message(
        runtime.new_message("I am sad", room_id=room, entity_id=uuid4())
    )
    assert reply.reply is not None and reply.reply.metadata == {"model_fallback": MARK}
    stored = await rig.db.get_memory(reply.reply.id)
    assert stored is not None and stored.metadata == {"model_fallback": MARK}
    streamed = runtime.stream_message(
        runtime.new_message("I am sad", room_id=room, entity_id=uuid4())
    )
    done = await streamed.collect()
    assert done.reply is not None and done.reply.metadata == {"model_fallback": MARK}


async def test_chat_says_who_answered(rig: Rig) -> None:
    rate_limited(rig)
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, force_terminal=False)
    await chat_loop(rig.runtime, stdin=io.StringIO("I am sad\n"), console=console, user="sam")
    assert "(answered by script: remote was passed over, rate_limited)" in out.getvalue()
