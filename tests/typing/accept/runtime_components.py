"""Actions, providers and evaluators as plugin authors write them."""

from __future__ import annotations

from contracts.agent import (
    Action,
    ActionContext,
    ActionResult,
    Character,
    Evaluator,
    Provider,
    ProviderResult,
    Reply,
    State,
)
from contracts.memory import Memory


async def weather(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text=f"sunny in {state.values.get('city', 'town')}")


async def forecast(ctx: ActionContext) -> ActionResult:
    name: str = ctx.runtime.character.name
    earlier: list[ActionResult] = ctx.previous
    return ActionResult(text=f"{name}: {len(earlier)} before me")


async def applies(ctx: ActionContext) -> bool:
    return "weather" in ctx.message.content.text


async def reflect(ctx: ActionContext) -> ActionResult | None:
    return None if ctx.reply is None else ActionResult(text=ctx.reply.content.text)


PROVIDER = Provider("weather.now", weather, position=5, timeout=1.0)
ACTION = Action("FORECAST", "tell the forecast", forecast, validate=applies, similes=("RAIN",))
EVALUATOR = Evaluator("weather.reflect", "remember forecasts", reflect)
CHARACTER = Character(name="Ada", bio=["helpful"])


def reply_text(reply: Reply) -> str:
    return reply.text if reply.responded else ""
