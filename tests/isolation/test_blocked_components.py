"""The loop monitor names an action and an evaluator that block the event loop (the test of
the host names a provider and an event handler), and not their declared-blocking twins, which
run in a thread."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from loguru import logger

from contracts import Action, ActionContext, ActionResult, Manifest, Plugin
from contracts.agent import Evaluator
from contracts.config import LoopMonitorSettings
from contracts.models import TEXT_LARGE
from host.blocking import LoopMonitor
from host.testing import AgentTestBuilder

NAP = 0.4


def nap(ctx: ActionContext) -> ActionResult:
    time.sleep(NAP)  # the mistake: blocking in a callback not declared blocking
    return ActionResult(text="napped")


class Slowpoke(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="slowpoke")

    def actions(self) -> list[Action]:
        return [
            Action("LOOP_NAP", "blocks the loop", nap, always=True),
            Action("THREAD_NAP", "blocks a thread", nap, always=True, blocking=True),
        ]

    def evaluators(self) -> list[Evaluator]:
        return [
            Evaluator("loop-doze", "blocks the loop", nap, always_run=True),
            Evaluator("thread-doze", "blocks a thread", nap, always_run=True, blocking=True),
        ]


async def test_the_monitor_names_a_blocking_action_and_evaluator_of_their_plugin() -> None:
    records: list[Any] = []
    sink = logger.add(lambda m: records.append(m.record), level="WARNING")
    monitor = LoopMonitor(LoopMonitorSettings(threshold=0.1))
    builder = AgentTestBuilder().with_plugin(Slowpoke).mock_model(TEXT_LARGE, "Hello.")
    try:
        async with builder as runtime:
            monitor.start()
            await runtime.process_message("Hello!")
    finally:
        monitor.stop()
        logger.remove(sink)
    noticed = [
        r["message"] for r in records if "event loop blocked for over 100 ms" in r["message"]
    ]
    assert any("action 'LOOP_NAP' of plugin slowpoke" in m for m in noticed), noticed
    assert any("evaluator 'loop-doze' of plugin slowpoke" in m for m in noticed), noticed
    assert not [m for m in noticed if "THREAD_NAP" in m or "thread-doze" in m], noticed
    assert all(
        r["extra"].get("plugin") == "slowpoke" for r in records if "LOOP_NAP" in r["message"]
    )
