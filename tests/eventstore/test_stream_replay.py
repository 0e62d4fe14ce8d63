"""A streamed reply's audit trail: ``model:used`` records the whole streamed text as the model
output, so ``agenthost events replay`` of a terminal conversation (``agenthost chat`` streams by
default) reproduces it instead of reporting every message as diverged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.models import TEXT_LARGE, ModelHandler, TextChunk, TextParams, TextResult, Usage
from host.events import EventBus
from host.models import ModelRegistry

REPO = Path(__file__).resolve().parents[2]
AGENTHOST = Path(sys.executable).with_name("agenthost")


async def test_a_streamed_call_records_the_whole_text_as_its_output() -> None:
    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    registry = ModelRegistry(events=bus)

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text="unused")

    async def words(params: TextParams) -> AsyncIterator[TextChunk]:
        for index, word in enumerate(("In ", "what ", "way?")):
            yield TextChunk(text=word, index=index)
        usage = Usage(input_tokens=5, output_tokens=3)
        yield TextChunk(text="", index=3, finish_reason="stop", usage=usage)

    registry.register(ModelHandler(TEXT_LARGE, whole, words), owner="words")
    chunks = [c async for c in registry.stream_model(TEXT_LARGE, TextParams(prompt="hi"))]
    assert "".join(c.text for c in chunks) == "In what way?"
    (call,) = used
    assert call.streamed and call.output is not None
    output = TextResult.model_validate(call.output.model_dump())  # what replay answers with
    assert output.text == "In what way?"
    assert output.finish_reason == "stop" and call.output_tokens == 3


def _agenthost(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENTHOST), *args],
        input=stdin,
        cwd=REPO,
        env={**os.environ, "AGENTHOST_DATA_DIR": str(data_dir), "USER": "sam", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_chat_conversation_replays_without_divergence(tmp_path: Path) -> None:
    """The real commands: ``agenthost chat`` (streamed replies, stdin piped) then ``agenthost
    events replay`` of that agent on the same data dir."""
    chat = _agenthost(
        tmp_path,
        "chat",
        stdin="Men are all alike.\nThey are always bugging us about something.\n",
    )
    assert chat.returncode == 0, chat.stderr
    assert "Eliza> In what way?" in chat.stdout
    found = re.search(r"Chatting with Eliza \(([0-9a-f-]{36})\)", chat.stdout)
    assert found is not None, chat.stdout
    replay = _agenthost(tmp_path, "events", "replay", found.group(1))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "2 recorded message(s) replayed" in replay.stdout
    assert "4 memories match the store" in replay.stdout
    assert "DIVERGENCE" not in replay.stdout
    assert "replay matches the recording" in replay.stdout
