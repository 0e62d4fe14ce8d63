"""``cluster_probe``: a model plugin the cluster tests install into member processes (through
PYTHONPATH: the dist-info beside it makes it an entry point like any installed plugin).

TEXT_LARGE answers ``re: <message>`` after ``CLUSTER_PROBE_DELAY`` seconds (streamed word by
word); a message containing ``HANG`` takes ``CLUSTER_PROBE_HANG`` seconds (a worker to kill or
pause mid-message); one containing ``POISON`` fails (a bad request: no fallback), so it is parked.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from builtin_plugins.eliza.plugin import last_message
from contracts.models import (
    TEXT_LARGE,
    ModelCallError,
    ModelHandler,
    TextChunk,
    TextParams,
    TextResult,
)
from contracts.plugin import Manifest, Plugin


class ProbePlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="cluster_probe", description="test model")

    async def reply(self, params: TextParams) -> TextResult:
        text = last_message(params)
        if "POISON" in text:
            raise ModelCallError("poisoned message", provider="cluster_probe", retryable=False)
        delay = float(os.environ.get("CLUSTER_PROBE_DELAY", "0"))
        if "HANG" in text:
            delay = float(os.environ.get("CLUSTER_PROBE_HANG", "3"))
        if delay:
            await asyncio.sleep(delay)
        return TextResult(text=f"re: {text}", model="probe")

    async def stream(self, params: TextParams) -> AsyncIterator[TextChunk]:
        result = await self.reply(params)
        words = result.text.split(" ")
        for index, word in enumerate(words):
            yield TextChunk(text=word if index == len(words) - 1 else word + " ", index=index)

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        return (ModelHandler(TEXT_LARGE, self.reply, stream=self.stream, priority=10),)
