"""Fixtures of the runtime tests: `rig`, a started default agent over real parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .runtime_helpers import Rig, build_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    built = await build_rig(tmp_path)
    try:
        yield built
    finally:
        await built.agents.stop_all()
        await built.container.aclose()
        await built.bus.aclose()
        await built.db.close()
