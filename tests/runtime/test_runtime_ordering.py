"""Per-room ordering as an invariant (hypothesis): however messages to several rooms interleave,
each room sees its messages one at a time, in arrival order, each answered before the next."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.agent import Provider, ProviderResult, State
from contracts.memory import Memory, MemoryQuery
from contracts.models import TEXT_LARGE
from host.testing import AgentTestBuilder

ROOMS = [UUID(int=0x100 + i) for i in range(4)]
USER = UUID(int=0xBEEF)


async def _scenario(plan: list[tuple[int, int]]) -> None:
    inside: dict[UUID, int] = defaultdict(int)
    most: dict[UUID, int] = defaultdict(int)
    seen: dict[UUID, list[str]] = defaultdict(list)
    answered: dict[UUID, list[int]] = defaultdict(list)
    """Replies already saved in the room when each message reached the providers."""
    pauses = {f"m{i}": pause for i, (_room, pause) in enumerate(plan)}

    async def slow(message: Memory, state: State) -> ProviderResult:
        room = message.room_id
        inside[room] += 1
        most[room] = max(most[room], inside[room])
        seen[room].append(message.content.text)
        answered[room].append(
            await runtime.database.count_memories(
                MemoryQuery(room_id=room, entity_id=runtime.agent_id)
            )
        )
        for _ in range(pauses[message.content.text]):  # lets other rooms' messages interleave
            await asyncio.sleep(0)
        inside[room] -= 1
        return ProviderResult()

    builder = AgentTestBuilder().mock_model(TEXT_LARGE, lambda p: "re " + p.prompt.split()[-1])
    async with builder as runtime:
        runtime.components.add("test", providers=[Provider("slow", slow)])
        tasks = [
            asyncio.create_task(
                runtime.process_message(
                    runtime.new_message(f"m{i}", room_id=ROOMS[room], entity_id=USER)
                )
            )
            for i, (room, _pause) in enumerate(plan)
        ]
        replies = await asyncio.gather(*tasks)
        assert all(r.responded for r in replies)
        for index, room in enumerate(ROOMS):
            sent = [f"m{i}" for i, (r, _p) in enumerate(plan) if r == index]
            assert seen[room] == sent  # arrival order
            assert most[room] <= 1  # one message of a room in the pipeline at a time
            assert answered[room] == list(range(len(sent)))  # each answered before the next
            rows = await runtime.database.get_memories(
                MemoryQuery(room_id=room, entity_id=runtime.agent_id, order="asc")
            )
            assert [r.content.text for r in rows] == [f"re {m}" for m in sent]


@given(plan=st.lists(st.tuples(st.integers(0, len(ROOMS) - 1), st.integers(0, 3)), max_size=12))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_each_room_in_arrival_order_whatever_the_interleaving(plan: list[tuple[int, int]]) -> None:
    asyncio.run(_scenario(plan))
