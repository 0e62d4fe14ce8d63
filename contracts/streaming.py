"""`MemoryManager`: read any number of memories from any `DatabaseAdapter`, a page at a time.

Pages are keyset-paginated on ``(created_at, id)``: each page asks for rows strictly past the
last row of the previous one, never ``OFFSET``. So

- every page costs the same however deep the stream is (an index range scan, not a skip);
- rows inserted or deleted while streaming never shift a page boundary: each row that existed
  when the stream began (and still exists) is yielded exactly once; new rows may or may not be;
- the next page is fetched only when the consumer asks for it (async generators pull), and at
  most one page is held, so memory stays flat however many rows there are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from contracts.memory import Memory, MemoryQuery
from contracts.storage import DatabaseAdapter, InvalidQueryError

__all__ = ["DEFAULT_PAGE_SIZE", "MemoryManager"]

DEFAULT_PAGE_SIZE = 500


class MemoryManager:
    """Streams memories from `db`; optionally bound to one agent (its queries default to it)."""

    def __init__(
        self,
        db: DatabaseAdapter,
        *,
        agent_id: UUID | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        _check_size(page_size)
        self.db = db
        self.agent_id = agent_id
        self.page_size = page_size

    def for_agent(self, agent_id: UUID) -> MemoryManager:
        """A manager over the same store whose queries default to `agent_id`."""
        return MemoryManager(self.db, agent_id=agent_id, page_size=self.page_size)

    def _scoped(self, query: MemoryQuery) -> MemoryQuery:
        if self.agent_id is not None and query.agent_id is None:
            return query.model_copy(update={"agent_id": self.agent_id})
        return query

    async def get_memories_batch(
        self, query: MemoryQuery, batch_size: int | None = None
    ) -> AsyncIterator[list[Memory]]:
        """Pages of at most `batch_size` memories matching `query`, in its order.

        ``query.after`` is where the stream starts and ``query.limit`` caps the total."""
        size = self.page_size if batch_size is None else batch_size
        _check_size(size)
        query = self._scoped(query)
        remaining = query.limit
        cursor = query.after
        while remaining is None or remaining > 0:
            want = size if remaining is None else min(size, remaining)
            page = await self.db.get_memories(
                query.model_copy(update={"after": cursor, "limit": want})
            )
            if not page:
                return
            cursor = page[-1].cursor
            if remaining is not None:
                remaining -= len(page)
            yield page
            if len(page) < want:
                return

    async def get_memories_stream(
        self, query: MemoryQuery, batch_size: int | None = None
    ) -> AsyncIterator[Memory]:
        """Every memory matching `query`, one at a time, fetched a page at a time."""
        async for page in self.get_memories_batch(query, batch_size):
            for memory in page:
                yield memory


def _check_size(size: int) -> None:
    if size < 1:
        raise InvalidQueryError(f"page size must be >= 1, got {size}")
