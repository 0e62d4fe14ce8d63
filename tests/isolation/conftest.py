"""The misbehaving plugins of tests/fixtures/agenthost-hostile, pip-installed (offline, no build
isolation) into a session temp dir that the tests put on sys.path / PYTHONPATH, so they are
real installed distributions found through their entry points."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def hostile_site(install_fixtures: Callable[..., Path]) -> Path:
    return install_fixtures("hostile-site", "agenthost-hostile")


@pytest.fixture
def hostile_path(hostile_site: Path) -> Iterator[Path]:
    """The hostile distribution on sys.path for this test."""
    sys.path.insert(0, str(hostile_site))
    try:
        yield hostile_site
    finally:
        sys.path.remove(str(hostile_site))
        for module in [m for m in sys.modules if m.startswith("agenthost_hostile")]:
            del sys.modules[module]
