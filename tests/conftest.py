"""Fixtures shared by several test directories come from agenthost's own pytest11 plugin
(`host.pytest_plugin`): the session's PostgreSQL (``pg_server_uri``, ``pg_store_factory``), the
stores of every backend (``memory_store``) and the test kit fixtures. The one defined here,
``install_fixtures``, pip-installs the plugin distributions under tests/fixtures/."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The machines are shared and noisy: a property test is about which inputs break the code, not how
# fast one example runs (speed is measured by bench/), so no example has a deadline.
settings.register_profile("agenthost", deadline=None)
settings.load_profile("agenthost")


@pytest.fixture(scope="session")
def install_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``install_fixtures(basename, *distributions)``: the named distributions of tests/fixtures/
    pip-installed (offline, no deps, no build isolation) into a fresh temp dir, returned; the
    tests put it on sys.path / PYTHONPATH, so their entry points are real installed metadata."""

    def install(basename: str, *distributions: str) -> Path:
        target = tmp_path_factory.mktemp(basename)
        for name in distributions:
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(FIXTURES / name),
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
        return target

    return install
