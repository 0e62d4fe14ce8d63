"""A model call's deadline after a loop run by hand was closed with its deadline sweeper still
pending (host/models.py's check of the sweeper, host/deadlines.py): the sweeper's thread is
this one, but that sweeper will never run again, so a later loop must start its own."""

from __future__ import annotations

import asyncio
import time

from contracts.models import TEXT_LARGE, ModelHandler, ModelSettings, TextParams, TextResult
from host.models import ModelRegistry

from .test_registry import answering


async def _hangs(params: TextParams) -> TextResult:
    await asyncio.sleep(30)
    raise AssertionError("not reached")


def test_a_hung_provider_times_out_after_a_loop_closed_with_its_sweeper_pending() -> None:
    registry = ModelRegistry(ModelSettings(timeout=0.2))
    registry.register(ModelHandler(TEXT_LARGE, _hangs, priority=2), owner="hung")
    registry.register(answering("backup"), owner="backup", priority=1)
    call = registry.use_model(TEXT_LARGE, TextParams(prompt="x"))
    first = asyncio.new_event_loop()
    try:  # run by hand: the sweeper is pending when it returns, and not cancelled
        assert first.run_until_complete(asyncio.wait_for(call, 5)).text == "backup:x"
    finally:
        first.close()
    started = time.monotonic()
    again = registry.use_model(TEXT_LARGE, TextParams(prompt="y"))
    result = asyncio.run(asyncio.wait_for(again, 10))  # TimeoutError: nobody swept
    assert result.text == "backup:y"
    assert time.monotonic() - started < 3
