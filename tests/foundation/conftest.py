"""Real plugin distributions for the foundation tests: the fixture packages under
tests/fixtures/ are pip-installed (offline, no build isolation) into a session temp dir that
the tests put on sys.path / PYTHONPATH, so their entry points are real installed metadata."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURE_PACKAGES = ("agenthost_weather", "agenthost_broken")


@pytest.fixture(scope="session")
def installed_plugins(install_fixtures: Callable[..., Path]) -> Path:
    return install_fixtures("site", "agenthost-weather", "agenthost-broken")


@pytest.fixture
def plugin_path(installed_plugins: Path) -> Iterator[Path]:
    """The fixture distributions on sys.path for this test."""
    sys.path.insert(0, str(installed_plugins))
    try:
        yield installed_plugins
    finally:
        sys.path.remove(str(installed_plugins))
        for module in [m for m in sys.modules if m.startswith(FIXTURE_PACKAGES)]:
            del sys.modules[module]
