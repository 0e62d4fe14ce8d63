"""Fixtures of the model tests: `logs`, what loguru writes (level and message) while a test runs."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from loguru import logger


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = logger.add(sink, level="INFO", format="{level} {message}")
    yield sink
    logger.remove(handler)
