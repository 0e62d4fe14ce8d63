"""Shared fixtures for the container tests: a fresh container and captured log lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from loguru import logger

from host.di import Container


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    app = Container()
    yield app
    await app.aclose()


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Container log lines as 'LEVEL message'."""
    lines: list[str] = []
    sink = logger.add(
        lambda message: lines.append(f"{message.record['level'].name} {message.record['message']}"),
        level="DEBUG",
        filter=lambda record: record["extra"].get("component") == "container",
    )
    yield lines
    logger.remove(sink)
