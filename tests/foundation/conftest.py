"""Real plugin distributions for the foundation tests: the fixture packages under
tests/fixtures/ are pip-installed (offline, no build isolation) into a session temp dir that
the tests put on sys.path / PYTHONPATH, so their entry points are real installed metadata."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_PACKAGES = ("agenthost_weather", "agenthost_broken")


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    for name in ("agenthost-weather", "agenthost-broken"):
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                "--no-build-isolation", "--target", str(target), str(FIXTURES / name),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return target


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
