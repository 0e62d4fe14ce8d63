"""Actions a plugin triggers by keywords: the default ELIZA model never names an action, so an
action with `keywords` runs when the incoming message contains one (whole word, any case)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from contracts.agent import Action, ActionContext, ActionResult
from contracts.events import ACTION_COMPLETED
from contracts.plugin import Manifest, Plugin
from host.testing import AgentTestBuilder


class TimePlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="clock", description="tells the time")

    async def tell(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(text="It is noon.")

    async def only_for_sam(self, ctx: ActionContext) -> bool:
        return "sam" in ctx.message.content.text.lower()

    def actions(self) -> Sequence[Action]:
        return (
            Action("TELL_TIME", "tell the time", self.tell, keywords=("time", "what hour")),
            Action("SAM_ONLY", "greets Sam", self.tell, self.only_for_sam, keywords=("hello",)),
        )


async def test_keywords_trigger_actions_with_eliza(agent_builder: AgentTestBuilder) -> None:
    runtime = await agent_builder.with_plugin(TimePlugin).build()  # ELIZA: no mock model
    with runtime.capture_events() as events:
        reply = await runtime.process_message("What TIME is it, please?")
    assert reply.text.endswith("\nIt is noon.")
    assert [e.action for e in events.of(ACTION_COMPLETED)] == ["TELL_TIME"]
    for text in ("Timely trains", "hours pass", "no trigger here", "hello there"):
        with runtime.capture_events() as events:
            reply = await runtime.process_message(text)
        assert not events.of(ACTION_COMPLETED), text  # part of a word / validate said no
        assert "It is noon." not in reply.text
    with runtime.capture_events() as events:
        await runtime.process_message("Hello, I am Sam. What hour is it?")
    assert sorted(e.action for e in events.of(ACTION_COMPLETED)) == ["SAM_ONLY", "TELL_TIME"]
