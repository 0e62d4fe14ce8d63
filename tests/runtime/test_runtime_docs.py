"""The plugin example of docs/runtime.md (the doc shows this block verbatim) runs."""

from __future__ import annotations

# --8<-- [start:plugin]
from datetime import datetime
from typing import ClassVar

from contracts import (
    Action,
    ActionContext,
    ActionResult,
    Manifest,
    Memory,
    Plugin,
    Provider,
    ProviderResult,
    State,
)


class ClockPlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="clock")

    async def now(self, message: Memory, state: State) -> ProviderResult:
        time = f"{datetime.now():%H:%M}"
        return ProviderResult(text=f"The time is {time}.", values={"time": time})

    async def tell_time(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(text=f"It is {ctx.state.values['time']}.")

    def providers(self) -> list[Provider]:
        return [Provider("clock.now", self.now, position=10, timeout=1.0)]

    def actions(self) -> list[Action]:
        return [Action("TELL_TIME", "say the time", self.tell_time, similes=("TIME",))]


# --8<-- [end:plugin]


async def test_the_documented_plugin_runs() -> None:
    import re

    from contracts.models import TEXT_LARGE
    from host.testing import AgentTestBuilder

    builder = AgentTestBuilder().with_plugin(ClockPlugin).mock_model(TEXT_LARGE, "ACTIONS: TIME")
    async with builder as runtime:
        reply = await runtime.process_message("What time is it?")
    assert re.fullmatch(r"It is \d\d:\d\d\.", reply.text)
    assert reply.actions[0].name == "TELL_TIME"
    assert re.search(r"The time is \d\d:\d\d\.", runtime.mock_models["text_large"].prompts[0])


def test_docs_show_the_plugin_verbatim() -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"
    source = Path(__file__).read_text()
    block = re.search(r"# --8<-- \[start:plugin\]\n(.*?)# --8<-- \[end:plugin\]", source, re.S)
    assert block is not None
    assert block.group(1).strip() in doc.read_text()
