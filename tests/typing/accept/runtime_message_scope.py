"""A component's message scope is typed: resolving a token gives the token's type."""

from __future__ import annotations

from typing import assert_type

from contracts.agent import ActionContext, ActionResult, ProviderResult, State
from contracts.memory import Memory
from contracts.services import ServiceScope
from contracts.tokens import Token


class Session:
    def close(self) -> None: ...


SESSION = Token("test.session", Session)


async def provider(message: Memory, state: State) -> ProviderResult:
    assert_type(state.services, ServiceScope)
    assert_type(await state.services.aresolve(SESSION), Session)
    return ProviderResult()


async def action(ctx: ActionContext) -> ActionResult:
    assert_type(ctx.services.resolve(SESSION), Session)
    assert_type(ctx.services.has(SESSION), bool)
    return ActionResult()
