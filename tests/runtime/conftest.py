"""Fixtures of the runtime tests: `rig`, a started default agent over real parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .runtime_helpers import Rig, make_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(str(tmp_path / "rig.sqlite3")) as built:
        yield built
