"""A message-scoped service is of its token's type, and the scope only resolves."""

from __future__ import annotations

from contracts.agent import ActionContext, ActionResult
from contracts.tokens import Token


class Session: ...


SESSION = Token("test.session", Session)


async def action(ctx: ActionContext) -> ActionResult:
    text: str = await ctx.services.aresolve(SESSION)  # E: Argument 1 to "aresolve" of "ServiceScope"
    ctx.services.register(SESSION, Session)  # E: "ServiceScope" has no attribute "register"
    return ActionResult(text=text)
