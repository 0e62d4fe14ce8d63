"""Component handlers with the wrong shape are rejected."""

from __future__ import annotations

from contracts.agent import Action, ActionContext, ActionResult, Provider, ProviderResult, State
from contracts.memory import Memory


async def returns_text(ctx: ActionContext) -> str:
    return "not an ActionResult"


async def fine(ctx: ActionContext) -> ActionResult:
    return ActionResult()


async def provider_wrong_args(message: Memory) -> ProviderResult:
    return ProviderResult()


async def provider_wrong_result(message: Memory, state: State) -> str:
    return ""


Action("BAD", "returns text", returns_text)  # E: Argument 3 to "Action" has incompatible type
Provider("bad", provider_wrong_args)  # E: Argument 2 to "Provider" has incompatible type
Provider("bad", provider_wrong_result)  # E: Argument 2 to "Provider" has incompatible type
Action("BAD", "x", fine, timeout="soon")  # E: Argument "timeout" to "Action"
